"""ONNX export of the score network into an engine artifact. Only the network is in the
graph (tokens, sigma_bar -> raw output, dynamic batch and length); the graph's sigma
scaling and all sampler math stay in float64 numpy outside it (the dynamo exporter turns
expm1 into exp - 1, which would cost precision at tiny sigma_bar)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import warnings
from pathlib import Path

import torch

INPUTS = ["tokens", "sigma_bar"]
OUTPUTS = ["raw_score"]
MODEL_FILE = "score_net.onnx"
OPSET = 20  # opset 20 has a Gelu op: ~10 % faster on onnxruntime than 18's decomposed tanh GELU


def export_onnx_model(net, dest: Path, opset: int = OPSET) -> Path:
    """Write the network as one self-contained .onnx file (dynamo exporter)."""
    net = net.eval()
    tokens = torch.zeros(2, 8, dtype=torch.long)  # length >= 2: dynamo dislikes length 1
    sigma_bar = torch.ones(2, dtype=torch.float32)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    # the exporter reports progress on stdout: keep stdout clean for --json output
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = _export(net, tokens, sigma_bar, batch, length, opset)
    program.save(str(dest), external_data=False)
    return dest


def _export(net, tokens, sigma_bar, batch, length, opset):
    return torch.onnx.export(
        net,
        (tokens, sigma_bar),
        dynamo=True,
        opset_version=opset,
        input_names=INPUTS,
        output_names=OUTPUTS,
        dynamic_shapes={"tokens": {0: batch, 1: length}, "sigma_bar": {0: batch}},
        verbose=False,
    )


def export_artifact(net, config: dict, dest, opset: int = OPSET, overwrite: bool = True) -> Path:
    from engine.artifacts import write_artifact

    from . import __version__

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx_model(net, Path(tmp) / MODEL_FILE, opset)
        return write_artifact(
            dest,
            plugin="sedd",
            kind="sampler",
            component="sedd",
            files={MODEL_FILE: onnx_path},
            models={"score_net": {"file": MODEL_FILE, "inputs": INPUTS, "outputs": OUTPUTS}},
            opset=opset,
            config=config,
            plugin_version=__version__,
            overwrite=overwrite,
        )
