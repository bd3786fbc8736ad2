"""engine.quantize: dynamic int8 of an exported graph."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from engine.quantize import quantize_dynamic_int8, without_value_info  # noqa: E402


def _two_matmuls(recorded_hidden_shape):
    """x[n,8] @ W1[8,16] -> h, h @ W2[16,4] -> y, with h's shape recorded as given (value_info)."""
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [8, 16], rng.normal(size=(8, 16)).astype(np.float32).ravel())
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [16, 4], rng.normal(size=(16, 4)).astype(np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
        "two_matmuls",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[w1, w2],
        value_info=[helper.make_tensor_value_info("h", TensorProto.FLOAT, recorded_hidden_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_recorded_shapes_that_contradict_the_graph_do_not_stop_quantization(tmp_path):
    """torch 2.11's exporter records intermediate shapes that the quantizer of onnxruntime 1.30
    (onnx 1.23.1) then refuses to re-infer; newer stacks accept them. The int8 graph stays close."""
    model = _two_matmuls(["n", 32])  # the graph makes h [n, 16]
    onnx.save(model, tmp_path / "fp32.onnx")
    quantize_dynamic_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    quantized = onnx.load(tmp_path / "int8.onnx")
    assert {n.op_type for n in quantized.graph.node} >= {"MatMulInteger", "DynamicQuantizeLinear"}
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    fp32, int8 = _run(tmp_path / "fp32.onnx", x), _run(tmp_path / "int8.onnx", x)
    assert np.abs(int8 - fp32).max() < 0.05 * np.abs(fp32).max()
    assert onnx.load(tmp_path / "fp32.onnx").graph.value_info[0].name == "h"  # the source is untouched


def test_dropping_recorded_shapes_changes_no_node_and_no_output(tmp_path):
    model = _two_matmuls(["n", 16])
    onnx.save(model, tmp_path / "a.onnx")
    out = without_value_info(tmp_path / "a.onnx", tmp_path / "b.onnx")
    stripped = onnx.load(out)
    assert len(stripped.graph.value_info) == 0 and len(model.graph.value_info) == 1
    assert stripped.graph.node == model.graph.node and stripped.graph.initializer == model.graph.initializer
    x = np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(tmp_path / "a.onnx", x), _run(out, x))
