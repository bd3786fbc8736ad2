"""The plugin through the `engine` command line, on a tiny random model."""

import json
import os
import subprocess
import sys

import pytest
from tiny import save_tiny

ENGINE = [sys.executable, "-m", "engine"]


def engine(*args, timeout=300):
    return subprocess.run(
        [*ENGINE, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_tiny(root / "base")
    (root / "p.jsonl").write_text(
        "".join(json.dumps({"id": i, "prompt": f"tell me {i} things"}) + "\n" for i in range(12))
    )
    os.environ["ENGINE_MEDUSA_CACHE"] = str(root / "cache")
    out = engine(
        "--json",
        "train",
        "medusa",
        "--base",
        str(root / "base"),
        "--prompts",
        str(root / "p.jsonl"),
        "--mix",
        "all=12",
        "--max-new-tokens",
        "20",
        "--distill-batch",
        "6",
        "--steps",
        "30",
        "--batch-size",
        "64",
        "--lr",
        "0.01",
        "--val-fraction",
        "0.2",
        "--out",
        str(root / "heads"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert len(report["val_accuracy"]["top1"]) == 4
    return root


def test_tune_tree_stores_a_tree_with_the_heads(trained):
    out = engine(
        "--json",
        "medusa",
        "tune-tree",
        "--heads",
        str(trained / "heads"),
        "--model",
        str(trained / "base"),
        "--prompts",
        str(trained / "p.jsonl"),
        "--limit",
        "3",
        "--skip",
        "0",
        "--max-new-tokens",
        "16",
        "--max-nodes",
        "8",
        "--past",
        "16",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    tree = json.loads((trained / "heads" / "tree.json").read_text())
    assert tree["tuned_on"] == "torch" and len(tree["rank_accuracy"]) == 4
    assert len(tree["choices"]) + 1 <= 8
    assert set(tree["latency_ms"]) >= {"1", "2", "8"}


def test_decode_json_and_bench(trained):
    common = ["--heads", str(trained / "heads"), "--model", str(trained / "base")]
    out = engine("--json", "decode", "medusa", "hello there", "--max-new-tokens", "12", *common)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout)[0]
    assert 0 < len(row["tokens"]) <= 12 and row["steps"] >= 1
    out = engine(
        "--json",
        "bench",
        "medusa",
        *common,
        "--prompts",
        str(trained / "p.jsonl"),
        "--limit",
        "2",
        "--max-new-tokens",
        "16",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    b = json.loads(out.stdout)
    for key in (
        "baseline_tokens_per_s",
        "ort_greedy_tokens_per_s",
        "torch_tokens_per_s",
        "ort_tokens_per_s",
        "tokens_per_step",
        "speedup_torch",
        "speedup_ort",
        "speedup_ort_vs_ort_greedy",
        "identical_torch",
        "identical_ort",
        "prompts",
        "device",
    ):
        assert key in b
    assert b["identical_torch"] is True and b["prompts"] == 2
    # the artifact was exported into the cache; both onnxruntime loops gave HF's tokens
    assert b["identical_ort"] is True and b["identical_ort_greedy"] is True and b["ort_tokens_per_s"] > 0
    out = engine(
        "--json",
        "eval",
        "medusa",
        *common,
        "--prompts",
        str(trained / "p.jsonl"),
        "--limit",
        "2",
        "--max-new-tokens",
        "12",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ev = json.loads(out.stdout)
    assert len(ev["top1"]) == 4 and ev["tokens_per_step"] >= 1.0 and ev["prompts"] == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["decode", "medusa", "   "], "empty prompt"),
        (["decode", "medusa", "hi", "--max-new-tokens", "0"], "max_new_tokens"),
        (["decode", "medusa", "hi", "--heads", "/nonexistent"], "no Medusa heads"),
        (["medusa", "grow"], "unknown medusa command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained, args, message):
    if args[0] == "decode":
        heads = [] if "--heads" in args else ["--heads", str(trained / "heads")]
        args = [*args, "--model", str(trained / "base"), *heads]
    out = engine(*args)
    assert out.returncode == 2, (out.returncode, out.stderr[-1500:])
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert message in lines[-1] and len(lines) == 1, out.stderr
