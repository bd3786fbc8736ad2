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
