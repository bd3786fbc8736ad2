"""ONNX export of the score network into an engine artifact. Only the network is in the
graph (tokens, sigma_bar -> raw output, dynamic batch and length); the graph's sigma
scaling and all sampler math stay in float64 numpy outside it (the dynamo exporter turns
expm1 into exp - 1, which would cost precision at tiny sigma_bar)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from engine.artifacts import quiet_exporter
from engine.errors import UsageError

INPUTS = ["tokens", "sigma_bar", "rows"]  # rows: the positions whose output is wanted (not in a causal network)
OUTPUTS = ["raw_score"]
MODEL_FILE = "score_net.onnx"
OPSET = 20  # opset 20 has a Gelu op: ~10 % faster on onnxruntime than 18's decomposed tanh GELU


def graph_inputs(net) -> list[str]:
    """The exported graph's inputs: ``rows`` only for the bidirectional network (the causal baseline refuses it)."""
    return INPUTS[:2] if net.cfg.causal else INPUTS


def export_onnx_model(net, dest: Path, opset: int = OPSET, rotary_halves: bool = True) -> Path:
    """Write the network as one self-contained .onnx file (dynamo exporter), rotary's pairs in
    contiguous halves (``rotary_halves=False``: interleaved, as exported before; for timing)."""
    net = net.eval().with_rotary_halves() if rotary_halves else net.eval()
    tokens = torch.zeros(2, 8, dtype=torch.long)  # length >= 2: dynamo dislikes length 1
    sigma_bar = torch.ones(2, dtype=torch.float32)
    Dim = torch.export.Dim
    batch, length = Dim("batch"), Dim("length")
    names = graph_inputs(net)
    inputs, shapes = (tokens, sigma_bar), {"tokens": {0: batch, 1: length}, "sigma_bar": {0: batch}}
    if "rows" in names:
        inputs += (torch.tensor([[0, 3, 5], [1, 2, 7]]),)
        shapes["rows"] = {0: batch, 1: Dim("rows")}
    with quiet_exporter():
        program = torch.onnx.export(
            net,
            inputs,
            dynamo=True,
            opset_version=opset,
            input_names=names,
            output_names=OUTPUTS,
            dynamic_shapes=shapes,
            verbose=False,
        )
    program.save(str(dest), external_data=False)
    return dest


def export_artifact(
    sampler, dest, *, opset: int | None = None, overwrite: bool = False, quantize: str | None = None
) -> Path:
    """The torch ``sampler``'s score network and model config, as an engine artifact at ``dest``;
    ``quantize="int8"``: its MatMuls dynamic int8 (engine.quantize; the manifest records it)."""
    from engine.artifacts import check_destination, write_component_artifact

    if quantize not in (None, "int8"):
        raise UsageError(f"sedd quantizes to int8 only (dynamic int8 of its small MatMuls), not {quantize!r}")
    check_destination(Path(dest), overwrite)  # before the export, which takes a while
    opset = opset or OPSET
    net = sampler.net
    device = next(net.parameters()).device
    with tempfile.TemporaryDirectory() as tmp:
        try:
            onnx_path = export_onnx_model(net.cpu(), Path(tmp) / MODEL_FILE, opset)
        finally:
            net.to(device)
        config = sampler.config
        if quantize:
            from engine.quantize import dynamic_int8_scheme, quantize_dynamic_int8

            quantized = Path(tmp) / "int8" / MODEL_FILE
            quantized.parent.mkdir()
            quantize_dynamic_int8(onnx_path, quantized)
            onnx_path, config = quantized, {**config, "quantization": dynamic_int8_scheme()}
        return write_component_artifact(
            sampler,
            dest,
            files={MODEL_FILE: onnx_path},
            models={"score_net": {"file": MODEL_FILE, "inputs": graph_inputs(net), "outputs": OUTPUTS}},
            opset=opset,
            config=config,
            overwrite=overwrite,
        )
