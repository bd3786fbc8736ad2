import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from engine_graphnovo.component import GraphNovoSequencer, example_spectra  # noqa: E402
from engine_graphnovo.data import graph_arrays, pad_batch  # noqa: E402
from engine_graphnovo.ort import OrtSequencer  # noqa: E402

from engine.artifacts import read_artifact  # noqa: E402
from engine.testing import run_without  # noqa: E402


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    comp = GraphNovoSequencer(weights=tiny_weights)
    path = comp.export_onnx(tmp_path_factory.mktemp("art") / "graphnovo")
    return comp, path


def test_sessions_match_torch(exported):
    comp, path = exported
    ort = OrtSequencer(read_artifact(path), "cpu")
    spectra = example_spectra()
    feats = pad_batch([graph_arrays(comp.pipeline.graph(s, s.charge)) for s in spectra])
    torch_be, ort_be = comp.pipeline.backend, ort.backend
    for enc in ("ps_encode", "sf_encode"):
        for a, b in zip(getattr(torch_be, enc)(feats), getattr(ort_be, enc)(feats), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    mem = torch_be.ps_encode(feats)  # steps: 3 graphs x 2 beams, graph-major
    n = feats["masses"].shape[1]
    cfg = comp.ps.cfg
    g, k = 3, 2
    shape = (cfg.decoder_layers, 2, g * k, cfg.heads, 3, cfg.d_model // cfg.heads)
    past = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    last = np.array([[1, 2], [1, 3], [2, 2]], dtype=np.int64)
    position = np.full((g, k), 3, dtype=np.int64)
    nmask = np.ones((g, k, n), dtype=bool)
    a, pa = torch_be.ps_step(*mem, feats["node_mask"], last, position, nmask, past)
    b, pb = ort_be.ps_step(*mem, feats["node_mask"], last, position, nmask, past)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(pa, pb, atol=1e-4)
    assert a.shape == (g, k, n) and pa.shape[4] == 4  # the cache grew by one position
    empty = past[:, :, :, :, :0]  # the first step has an empty cache
    np.testing.assert_allclose(
        torch_be.ps_step(*mem, feats["node_mask"], last, position * 0, nmask, empty)[0],
        ort_be.ps_step(*mem, feats["node_mask"], last, position * 0, nmask, empty)[0],
        atol=1e-4,
    )
    token = np.array([[25, 3], [4, 7], [9, 9]], dtype=np.int64)
    prefix = np.array([[0.0, 97.05], [200.1, 57.02], [300.0, 310.0]], dtype=np.float32)
    sf_state = torch_be.sf_encode(feats)
    args = (*sf_state, feats["node_mask"], feats["masses"], token, prefix, prefix + 60.0, feats["precursor"], past)
    for x, y in zip(torch_be.sf_step(*args), ort_be.sf_step(*args), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_same_peptides_on_torch_and_onnxruntime_without_torch(exported):
    comp, path = exported
    spectra = example_spectra()
    expected = [h.peptide for h in comp.sequence(spectra)]
    assert len(expected) == len(spectra)
    code = (
        "import json\n"
        "from engine.artifacts import read_artifact\n"
        "from engine_graphnovo.ort import OrtSequencer\n"
        "from engine_graphnovo.component import example_spectra\n"
        f"seq = OrtSequencer(read_artifact({str(path)!r}), 'cpu')\n"
        "print(json.dumps([h.peptide for h in seq.sequence(example_spectra())]))\n"
    )
    out = run_without(code)
    assert json.loads(out.strip().splitlines()[-1]) == expected


def test_tampered_artifact_is_refused(exported, tmp_path):
    import shutil

    from engine.errors import ArtifactError

    _, path = exported
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with open(copy / "ps_step.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError):
        read_artifact(copy)
