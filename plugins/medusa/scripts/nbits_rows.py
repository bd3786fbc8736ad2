"""Why Medusa over a MatMulNBits base is neither exact nor fast here: one MatMulNBits node of
each of SmolLM2-135M's weight shapes (K -> N: attention 576 -> 576 and 576 -> 192, MLP 576 -> 1536
and 1536 -> 576, LM head 576 -> 49152; random weights, blocks of 32, asymmetric), quantized with
onnxruntime's own MatMulNBitsQuantizer at 4 and 8 bits and accuracy levels 0 and 4, run on the
CPU provider with 1 thread:

- one_row_call_differs: the shapes where row 0 of some M-row call (M = 2, 3, 4, 6, 8) is not bit
  for bit row 0 of a one-row call; row_count_changes_rows: the shapes where rows 0-1 of an M-row
  call (M = 2, 3, 4, 6) are not those of an 8-row call;
- us: microseconds per call with M = 1, 2, 6 rows (median of 5 rounds of 200 calls; the MLP
  shape 576 -> 1536 only).

A greedy loop calls with one row, a tree verification with several: if one-row calls differ from
the rest, the two can disagree on a near-tie whatever the model.

    python scripts/nbits_rows.py > scripts/results/nbits_rows.json
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPES = ((576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152))
TIMED = (576, 1536)


def quantized_session(k: int, n: int, bits: int, level: int, folder: Path):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    weight = (np.random.default_rng(0).normal(size=(k, n)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, accuracy_level=level, bits=bits)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    path = folder / f"{k}x{n}_int{bits}_level{level}.onnx"
    quantizer.model.save_model_to_file(str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def microseconds(session, rows: int) -> float:
    x = np.random.default_rng(rows).normal(size=(rows, TIMED[0])).astype(np.float32)
    for _ in range(20):
        session.run(None, {"x": x})
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            session.run(None, {"x": x})
        rounds.append((time.perf_counter() - start) / 200 * 1e6)
    return round(statistics.median(rounds), 1)


def main() -> dict:
    import onnxruntime

    out = {"onnxruntime": onnxruntime.__version__, "cpu": platform.processor() or platform.machine(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for bits in (4, 8):
            for level in (0, 4):
                run = {"one_row_call_differs": [], "row_count_changes_rows": []}
                for k, n in SHAPES:
                    session = quantized_session(k, n, bits, level, Path(tmp))
                    x = np.random.default_rng(1).normal(size=(8, k)).astype(np.float32)
                    y = {m: session.run(None, {"x": x[:m]})[0] for m in (1, 2, 3, 4, 6, 8)}
                    if not all(np.array_equal(y[m][0], y[1][0]) for m in (2, 3, 4, 6, 8)):
                        run["one_row_call_differs"].append(f"{k}x{n}")
                    if not all(np.array_equal(y[m][:2], y[8][:2]) for m in (2, 3, 4, 6)):
                        run["row_count_changes_rows"].append(f"{k}x{n}")
                    if (k, n) == TIMED:
                        run["us_per_call_576x1536"] = {m: microseconds(session, m) for m in (1, 2, 6)}
                out["runs"][f"int{bits} level {level}"] = run
    return out


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=1)
    print()
