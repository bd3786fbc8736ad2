"""Passes over an exported ONNX graph before it goes into an artifact: fewer and larger kernels for
onnxruntime, computing the same values up to rounding. On a CPU at batch 1 a transformer step runs
over a thousand small kernels, and each has its own dispatch cost beside the weights it reads.

Imported only by exporters: it needs onnx, and onnxruntime.transformers for the norm fusions
(onnxruntime's own pattern matchers, kept with its operators). Its rotary matcher expects other
exports of transformers' code than torch.onnx's dynamo exporter writes and finds nothing in these
graphs, so the rotary fusion is matched here.
"""

from __future__ import annotations

import collections
import functools
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


def _constant(graph, name: str):
    """The value of ``name`` when an initializer or a Constant node gives it, else None."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t) if node.attribute[0].name == "value" else None
    return None


def _rotate_half_sites(graph):
    """Where the graph computes ``x * cos + rotate_half(x) * sin`` on the last axis (rotate_half(x) =
    [-x2, x1] for the halves x1, x2 of x), as transformers writes rotary position embeddings:
    [(the Add, x, cos, sin, half width)]."""
    made = {out: node for node in graph.node for out in node.output}
    used = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            used[name].append(node)
    const = functools.lru_cache(maxsize=None)(lambda name: _constant(graph, name))

    def only_user(name, op):
        users = used.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def half_slice(name, lower: bool):
        node = made.get(name)
        if node is None or node.op_type != "Slice" or len(node.input) < 4:
            return None
        starts, ends, axes = (const(n) for n in node.input[1:4])
        steps = const(node.input[4]) if len(node.input) > 4 else [1]
        if any(v is None or len(v) != 1 for v in (starts, ends, axes, steps)):
            return None
        if steps[0] != 1 or axes[0] not in (-1, 3):
            return None
        half = int(ends[0]) if lower else int(starts[0])
        if (lower and starts[0] != 0) or (not lower and ends[0] < 2 * half) or half <= 0:
            return None
        return node.input[0], half

    sites = []
    for neg in (n for n in graph.node if n.op_type == "Neg"):
        upper, cat = half_slice(neg.input[0], lower=False), only_user(neg.output[0], "Concat")
        if upper is None or cat is None or list(cat.input[:1]) != [neg.output[0]] or len(cat.input) != 2:
            continue
        if cat.attribute[0].i not in (-1, 3) or half_slice(cat.input[1], lower=True) != upper:
            continue
        x, half = upper
        by_sin, add = only_user(cat.output[0], "Mul"), None
        if by_sin is not None:
            add = only_user(by_sin.output[0], "Add")
        if add is None:
            continue
        by_cos = made.get(next((i for i in add.input if i != by_sin.output[0]), ""))
        if by_cos is None or by_cos.op_type != "Mul" or x not in by_cos.input:
            continue
        sin = next(i for i in by_sin.input if i != cat.output[0])
        cos = next((i for i in by_cos.input if i != x), x)
        sites.append((add, x, cos, sin, half))
    return sites


def _subgraph(model, source: str, outputs: list[str]):
    """A model computing ``outputs`` of ``model`` from its input ``source`` alone (KeyError when they
    need another input)."""
    from onnx import helper

    graph = model.graph
    made = {out: node for node in graph.node for out in node.output}
    inits = {i.name: i for i in graph.initializer}
    wanted, need, seen = set(), list(outputs), set()
    while need:
        name = need.pop()
        if not name or name in seen or name == source or name in inits:
            continue
        seen.add(name)
        node = made[name]  # KeyError: another graph input
        wanted.add(id(node))
        need.extend(node.input)
    nodes = [n for n in graph.node if id(n) in wanted]
    used = {i for n in nodes for i in n.input}
    sub = helper.make_graph(
        nodes,
        "subgraph",
        [i for i in graph.input if i.name == source],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        initializer=[inits[name] for name in used if name in inits],
    )
    return helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)


def fuse_rotary_embeddings(model, positions: str, max_positions: int) -> int:
    """Rotary position embeddings (seven kernels per query or key tensor: Mul, Slice, Slice, Neg,
    Concat, Mul, Add) as onnxruntime's ``RotaryEmbedding`` on cos/sin tables of ``max_positions``
    rows. The tables are the graph's own cos and sin (the subgraph from the ``positions`` input,
    evaluated by onnxruntime for positions 0 .. max_positions - 1), taken only when their two halves
    are equal, as rotate_half needs. Returns how many were fused."""
    import numpy as np
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = model.graph
    sites = _rotate_half_sites(graph)
    tables = {}
    for pair in {(cos, sin) for _, _, cos, sin, _ in sites}:
        try:
            sub = _subgraph(model, positions, list(pair))
        except KeyError:  # cos/sin need more than the positions: leave those sites as they are
            continue
        feeds = {positions: np.arange(max_positions, dtype=np.int64)[None]}
        got = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        if any(t.size % max_positions for t in got):
            continue
        got = [t.reshape(max_positions, -1) for t in got]
        width = got[0].shape[1]
        if all(t.shape[1] == width and np.array_equal(t[:, : width // 2], t[:, width // 2 :]) for t in got):
            tables[pair] = got  # each row its two equal halves, as rotate_half needs
    fused, stored = 0, set()
    for add, x, cos, sin, half in sites:
        table = tables.get((cos, sin))
        if table is None or table[0].shape[1] != 2 * half:
            continue
        name = f"{cos}.{sin}.rotary"
        if name not in stored:  # one pair of tables for every site that reads this cos and sin
            stored.add(name)
            graph.initializer.extend(
                numpy_helper.from_array(np.ascontiguousarray(t[:, :half]), f"{name}.{part}")
                for part, t in zip(("cos", "sin"), table, strict=True)
            )
        at = list(graph.node).index(add)
        graph.node.remove(add)
        rotary = helper.make_node(
            "RotaryEmbedding", [x, positions, f"{name}.cos", f"{name}.sin"], list(add.output), domain="com.microsoft"
        )
        graph.node.insert(at, rotary)
        fused += 1
    if fused:
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        from onnxruntime.transformers.onnx_model import OnnxModel

        OnnxModel(model).prune_graph()
    return fused


def optimize_graph(path: str | os.PathLike[str], positions: tuple[str, int] | None = None) -> dict:
    """Apply the passes above to the graph file ``path`` (with its external data ``path.data``),
    rewriting both; the new files are written beside and renamed over the old ones. ``positions``:
    the graph's position-id input and the most positions it takes, for the rotary fusion. Returns
    how many norms, rotary embeddings and MatMuls were changed (the export's record)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))  # external data is read into memory
    done = {"rms_norms_fused": fuse_rms_norms(model)}
    if positions is not None:
        done["rotary_embeddings_fused"] = fuse_rotary_embeddings(model, *positions)
    done["matmuls_merged"] = merge_parallel_matmuls(model.graph)
    data = f"{path.name}.data"
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".passes-") as tmp:
        onnx.save(model, str(Path(tmp) / path.name), save_as_external_data=True, location=data)
        if not (Path(tmp) / data).exists():  # every tensor small enough to sit in the graph
            (path.parent / data).unlink(missing_ok=True)
        for name in (data, path.name):  # the data first: the graph names it
            if (Path(tmp) / name).exists():
                shutil.move(str(Path(tmp) / name), str(path.parent / name))
    return done
