"""Where a Medusa verification forward spends its time on onnxruntime (issue 11): the `medusa` graph
of an artifact timed at 1..8 new tokens over a fixed cache, its kernels profiled by op type (the
weight MatMuls and the LM head apart), and the same graph after onnxruntime's transformer fusions.

    python scripts/step_profile.py ARTIFACT [--past 150] [--threads 1] > scripts/results/step_profile.json

Inputs are random (token ids, cache): timings and kernel shares do not depend on the values. The
fused copy (RMSNorm + residual as SkipSimplifiedLayerNormalization, by onnxruntime.transformers) is
written to a temporary folder and compared on the same feeds (largest logit difference, argmax)."""

from __future__ import annotations

import argparse
import collections
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.runtime import create_session

ROWS = (1, 2, 3, 5, 8)


def session(path: Path, threads: int, profile: str | None = None):
    """A CPU session from the engine's one session factory, profiling into ``profile`` if given."""
    options = ort.SessionOptions()
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, profile
    return create_session(str(path), "cpu", threads=threads, options=options)


def feeds(sess, rows: int, past: int, rng) -> dict:
    cache = {
        i.name: rng.standard_normal((1, *i.shape[1:2], past, i.shape[3])).astype(np.float32)
        for i in sess.get_inputs()
        if i.name.startswith("past_")
    }
    return {
        "input_ids": rng.integers(0, 1000, (1, rows)),
        "position_ids": (past + np.arange(rows))[None],
        "attention_mask": np.zeros((1, 1, rows, past + rows), np.float32),
        "logits_index": np.arange(rows)[None],
        **cache,
    }


def median_ms(sess, feed, repeats: int = 15) -> float:
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def kernel_ms(path: Path, feed, threads: int, runs: int = 10) -> dict:
    """Mean kernel time per run by op type; MatMuls split into the LM head and the rest."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(path, threads, f"{tmp}/p")
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    kernels = [
        (e["args"]["op_name"], _last_dim(e["args"].get("output_type_shape")), e["dur"] / runs / 1000)
        for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
    ]
    widest = max(d for op, d, _ in kernels if op.startswith("MatMul"))  # the LM head's output: the vocabulary
    total = collections.Counter()
    for op, dim, ms in kernels:
        total[op + (" (LM head)" if op.startswith("MatMul") and dim == widest else "")] += ms
    return {op: round(ms, 2) for op, ms in total.most_common()}


def _last_dim(shapes) -> int:
    """The last dimension of a profiled kernel's first output ([{"float": [1, 5, 49152]}] -> 49152)."""
    try:
        return int(next(iter(shapes[0].values()))[-1])
    except (TypeError, IndexError, StopIteration, ValueError):
        return 0


def fused_copy(path: Path, dest: Path) -> Path:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(path), model_type="gpt2", opt_level=0, optimization_options=FusionOptions("gpt2"))
    model.save_model_to_file(str(dest / "medusa.onnx"), use_external_data_format=True)
    return dest / "medusa.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--past", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    graph = args.artifact / "medusa.onnx"
    rng = np.random.default_rng(0)
    sess = session(graph, args.threads)
    out = {
        "artifact": str(args.artifact),
        "past": args.past,
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    batches = {n: feeds(sess, n, args.past, rng) for n in ROWS}
    out["forward_ms"] = {str(n): median_ms(sess, f) for n, f in batches.items()}
    out["kernels_ms"] = {str(n): kernel_ms(graph, batches[n], args.threads) for n in (1, 5)}
    with tempfile.TemporaryDirectory() as tmp:
        fused = session(fused_copy(graph, Path(tmp)), args.threads)
        import onnx

        count = lambda p: len(onnx.load(str(p), load_external_data=False).graph.node)  # noqa: E731
        rows = {}
        for n in (1, 5):  # alternate the two graphs so that load changes hit both
            a, b = sess.run(None, batches[n])[0], fused.run(None, batches[n])[0]
            rows[str(n)] = {
                "plain_ms": median_ms(sess, batches[n]),
                "fused_ms": median_ms(fused, batches[n]),
                "max_abs_logit_diff": float(np.abs(a - b).max()),
                "same_argmax": bool((a.argmax(-1) == b.argmax(-1)).all()),
            }
        out["fused"] = {"nodes_plain_file": count(graph), "nodes_fused_file": count(Path(tmp) / "medusa.onnx"), **rows}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
