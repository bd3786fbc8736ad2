from pathlib import Path

import pytest

from engine.datasets import shared_data

DATA = shared_data()  # $ENGINE_DATA_DIR, else the shared/data beside the checkout
SPECTRA = DATA / "spectra"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture
def massivekb():
    return need(SPECTRA / "massivekb" / "massivekb_selected_500.mgf")


def write_mgf(path: Path, spectra, charge: bool = True) -> Path:
    """Spectra as an MGF file (SEQ= labels; CHARGE= only when ``charge``)."""
    lines = []
    for s in spectra:
        lines += ["BEGIN IONS", f"TITLE={s.title}", f"SEQ={s.label}", f"PEPMASS={s.precursor_mz!r}"]
        lines += [f"CHARGE={s.charge}"] if charge else []
        lines += [f"{m!r} {i!r}" for m, i in zip(s.mz.tolist(), s.intensity.tolist(), strict=True)]
        lines.append("END IONS")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def probe_mgf(tmp_path):
    """The core's three labelled probe spectra (MassIVE-KB) as an MGF file."""
    from engine.kinds import probe_spectra

    return write_mgf(tmp_path / "probe.mgf", probe_spectra())


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Random-initialised tiny models saved like trained ones (tests of the plumbing)."""
    torch = pytest.importorskip("torch")
    from dataclasses import asdict

    from engine_graphnovo.graph import GraphConfig
    from engine_graphnovo.model import ModelConfig, PathSearcher, SeqFiller
    from engine_graphnovo.preprocess import PreprocessConfig
    from engine_graphnovo.training import save_weights

    from engine.io.peptides import ResidueTable
    from engine.runtime import use_torch_threads

    use_torch_threads(1)
    table = ResidueTable()
    cfg = ModelConfig(d_model=32, heads=2, encoder_layers=1, decoder_layers=1, vocab=len(table.tokens), node_head=True)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("weights") / "tiny"
    meta = {
        "model": cfg.to_dict(),
        "residues": list(table.tokens),
        "graph": asdict(GraphConfig()),
        "preprocess": asdict(PreprocessConfig()),
        "training": {"note": "untrained test model"},
    }
    save_weights(out, PathSearcher(cfg), SeqFiller(cfg), meta)
    return out
