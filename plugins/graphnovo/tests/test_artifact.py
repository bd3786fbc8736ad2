"""The ONNX artifact shipped in the package (engine_graphnovo/artifacts/default)."""

import json

import pytest
from conftest import write_mgf

import engine
from engine.artifacts import read_artifact
from engine.kinds import probe_spectra
from engine.testing import run_without

pytest.importorskip("onnxruntime")

from engine_graphnovo.component import DEFAULT_ARTIFACT, DEFAULT_WEIGHTS  # noqa: E402


def test_shipped_artifact_is_registered_verified_and_made_from_the_default_weights():
    spec = engine.Engine().get("sequencer", "graphnovo")
    assert spec.default_artifact == "engine_graphnovo:artifacts/default"
    assert spec.default_artifact_path() == DEFAULT_ARTIFACT
    artifact = read_artifact(DEFAULT_ARTIFACT)  # every file's size and sha256
    assert (artifact.kind, artifact.component) == ("sequencer", "graphnovo")
    # retrained weights need a re-export (engine train graphnovo --install does it)
    assert artifact.config["meta"] == json.loads((DEFAULT_WEIGHTS / "config.json").read_text())
    size = sum(f.stat().st_size for f in DEFAULT_ARTIFACT.iterdir())
    assert size <= 8 * 2**20


def test_load_artifact_takes_threads_and_options():
    seq = engine.load_artifact(DEFAULT_ARTIFACT, provider="cpu", threads=1, path_beam=2, top_n=80)
    assert type(seq).__name__ == "OrtGraphNovoSequencer" and seq.runs_artifact
    assert seq.providers == ["CPUExecutionProvider"]
    assert seq.name == "graphnovo" and "onnx-export" not in seq.capabilities
    assert seq.pipeline.search.path_beam == 2 and seq.pipeline.prep.top_n == 80
    assert "export_onnx" not in vars(type(seq))
    with pytest.raises(engine.interfaces.ConfigError):
        engine.load_artifact(DEFAULT_ARTIFACT, provider="cpu", path_beam=0)


def test_shipped_artifact_gives_the_torch_peptides(massivekb):
    """Parity on the probe spectra and the whole held-out MassIVE-KB split."""
    pytest.importorskip("torch")
    from engine_graphnovo.evaluation import heldout_spectra
    from engine_graphnovo.torch_path import GraphNovoSequencer

    spectra = probe_spectra() + heldout_spectra()
    torch_hits = [(h.source, h.spectrum_ref, h.peptide) for h in GraphNovoSequencer(threads=1).sequence(spectra)]
    ort = engine.load_artifact(DEFAULT_ARTIFACT, provider="cpu", threads=1)
    ort_hits = [(h.source, h.spectrum_ref, h.peptide) for h in ort.sequence(spectra)]
    assert len(torch_hits) == len(spectra) and ort_hits == torch_hits


def test_sequence_runs_on_the_shipped_artifact_without_torch(tmp_path):
    mgf = write_mgf(tmp_path / "probe.mgf", probe_spectra())
    out = tmp_path / "out.mztab"
    # the core asks find_spec("torch") whether torch is installed: None in sys.modules says
    # "absent" (run_without's blocker raises there instead); any real torch import still fails
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from engine.cli import main\n"
        f"print('rc', main(['--json', 'sequence', 'graphnovo', {str(mgf)!r}, '-o', {str(out)!r}]))\n"
    )
    stdout = run_without(code)
    assert stdout.strip().splitlines()[-1] == "rc 0"
    assert json.loads(stdout[: stdout.rindex("rc")])["written"] == 3
    lines = out.read_text().splitlines()
    assert lines[0] == "MTD\tmzTab-version\t1.0.0" and sum(x.startswith("PSM") for x in lines) == 3
