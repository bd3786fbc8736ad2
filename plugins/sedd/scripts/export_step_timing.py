"""One network evaluation on onnxruntime with rotary's pairs interleaved (the export before
"A cheaper step") against contiguous halves (ScoreNet.with_rotary_halves, the export since),
for the model card: the default model, fp32 and dynamic int8 exports, a batch of 8 x 256
tokens, 1 thread; N timed rounds alternating the layouts so that changes of the machine's load
hit both alike, after 3 untimed runs each. Also the largest difference of each export's output
from torch's, and the int8 exports' time per operator type (onnxruntime's profiler, 5 evaluations).
Prints JSON.

    python scripts/export_step_timing.py [--rounds N]

A timing on this machine at the time: it moves with the load (other jobs on the cores).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

BATCH, LENGTH = 8, 256


def session(path: Path, profile: bool = False):
    import onnxruntime as ort

    from engine.runtime import create_session

    opts = ort.SessionOptions()
    opts.enable_profiling = profile
    return create_session(path, "cpu", threads=1, options=opts)


def feeds_for(sess, tokens, sigma_bar) -> dict:
    names = {i.name for i in sess.get_inputs()}
    return {k: v for k, v in {"tokens": tokens, "sigma_bar": sigma_bar}.items() if k in names}


def op_shares(path: Path, feeds) -> dict:
    """Share of the kernel time per operator type over 5 runs (onnxruntime's profiler)."""
    sess = session(path, profile=True)
    for _ in range(5):
        sess.run(None, feeds_for(sess, *feeds))
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    os.remove(f.name)
    times = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[e["args"]["op_name"]] += e["dur"]
    total = sum(times.values())
    return {op: round(t / total, 4) for op, t in times.most_common(10)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=10, help="timed rounds (5 runs of each export per round)")
    a = p.parse_args()

    import numpy as np
    import torch
    from engine_sedd.bundle import load_model_dir
    from engine_sedd.component import DEFAULT_MODEL
    from engine_sedd.export import export_onnx_model

    from engine.quantize import quantize_dynamic_int8

    torch.set_num_threads(1)
    net = load_model_dir(DEFAULT_MODEL)[0]
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, net.cfg.vocab, (BATCH, LENGTH)).astype(np.int64)
    sigma_bar = np.ones(BATCH, dtype=np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(tokens), torch.from_numpy(sigma_bar)).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for layout in ("interleaved", "halves"):
            fp32, int8 = Path(tmp) / f"{layout}.onnx", Path(tmp) / f"{layout}_int8.onnx"
            export_onnx_model(net, fp32, rotary_halves=layout == "halves")
            quantize_dynamic_int8(fp32, int8)
            paths[f"{layout}_fp32"], paths[f"{layout}_int8"] = fp32, int8
        sessions = {name: session(path) for name, path in paths.items()}
        out = {name: s.run(None, feeds_for(s, tokens, sigma_bar))[0] for name, s in sessions.items()}
        for s in sessions.values():
            for _ in range(3):
                s.run(None, feeds_for(s, tokens, sigma_bar))
        ms = {name: [] for name in sessions}
        for _ in range(a.rounds):
            for name, s in sessions.items():
                feeds = feeds_for(s, tokens, sigma_bar)
                start = time.perf_counter()
                for _ in range(5):
                    s.run(None, feeds)
                ms[name].append((time.perf_counter() - start) / 5 * 1000)
        shares = {name: op_shares(path, (tokens, sigma_bar)) for name, path in paths.items() if "int8" in name}
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "batch": BATCH,
                "length": LENGTH,
                "threads": 1,
                "rounds": a.rounds,
                "ms_per_evaluation_median": {k: statistics.median(v) for k, v in ms.items()},
                "ms_per_evaluation_min": {k: min(v) for k, v in ms.items()},
                "max_abs_diff_from_torch": {k: float(np.abs(v - ref).max()) for k, v in out.items()},
                "int8_op_time_shares": shares,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
