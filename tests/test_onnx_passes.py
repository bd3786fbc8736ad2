"""engine.onnx_passes: the graph passes an exporter runs before writing an artifact."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from engine.onnx_passes import fuse_rotary_embeddings, optimize_graph  # noqa: E402

D, WIDTHS = 32, (32, 16, 16)  # hidden size; query, key, value (weights large enough for external data)


def _block(eps: float = 1e-5):
    """s = x + r; h = RMSNorm(s) * w as torch's exporter writes it; q, k, v = h @ Wq, h @ Wk, h @ Wv."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(np.array(eps, np.float32), "eps"),
        numpy_helper.from_array(rng.normal(size=D).astype(np.float32), "norm.weight"),
    ]
    nodes = [
        helper.make_node("Add", ["x", "r"], ["s"]),
        helper.make_node("Pow", ["s", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "last"], ["mean"], keepdims=1),
        helper.make_node("Add", ["mean", "eps"], ["var"]),
        helper.make_node("Sqrt", ["var"], ["std"]),
        helper.make_node("Reciprocal", ["std"], ["rstd"]),
        helper.make_node("Mul", ["s", "rstd"], ["normed"]),
        helper.make_node("Mul", ["norm.weight", "normed"], ["h"]),
    ]
    outputs = []
    for name, width in zip("qkv", WIDTHS, strict=True):
        inits.append(numpy_helper.from_array(rng.normal(size=(D, width)).astype(np.float32), f"w{name}"))
        nodes.append(helper.make_node("MatMul", ["h", f"w{name}"], [name], name=f"proj_{name}"))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["b", "t", width]))
    outputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, ["b", "t", D]))
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "t", D]) for n in ("x", "r")]
    graph = helper.make_graph(nodes, "block", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)


def _save(model, folder):
    path = folder / "block.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="block.onnx.data")
    return path


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_norms_fused_and_projections_merged_give_the_same_values(tmp_path):
    path = _save(_block(), tmp_path)
    rng = np.random.default_rng(1)
    feeds = {n: rng.normal(size=(2, 3, D)).astype(np.float32) for n in ("x", "r")}
    before = _run(path, feeds)
    done = optimize_graph(path)
    assert done == {"rms_norms_fused": 1, "matmuls_merged": 3}
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("MatMul") == 1 and "Pow" not in ops and "Reciprocal" not in ops
    after = _run(path, feeds)
    assert [a.shape for a in after] == [b.shape for b in before]
    for a, b in zip(after, before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert (tmp_path / "block.onnx.data").exists() and not list(tmp_path.glob(".passes-*"))  # no temporary left


def test_a_graph_without_the_patterns_is_left_as_it_is(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "one", [x], [y], initializer=[w])
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9), tmp_path)
    assert optimize_graph(path) == {"rms_norms_fused": 0, "matmuls_merged": 0}
    feeds = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}
    np.testing.assert_array_equal(_run(path, feeds)[0], feeds["x"])


def _rotary(cos_from: str = "position_ids", heads: int = 2, width: int = 8, max_positions: int = 16):
    """y = x * cos + rotate_half(x) * sin on x [B, heads, S, width], cos and sin of position_ids
    [B, S] as transformers computes them (the frequencies twice over, one axis for the heads)."""
    half = width // 2
    inv_freq = (1.0 / 10000 ** (np.arange(half) / half)).astype(np.float32)
    ints = {"two": [2], "one": [1], "zero": [0], "half": [half], "end": [2**62], "last": [-1], "step": [1]}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()]
    inits.append(numpy_helper.from_array(inv_freq, "inv_freq"))
    nodes = [
        helper.make_node("Unsqueeze", [cos_from, "two"], ["pos3"]),
        helper.make_node("Cast", ["pos3"], ["posf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["posf", "inv_freq"], ["freqs"]),
        helper.make_node("Concat", ["freqs", "freqs"], ["emb"], axis=-1),
        helper.make_node("Cos", ["emb"], ["cos3"]),
        helper.make_node("Sin", ["emb"], ["sin3"]),
        helper.make_node("Unsqueeze", ["cos3", "one"], ["cos"]),
        helper.make_node("Unsqueeze", ["sin3", "one"], ["sin"]),
        helper.make_node("Mul", ["x", "cos"], ["x_cos"]),
        helper.make_node("Slice", ["x", "zero", "half", "last", "step"], ["x1"]),
        helper.make_node("Slice", ["x", "half", "end", "last", "step"], ["x2"]),
        helper.make_node("Neg", ["x2"], ["neg"]),
        helper.make_node("Concat", ["neg", "x1"], ["rotated"], axis=-1),
        helper.make_node("Mul", ["rotated", "sin"], ["rot_sin"]),
        helper.make_node("Add", ["x_cos", "rot_sin"], ["y"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", heads, "s", width]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["b", "s"]),
    ]
    if cos_from != "position_ids":
        inputs.append(helper.make_tensor_value_info(cos_from, TensorProto.INT64, ["b", "s"]))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", heads, "s", width])
    graph = helper.make_graph(nodes, "rotary", inputs, [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)


def test_rotary_embeddings_fused_on_the_graphs_own_tables(tmp_path):
    path = _save(_rotary(), tmp_path)
    rng = np.random.default_rng(2)
    feeds = {"x": rng.normal(size=(2, 2, 3, 8)).astype(np.float32), "position_ids": np.array([[0, 1, 2], [7, 9, 15]])}
    before = _run(path, feeds)[0]
    assert optimize_graph(path, ("position_ids", 16))["rotary_embeddings_fused"] == 1
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["RotaryEmbedding"]  # the cos/sin subgraph and the seven kernels are gone
    np.testing.assert_allclose(_run(path, feeds)[0], before, rtol=1e-5, atol=1e-6)


def test_rotary_tables_that_need_another_input_are_left_alone():
    model = _rotary(cos_from="other_positions")
    assert fuse_rotary_embeddings(model, "position_ids", 16) == 0
    assert "RotaryEmbedding" not in [n.op_type for n in model.graph.node]
