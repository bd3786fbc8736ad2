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
from engine_medusa.ort_path import OrtBackend

from engine.artifacts import read_artifact

ROWS = (1, 2, 3, 6, 8)
PAST = 10


def compare(path: str) -> dict:
    art = read_artifact(path)
    backend = OrtBackend(art, "cpu", threads=1)  # the decoder's own forward (OrtBackend.row0_logits)
    kvh, hd = art.config["kv_shape"]
    out: dict[str, list[float]] = {}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        past = [rng.normal(size=(1, kvh, PAST, hd)).astype(np.float32) for _ in backend.past_names]
        token = int(rng.integers(100, 40000))
        rows = {n: backend.row0_logits(past, [token, *rng.integers(100, 40000, n - 1)]) for n in ROWS}
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
