import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from engine_graphnovo.data import graph_arrays, pad_batch  # noqa: E402
from engine_graphnovo.ort_path import OrtGraphNovoSequencer  # noqa: E402
from engine_graphnovo.torch_path import GraphNovoSequencer  # noqa: E402

from engine.artifacts import read_artifact  # noqa: E402
from engine.kinds import probe_spectra  # noqa: E402
from engine.testing import run_without  # noqa: E402


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    comp = GraphNovoSequencer(model=tiny_weights)
    path = comp.export_onnx(tmp_path_factory.mktemp("art") / "graphnovo")
    return comp, path


def test_sessions_match_torch(exported):
    comp, path = exported
    ort = OrtGraphNovoSequencer(read_artifact(path), "cpu")
    spectra = probe_spectra()
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
    spectra = probe_spectra()
    expected = [h.peptide for h in comp.sequence(spectra)]
    assert len(expected) == len(spectra)
    code = (
        "import json\n"
        "from engine_graphnovo.ort_path import OrtGraphNovoSequencer\n"
        "from engine.kinds import probe_spectra\n"
        f"seq = OrtGraphNovoSequencer({str(path)!r}, 'cpu', threads=1)\n"
        "print(json.dumps([h.peptide for h in seq.sequence(probe_spectra())]))\n"
    )
    out = run_without(code)
    assert json.loads(out.strip().splitlines()[-1]) == expected


def test_node_pruning_searches_the_best_scored_nodes_alike_on_both_runtimes(exported):
    """prune_nodes = K: the graph is rebuilt on the K inner nodes the node head scores highest
    and searched instead; K at least the inner node count changes nothing."""
    import dataclasses

    import torch
    from engine_graphnovo.training import encode_args

    comp, path = exported
    spectra = probe_spectra()
    graphs = [comp.pipeline.graph(s, s.charge) for s in spectra]
    pipe = comp.pipeline
    whole = pipe.predict_graphs(graphs)
    pipe.search = dataclasses.replace(pipe.search, prune_nodes=max(g.n for g in graphs))
    try:
        same = pipe.predict_graphs(graphs)
        assert [(p.ids, p.path, p.score) for p in same] == [(p.ids, p.path, p.score) for p in whole]
        pipe.search = dataclasses.replace(pipe.search, prune_nodes=4)
        pruned = pipe.predict_graphs(graphs)
    finally:
        pipe.search = dataclasses.replace(pipe.search, prune_nodes=0)
    for g, pred in zip(graphs, pruned, strict=True):
        feats = {k: torch.from_numpy(v) for k, v in pad_batch([graph_arrays(g)]).items()}
        with torch.no_grad():
            logits = comp.ps.node_logits(comp.ps.encode(*encode_args(feats)))[0].numpy()
        best = np.sort(1 + np.argsort(-logits[1:-1], kind="stable")[:4])
        np.testing.assert_allclose(pred.graph.masses, g.masses[np.concatenate([[0], best, [g.n - 1]])])
        assert pred.path[0] == 0 and pred.path[-1] == pred.graph.n - 1
    ort = OrtGraphNovoSequencer(read_artifact(path), "cpu", prune_nodes=4)
    assert [(p.ids, p.path) for p in ort.pipeline.predict_graphs(graphs)] == [(p.ids, p.path) for p in pruned]


def test_per_residue_budget_prunes_each_graph_to_its_own_k(exported):
    """prune_per_residue R searches each graph as prune_nodes = ceil(R x M / 111.1) would,
    a different K for graphs of different precursor mass; both runtimes alike."""
    import dataclasses
    import math

    comp, path = exported
    graphs = [comp.pipeline.graph(s, s.charge) for s in probe_spectra()]
    rate = 0.5
    budgets = [math.ceil(rate * g.precursor_mass / 111.1) for g in graphs]
    assert len(set(budgets)) > 1
    pipe = comp.pipeline
    try:
        pipe.search = dataclasses.replace(pipe.search, prune_per_residue=rate)
        scaled = pipe.predict_graphs(graphs)
        for g, k, pred in zip(graphs, budgets, scaled, strict=True):
            pipe.search = dataclasses.replace(pipe.search, prune_per_residue=0.0, prune_nodes=k)
            alone = pipe.predict_graphs([g])[0]
            assert (pred.ids, pred.path, pred.graph.n) == (alone.ids, alone.path, min(k, g.n - 2) + 2)
    finally:
        pipe.search = dataclasses.replace(pipe.search, prune_nodes=0, prune_per_residue=0.0)
    ort = OrtGraphNovoSequencer(read_artifact(path), "cpu", prune_per_residue=rate)
    assert [(p.ids, p.path) for p in ort.pipeline.predict_graphs(graphs)] == [(p.ids, p.path) for p in scaled]


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


def test_export_cli_refuses_to_clobber_and_has_no_quantize(tiny_weights, tmp_path, capsys):
    from engine.cli import main

    dest = tmp_path / "art"
    model = ["--model", str(tiny_weights)]
    assert main(["export", "graphnovo", *model, "-o", str(dest)]) == 0
    assert read_artifact(dest).component == "graphnovo"
    assert main(["export", "graphnovo", *model, "-o", str(dest)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "graphnovo", *model, "-o", str(dest), "--force"]) == 0
    assert main(["export", "graphnovo", *model, str(tmp_path / "old-style")]) == 0  # positional: deprecated
    assert "deprecated" in capsys.readouterr().err and read_artifact(tmp_path / "old-style")
    assert main(["export", "graphnovo", *model, "-o", str(tmp_path / "q"), "--quantize", "int8"]) == 2
    assert "does not support --quantize" in capsys.readouterr().err
    assert main(["export", "graphnovo", *model]) == 2
    assert "needs -o DEST" in capsys.readouterr().err
