"""How close a weight-only quantized artifact is to the fp32 artifact it was made from, matrix by
matrix. SmolLM2's fp32 weights are the GGUF's own values (transformers dequantizes its Q4_1 /
other blocks), so for the default base this says how far a re-quantization moves them.

    python scripts/gguf_closeness.py FP32_ARTIFACT QUANTIZED_ARTIFACT [GGUF] > OUT.json

For every MatMulNBits weight: the share of entries that come back exactly, the largest and
the RMS error relative to the matrix's RMS. With a GGUF path, also how many of its tensors
are of each quantization type (numpy + onnx + gguf, all already dependencies of the export).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def initializers(model_path: Path) -> tuple[dict[str, np.ndarray], onnx.ModelProto]:
    """A graph's constant tensors by name, and the graph."""
    model = onnx.load(str(model_path))  # external data next to the graph is loaded too
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}, model


def dequantize(q: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, bits: int, k: int, block: int):
    """MatMulNBits' weight back to a float (K, N) matrix: B is (N, blocks, block * bits / 8) uint8,
    low nibble first for 4 bits; zero points packed the same way, one per block."""
    n, blocks = q.shape[0], q.shape[1]
    if bits == 4:
        values = np.stack([q & 0x0F, q >> 4], axis=-1).reshape(n, blocks, block)
        zp = np.stack([zero_points & 0x0F, zero_points >> 4], axis=-1).reshape(n, -1)[:, :blocks]
    else:
        values, zp = q.reshape(n, blocks, block), zero_points.reshape(n, blocks)
    w = (values.astype(np.float32) - zp[..., None]) * scales.reshape(n, blocks)[..., None]
    return w.reshape(n, blocks * block)[:, :k].T


def compare(fp32_graph: Path, quant_graph: Path) -> list[dict]:
    ref, _ = initializers(fp32_graph)
    quant, model = initializers(quant_graph)
    rows = []
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        name = node.input[1].rsplit("_Q", 1)[0]
        if name not in ref:  # a weight the quantizer copied for this node (a tied or transposed one)
            continue
        w = ref[name].astype(np.float32)
        zp = quant[node.input[3]] if len(node.input) > 3 and node.input[3] else None
        if zp is None:
            zp = np.full(quant[node.input[2]].size, 1 << (attrs["bits"] - 1), np.uint8)
        got = dequantize(quant[node.input[1]], quant[node.input[2]], zp, attrs["bits"], attrs["K"], attrs["block_size"])
        err = got - w
        rms = float(np.sqrt(np.mean(w**2)))
        rows.append(
            {
                "weight": name,
                "shape": list(w.shape),
                "exact_fraction": round(float(np.mean(err == 0)), 4),
                "close_fraction_1e-6": round(float(np.mean(np.abs(err) <= 1e-6 * np.abs(w).max())), 4),
                "max_abs_error_over_rms": round(float(np.abs(err).max()) / rms, 4),
                "rms_error_over_rms": round(float(np.sqrt(np.mean(err**2))) / rms, 5),
            }
        )
    return rows


def weighted(rows: list[dict], key: str, digits: int) -> float:
    """``key`` averaged over the matrices, each weighted by its number of entries."""
    sizes = [float(np.prod(r["shape"])) for r in rows]
    return round(float(np.average([r[key] for r in rows], weights=sizes)), digits)


def gguf_types(path: Path) -> dict[str, int]:
    from gguf import GGUFReader

    return dict(collections.Counter(t.tensor_type.name for t in GGUFReader(str(path)).tensors))


def main() -> None:
    fp32, quant = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((quant / "manifest.json").read_text())
    out = {"quantization": manifest["config"].get("quantization"), "graphs": {}}
    for graph in sorted(p.name for p in quant.glob("*.onnx")):
        rows = compare(fp32 / graph, quant / graph)
        if rows:
            out["graphs"][graph] = {
                "matrices": len(rows),
                "exact_fraction_weighted": weighted(rows, "exact_fraction", 4),
                "rms_error_over_rms_weighted": weighted(rows, "rms_error_over_rms", 5),
                "per_matrix": rows,
            }
    if len(sys.argv) > 3:
        out["gguf_tensor_types"] = gguf_types(Path(sys.argv[3]))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
