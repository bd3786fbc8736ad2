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
