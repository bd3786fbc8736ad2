import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from conftest import DATA, need  # noqa: E402

TINY = [
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--no-real",
    "--max-peptides",
    "500",
    "--d-model",
    "16",
    "--encoder-layers",
    "1",
    "--decoder-layers",
    "1",
    "--checkpoint-every",
    "1",
]


def test_train_checkpoint_resume_and_weights(tmp_path):
    need(DATA / "proteomes")
    from engine_graphnovo.training import load_weights

    from engine.cli import main

    out = tmp_path / "run"
    assert main(["--quiet", "train", "graphnovo", "-o", str(out), "--threads", "1", *TINY]) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "weights" / "config.json").is_file()
    ps, sf, meta = load_weights(out / "weights")
    assert meta["training"]["steps"] == 2 and meta["model"]["d_model"] == 16
    steps = TINY.copy()
    steps[1] = "3"
    assert main(["--quiet", "train", "graphnovo", "-o", str(out), "--threads", "1", "--resume", *steps]) == 0
    assert json.loads((out / "weights" / "config.json").read_text())["training"]["steps"] == 3


def test_torchrun_ddp_two_gloo_processes(tmp_path):
    need(DATA / "proteomes")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free local rendezvous port
        "--nproc_per_node",
        "2",
        "-m",
        "engine",
        "--quiet",
        "train",
        "graphnovo",
        "-o",
        str(tmp_path / "ddp"),
        "--threads",
        "1",
        *TINY,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    sums = re.findall(r"rank (\d) parameter checksum (\S+)", done.stdout + done.stderr)
    assert sorted(r for r, _ in sums) == ["0", "1"]
    assert sums[0][1] == sums[1][1]  # gradients were all-reduced: replicas agree
    meta = json.loads((tmp_path / "ddp" / "weights" / "config.json").read_text())
    assert meta["training"]["world_size"] == 2


def test_learning_rate_follows_the_budget_that_runs_out_first():
    from engine_graphnovo.training import TrainConfig, learning_rate

    by_steps = TrainConfig(lr=1.0, warmup=10, minutes=1e6, max_steps=1000)
    assert learning_rate(by_steps, 0, 0.0) == pytest.approx(0.1)  # warm-up: (0 + 1) / 10
    assert learning_rate(by_steps, 500, 1.0) == pytest.approx(0.55)  # half the steps: cosine at its middle
    assert learning_rate(by_steps, 1000, 1.0) == pytest.approx(0.1)  # the floor
    by_time = TrainConfig(lr=1.0, warmup=10, minutes=10.0, max_steps=10**6)
    assert learning_rate(by_time, 20, 300.0) == pytest.approx(0.55)  # half the minutes
    assert learning_rate(by_time, 20, 900.0) == pytest.approx(0.1)


