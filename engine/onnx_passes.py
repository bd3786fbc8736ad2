"""Passes over an exported ONNX graph before it goes into an artifact: fewer and larger kernels for
onnxruntime, computing the same values. On a CPU at batch 1 a transformer step runs over a thousand
small kernels, and each has its own dispatch cost beside the weights it reads.

Imported only by exporters: it needs onnx, and onnxruntime.transformers for the norm fusions
(onnxruntime's own pattern matchers, kept with its operators; written here they would drift).
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
from pathlib import Path


def fuse_rms_norms(model) -> int:
    """RMSNorm as exporters write it (Pow, ReduceMean, Add, Sqrt, Reciprocal/Div, Mul, Mul: seven
    kernels) as one ``SimplifiedLayerNormalization``, and a residual Add feeding one as
    ``SkipSimplifiedLayerNormalization`` (onnxruntime.transformers' fusions, on ``model`` in place).
    Returns how many norms are fused."""
    from onnxruntime.transformers.fusion_simplified_layernorm import (
        FusionSimplifiedLayerNormalization,
        FusionSkipSimplifiedLayerNormalization,
    )
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(model)
    FusionSimplifiedLayerNormalization(wrapped).apply()
    FusionSkipSimplifiedLayerNormalization(wrapped).apply()
    wrapped.prune_graph()
    fused = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
    return sum(n.op_type in fused for n in model.graph.node)


def merge_parallel_matmuls(graph) -> int:
    """MatMuls reading the same input with constant 2-D weights (attention's query, key and value;
    an MLP's gate and up) as one MatMul over the weights side by side, then a Split into the old
    outputs. Each output column is the same dot product as before, and a quantizer that works per
    column (MatMulNBits' blocks run along the input axis) gives each its old values. Returns how
    many MatMuls were merged."""
    import numpy as np
    from onnx import helper, numpy_helper

    weights = {i.name: i for i in graph.initializer if len(i.dims) == 2}
    by_input = collections.defaultdict(list)
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            by_input[node.input[0]].append(node)
    merged = 0
    for source, nodes in by_input.items():
        arrays = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        if len(nodes) < 2 or len({a.shape[0] for a in arrays}) != 1:
            continue
        name = f"{nodes[0].name}_merged"
        widths = np.array([a.shape[1] for a in arrays], np.int64)
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.concatenate(arrays, axis=1), f"{name}.weight"),
                numpy_helper.from_array(widths, f"{name}.widths"),
            ]
        )
        at = list(graph.node).index(nodes[0])
        outputs = [n.output[0] for n in nodes]
        for node in nodes:
            graph.node.remove(node)
        graph.node.insert(at, helper.make_node("Split", [f"{name}.out", f"{name}.widths"], outputs, axis=-1))
        graph.node.insert(at, helper.make_node("MatMul", [source, f"{name}.weight"], [f"{name}.out"], name=name))
        merged += len(nodes)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return merged


def optimize_graph(path: str | os.PathLike[str]) -> dict:
    """Apply the passes above to the graph file ``path`` (with its external data ``path.data``),
    rewriting both; the new files are written beside and renamed over the old ones. Returns how
    many norms were fused and MatMuls merged (the export's record)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))  # external data is read into memory
    done = {"rms_norms_fused": fuse_rms_norms(model), "matmuls_merged": merge_parallel_matmuls(model.graph)}
    data = f"{path.name}.data"
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".passes-") as tmp:
        onnx.save(model, str(Path(tmp) / path.name), save_as_external_data=True, location=data)
        if not (Path(tmp) / data).exists():  # every tensor small enough to sit in the graph
            (path.parent / data).unlink(missing_ok=True)
        for name in (data, path.name):  # the data first: the graph names it
            if (Path(tmp) / name).exists():
                shutil.move(str(Path(tmp) / name), str(path.parent / name))
    return done
