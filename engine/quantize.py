"""Dynamic int8 quantization of an exported ONNX graph, with onnxruntime's own tooling: the
weights of MatMul and Gemm become int8 per output channel, activations are quantized at run
time. Weights use 7 bits of the 8 (``reduce_range``): the u8 x s8 kernels of CPUs without VNNI
(AVX2, AVX-512 before VNNI) add pairs of products in 16 bits, which saturates with full-range
weights; an artifact must be as accurate on every x86-64 CPU it may run on. It suits small
models whose MatMuls are compute-bound on a CPU (weight-only 4/8-bit ``MatMulNBits``, for
large language models, is the Medusa plugin's). Imported only when a plugin quantizes:
onnxruntime.quantization pulls in onnx.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path


def dynamic_int8_scheme() -> dict:
    """The manifest's record of the scheme (an artifact's ``config["quantization"]``)."""
    import onnxruntime

    return {
        "scheme": "dynamic-int8",
        "ops": ["MatMul", "Gemm"],
        "per_channel": True,
        "weight_bits": 7,
        "tool": f"onnxruntime {onnxruntime.__version__}",
    }


def quantize_dynamic_int8(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Write the dynamic-int8 version of the graph ``src`` to ``dest``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs advice on pre-processing to the root logger
    try:
        with tempfile.TemporaryDirectory() as tmp:
            quantize_dynamic(
                str(without_value_info(src, Path(tmp) / "src.onnx")),
                str(dest),
                op_types_to_quantize=["MatMul", "Gemm"],
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
            )
    finally:
        root.setLevel(level)


def without_value_info(src: str | os.PathLike[str], dest: Path) -> Path:
    """``src`` without its recorded intermediate shapes, written to ``dest``. The quantizer
    re-infers shapes strictly, and torch 2.11's exporter records some that contradict the
    graph (inference then fails: "existing shape differ in dimension 0: (256) vs (128)");
    they are optional, so dropping them changes no node and no output."""
    import onnx

    model = onnx.load(str(src))
    del model.graph.value_info[:]
    onnx.save(model, str(dest))
    return dest
