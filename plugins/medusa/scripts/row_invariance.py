"""Does a token's result depend on the other rows of its forward? For each artifact given, one
decode step of token 1234 after a random 10-token KV cache, alone (one row) and as row 0 of a
two-row tree (the second row hidden from it), on onnxruntime's CPU provider, 1 thread, graph
optimisations off: the largest logit difference of row 0, whether its argmax agrees, and the
first node of the graph (in graph order) whose row-0 output differs.

    python scripts/row_invariance.py NAME=ARTIFACT ... > scripts/results/row_invariance_amd.json
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from engine_medusa.ort_path import base_feeds


def session_with_all_outputs(artifact):
    """The `medusa` graph with every node output exposed (written beside its external data)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    path = str(artifact.file(artifact.manifest["models"]["medusa"]["file"]))
    model = onnx.load(path, load_external_data=False)
    known = {o.name for o in model.graph.output}
    order = []
    for node in model.graph.node:
        for out in node.output:
            if out and out not in known:
                model.graph.output.append(helper.make_empty_tensor_value_info(out))
                order.append((node.op_type, out))
    tmp = os.path.join(os.path.dirname(path), "_all_outputs.onnx")
    onnx.save(model, tmp)
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(tmp, options, providers=["CPUExecutionProvider"])
    finally:
        os.remove(tmp)
    return session, order


def compare(artifact) -> dict:
    session, order = session_with_all_outputs(artifact)
    inputs = [i.name for i in session.get_inputs()]
    past_names = [n for n in inputs if n.startswith("past_")]
    kvh, hd = artifact.config["kv_shape"]
    rng = np.random.default_rng(0)
    past = [rng.normal(size=(1, kvh, 10, hd)).astype(np.float32) for _ in past_names]

    def run(ids, allowed, logits_index):
        positions = np.arange(10, 10 + len(ids))[None]
        cache = dict(zip(past_names, past, strict=True))
        feeds = base_feeds(np.array([ids]), positions, allowed, [logits_index], cache)
        if "head_index" in inputs:
            feeds["head_index"] = np.zeros((1, 0), np.int64)
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))

    one = run([1234], np.ones((1, 1, 11), bool), [0])
    hidden_row = np.ones((1, 2, 12), bool)
    hidden_row[0, 0, 11] = False
    two = run([1234, 999], hidden_row, [0, 1])
    first = None
    for op_type, name in order:
        a, b = one[name], two[name]
        grown = [i for i, (p, q) in enumerate(zip(a.shape, b.shape, strict=False)) if p != q]
        if a.ndim != b.ndim or len(grown) > 1 or a.dtype.kind != "f":
            continue
        if grown:
            b = np.take(b, np.arange(a.shape[grown[0]]), axis=grown[0])
        if not np.array_equal(a, b):
            first = {"op": op_type, "output": name, "max_abs_diff": float(np.abs(a - b).max())}
            break
    la, lb = one["logits"][0, 0], two["logits"][0, 0]
    return {
        "logits_max_abs_diff": float(np.abs(la - lb).max()),
        "same_argmax": bool(la.argmax() == lb.argmax()),
        "first_differing_node": first,
        "quantization": artifact.config.get("quantization"),
    }


def main(specs: list[str]) -> dict:
    from engine.artifacts import read_artifact

    return {name: compare(read_artifact(path)) for name, _, path in (s.partition("=") for s in specs)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
