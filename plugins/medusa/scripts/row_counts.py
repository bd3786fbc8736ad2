"""Does row 0's result depend on how many rows its call has? For each artifact given, the
`medusa` graph (onnxruntime CPU, 1 thread, default graph optimisations) runs token T after a
random 10-token cache as row 0 of calls of 1, 2, 3, 6 and 8 rows; every row sees the cache and
itself only, the other rows carry random tokens. Printed: the largest logit difference of row 0
between the one-row call and each larger call, and between the two-row call and each larger
one, for 3 random draws.

    python scripts/row_counts.py NAME=ARTIFACT ... > scripts/results/row_counts.json
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
from engine_medusa.ort_path import base_feeds

from engine.artifacts import read_artifact

ROWS = (1, 2, 3, 6, 8)
PAST = 10


def row0_logits(session, past_names, past, ids) -> np.ndarray:
    n = len(ids)
    allowed = np.zeros((1, n, PAST + n), bool)
    allowed[0, :, :PAST] = True
    allowed[0, np.arange(n), PAST + np.arange(n)] = True
    feeds = base_feeds(
        np.array([ids]), np.full((1, n), PAST), allowed, [list(range(n))], dict(zip(past_names, past, strict=True))
    )
    if "head_index" in [i.name for i in session.get_inputs()]:
        feeds["head_index"] = np.zeros((1, 0), np.int64)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))["logits"][0, 0]


def compare(path: str) -> dict:
    art = read_artifact(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    model = str(art.file(art.manifest["models"]["medusa"]["file"]))
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    past_names = [i.name for i in session.get_inputs() if i.name.startswith("past_")]
    kvh, hd = art.config["kv_shape"]
    out: dict[str, list[float]] = {}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        past = [rng.normal(size=(1, kvh, PAST, hd)).astype(np.float32) for _ in past_names]
        token = int(rng.integers(100, 40000))
        rows = {n: row0_logits(session, past_names, past, [token, *rng.integers(100, 40000, n - 1)]) for n in ROWS}
        for base in (1, 2):
            for n in ROWS[base:]:
                diff = float(np.abs(rows[base] - rows[n]).max())
                out.setdefault(f"{base}_vs_{n}_rows", []).append(diff)
    return {"quantization": art.config.get("quantization"), "row0_max_abs_logit_diff": out}


if __name__ == "__main__":
    result = {}
    for arg in sys.argv[1:]:
        name, _, path = arg.partition("=")
        result[name] = compare(path)
    print(json.dumps(result, indent=2))