def test_fine_tuning_starts_from_the_given_weights(tiny_weights, tmp_path):
    """--init: the run starts from those weights and their model (the CLI's model flags are
    ignored), and records where it started; a step at a negligible learning rate gives the same
    (fp16) weights back."""
    need(DATA / "proteomes")
    import torch
    from engine_graphnovo.training import load_weights

    from engine.cli import main

    out = tmp_path / "tuned"
    args = ["--quiet", "train", "graphnovo", "-o", str(out), "--threads", "1", "--init", str(tiny_weights), *TINY]
    args[args.index("--steps") + 1] = "1"
    args += ["--lr", "1e-12"]
    assert main(args) == 0
    ps0, _, meta0 = load_weights(tiny_weights)
    ps, _, meta = load_weights(out / "weights")
    assert meta["model"] == meta0["model"] and meta["training"]["init"] == str(tiny_weights)
    for (k, a), (_, b) in zip(ps0.state_dict().items(), ps.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_tuning_searches_whole_graphs_until_its_pruning_stage(tiny_weights, tmp_path, monkeypatch):
    """--tune over weights that store a per-residue budget: the bonus, beam and ranking stages
    search whole graphs; the pruning stage tries K and R each alone; one budget is stored."""
    need(DATA / "proteomes")
    import shutil

    from engine_graphnovo import torch_path
    from engine_graphnovo.evaluation import tune_search

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    cfg = json.loads((weights / "config.json").read_text())
    cfg["search"] = {**cfg.get("search", {}), "prune_per_residue": 3.0}
    (weights / "config.json").write_text(json.dumps(cfg))
    searched, build = [], torch_path.GraphNovoSequencer

    def recording(**options):
        comp = build(**options)
        searched.append((options, comp.pipeline.search))
        return comp

    monkeypatch.setattr(torch_path, "GraphNovoSequencer", recording)
    grid = {"bonuses": (0.0,), "beams": (2,), "rescore_weights": (0.0,), "fill_paths": (1,)}
    result = tune_search(weights, prune_nodes=(0, 4), prune_per_residue=(1.0,), limit=6, log=lambda _: None, **grid)
    budgets = [(o.get("prune_nodes"), o.get("prune_per_residue"), s.node_budget(1111.0)) for o, s in searched[1:]]
    assert budgets == [(0, None, 0)] * 2 + [(4, None, 4), (0, 1.0, 10)]  # bonus, ranking: whole graphs; K = 4; R = 1
    assert set(result["pruning_tuning"]) == {"prune_nodes 0", "prune_nodes 4", "prune_per_residue 1"}
    stored = json.loads((weights / "config.json").read_text())["search"]
    assert (stored["prune_nodes"], stored["prune_per_residue"]) == (result["prune_nodes"], result["prune_per_residue"])
    assert not (stored["prune_nodes"] and stored["prune_per_residue"])


def test_pruning_augmentation_keeps_a_budget_and_consistent_labels():
    """The augmentation cuts a graph to 16-64 inner nodes; the labels are those of the cut graph."""
    import numpy as np
    from engine_graphnovo.data import path_label
    from engine_graphnovo.graph import GraphBuilder, label_nodes
    from engine_graphnovo.simulator import simulate
    from engine_graphnovo.training import PRUNE_BUDGET, SIM, pruned_for_training, true_nodes

    from engine.io.peptides import ResidueTable, parse_peptide, residue_masses

    builder, rng = GraphBuilder(ResidueTable()), np.random.default_rng(0)
    kept = []
    for peptide in ("PEPTIDEKLLNGGAR", "SAMPLERSAMPLERK", "ACDEFGHIKLMNPQR"):
        tokens = parse_peptide(peptide)
        mz, inten, pmz, _ = simulate(tokens, 2, rng, SIM)
        graph = builder.build(mz, inten, pmz, 2)
        masses = residue_masses(tokens)
        cut = pruned_for_training(builder, graph, masses, rng)
        inner = cut.n - 2
        assert inner <= PRUNE_BUDGET[1] and (inner >= PRUNE_BUDGET[0] or inner == graph.n - 2)
        assert np.isin(cut.masses, graph.masses).all() and cut.masses[-1] == graph.masses[-1]
        path, nmask, target = path_label(cut, masses)
        assert path.max() < cut.n and target.shape == (path.size, cut.n)
        truth = true_nodes(cut, masses)
        assert sum(h.size for h in label_nodes(cut, masses)[:-1]) >= truth.sum() > 0
        kept.append(truth.sum() / max(true_nodes(graph, masses).sum(), 1))
    assert np.mean(kept) > 0.7  # the noisy score still keeps most true prefix nodes


def test_hold_dev_keeps_one_real_dev_fold_out_of_training(tmp_path):
    """The three dev folds partition the training split, apart from the held-out one, and a run
    with --hold-dev --dev-fold N trains on the training split without fold N."""
    from engine_graphnovo.evaluation import real_split
    from engine_graphnovo.training import MASSIVEKB, load_weights

    from engine.cli import main

    need(DATA / "proteomes")
    need(MASSIVEKB)
    titles = {name: {s.title for s in real_split(name)} for name in ("heldout", "train")}
    folds = [{s.title for s in real_split("dev", fold=n)} for n in range(3)]
    assert set().union(*folds) == titles["train"] and sum(map(len, folds)) == len(titles["train"])
    assert not titles["train"] & titles["heldout"]
    assert all(80 <= len(fold) <= 140 for fold in folds)
    assert folds[0] == {s.title for s in real_split("dev")}  # fold 0 is the default dev split
    out = tmp_path / "run"
    args = [a for a in TINY if a != "--no-real"] + ["--hold-dev", "--dev-fold", "2"]
    args[args.index("--steps") + 1] = "1"
    assert main(["--quiet", "train", "graphnovo", "-o", str(out), "--threads", "1", *args]) == 0
    record = load_weights(out / "weights")[2]["training"]
    assert record["real_dev_held_out"] is True and record["real_dev_fold"] == 2
    assert 0 < record["real_train_spectra"] <= len(titles["train"] - folds[2])
    assert main(["train", "graphnovo", "-o", str(out), "--dev-fold", "1"]) == 2  # a fold without --hold-dev
