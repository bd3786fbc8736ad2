"""Tiny ONNX graphs built with onnx.helper, for runtime and artifact tests."""

from __future__ import annotations

import numpy as np


def add_one_model() -> bytes:
    """y = x + 1 over a float32 vector of any length."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        initializer=[one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def run_add_one(session) -> np.ndarray:
    return session.run(["y"], {"x": np.arange(3, dtype=np.float32)})[0]
