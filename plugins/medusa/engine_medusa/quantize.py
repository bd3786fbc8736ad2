"""Weight-only quantization of the exported graphs with onnxruntime's own tooling (no torch).

``int4``: every MatMul with a constant weight becomes ``MatMulNBits`` (4 bits, blocks of 32
along the input axis as in a Q4_1 GGUF block, asymmetric: a scale and an integer zero point per
block, where Q4_1 stores a float minimum; MODEL_CARD.md measures the difference), except the LM
head (the MatMul that writes ``logits``), kept at 8 bits (symmetric), as llama.cpp's 4-bit files
keep their output matrix at 8 bits or more: the largest matrix and the one whose errors reach the
tokens directly. ``int8``: every MatMul with 8 bits. The embedding table
(a Gather) stays fp32: a decode step reads one row of it. The KV cache and the activations stay fp32.

``int4-b128``: ``int4`` with blocks of 128 (the LM head's too): a quarter of the scales and zero points, and a
compute-bound CPU kernel does a quarter of the per-block work, so a step is about a quarter faster, for a less
accurate copy of weights quantized in blocks of 32 (MODEL_CARD.md, "Blocks of 128").

``accuracy_level`` is MatMulNBits' compute type: 0 dequantizes the weights and multiplies in
fp32; 4 quantizes the activations to int8 per block and multiplies in int8 (VNNI / AMX).
"""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
from pathlib import Path

from engine.errors import UsageError

SCHEMES = {"int4": 4, "int4-b128": 4, "int8": 8}
HEAD_BITS = 8  # the LM head's bits in every scheme (module docstring)
BLOCK_SIZE = 32  # as a Q4_0 / Q4_1 GGUF block
BLOCK_SIZES = {"int4-b128": 128}  # the schemes with other blocks
ACCURACY_LEVEL = 4  # int8 compute: see measurements in MODEL_CARD.md
# the graphs quantized, by name: the base, Medusa heads and each Hydra head (`hydra_K`, export format 4).
# `keep` and `hydra_embed` are gathers; the single Hydra graph of format 3 gathered its weights by head, and
# is copied as it is
GRAPHS = ("medusa", "heads", "hydra_[0-9]*")


def quantizes(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in GRAPHS)


def scheme_config(quantize: str, accuracy_level: int = ACCURACY_LEVEL) -> dict:
    """The manifest's record of a scheme (``config["quantization"]``)."""
    import onnxruntime

    if quantize not in SCHEMES:
        raise UsageError(f"quantize must be one of {', '.join(SCHEMES)}, got {quantize!r}")
    return {
        "scheme": "matmulnbits",
        "bits": SCHEMES[quantize],
        "block_size": BLOCK_SIZES.get(quantize, BLOCK_SIZE),
        "symmetric": False,
        **({"head_bits": HEAD_BITS, "head_symmetric": True} if SCHEMES[quantize] != HEAD_BITS else {}),
        "accuracy_level": accuracy_level,
        "graphs": list(GRAPHS),  # in the record (and the bench's cache key: copies made before Hydra's differ)
        "tool": f"onnxruntime {onnxruntime.__version__}",
    }


def own_weights(graph) -> int:
    """Give every MatMul with a constant weight its own weight initializer, which MatMulNBits needs:
    a ``Transpose`` of an initializer (how the exporter writes a tied LM head: it reads the
    embedding table) becomes a transposed copy, and a weight shared by two MatMuls gets a copy
    for the second. Returns how many copies were made."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    seen, made, folded = set(), 0, set()
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weight = node.input[1]
        src = producer.get(weight)
        if weight in inits:
            if weight not in seen:
                seen.add(weight)
                continue
            array = numpy_helper.to_array(inits[weight])
        elif src is not None and src.op_type == "Transpose" and src.input[0] in inits:
            array = numpy_helper.to_array(inits[src.input[0]])
            perm = next((list(a.ints) for a in src.attribute if a.name == "perm"), None)
            if array.ndim != 2 or perm not in (None, [1, 0]):
                continue
            array, _ = array.T, folded.add(src.name)
        else:
            continue
        name = f"{node.name}.weight"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        node.input[1] = name
        made += 1
    used = {i for node in graph.node for i in node.input}
    for node in [n for n in graph.node if n.name in folded and n.output[0] not in used]:
        graph.node.remove(node)
    return made


def lm_head(graph):
    """The MatMul that writes the base graph's ``logits`` (None in the heads' graphs)."""
    return next((n for n in graph.node if n.op_type == "MatMul" and "logits" in n.output), None)


def quantize_graph(src: Path, dst: Path, scheme: dict) -> int:
    """Write ``src`` (an .onnx with external data) to ``dst`` (+ ``dst.data``) with its constant-weight
    MatMuls as MatMulNBits; returns how many MatMuls were quantized."""
    import logging

    import onnx

    level = logging.getLogger().level  # the quantizer's module sets the root logger to INFO on import
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger().setLevel(level)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    model = onnx.load(str(src))  # external data is read into memory
    own_weights(model.graph)

    def quantized(model, bits: int, symmetric: bool, exclude=()):
        config = DefaultWeightOnlyQuantConfig(
            block_size=scheme["block_size"],
            is_symmetric=symmetric,
            accuracy_level=scheme["accuracy_level"],
            op_types_to_quantize=("MatMul",),
            bits=bits,
        )
        quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=list(exclude), algo_config=config)
        quantizer.process()
        return quantizer.model

    head = lm_head(model.graph)
    if head is not None and scheme.get("head_bits", scheme["bits"]) != scheme["bits"]:
        others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n is not head]
        model = quantized(model, scheme["head_bits"], scheme["head_symmetric"], others).model
    # the head, if done above, is a MatMulNBits now and not quantized again
    result = quantized(model, scheme["bits"], scheme["symmetric"])
    done = sum(n.op_type == "MatMulNBits" for n in result.model.graph.node)
    result.save_model_to_file(str(dst), use_external_data_format=True)
    return done


def quantize_graphs(src: Path, dst: Path, scheme: dict, models: dict, on_graph=lambda: None) -> dict[str, Path]:
    """Quantize the weight graphs of an exported folder ``src`` into ``dst``; returns the files
    of ``dst`` (the graphs, their data, and the graphs without weights copied as they are)."""
    files = {}
    for name, entry in models.items():
        graph = src / entry["file"]
        if quantizes(name):
            if quantize_graph(graph, dst / graph.name, scheme) == 0:
                raise UsageError(f"graph {name!r} has no MatMul with a constant weight to quantize")
            on_graph()
        else:
            for f in (graph, graph.with_name(graph.name + ".data")):
                if f.is_file():
                    shutil.copyfile(f, dst / f.name)
    for f in dst.iterdir():
        files[f.name] = f
    return files


def quantize_artifact(
    src, dest, quantize: str, *, overwrite: bool = False, accuracy_level: int = ACCURACY_LEVEL
) -> Path:
    """A quantized copy of the fp32 artifact ``src`` at ``dest`` (what the bench does with its
    cached fp32 export; ``engine export --quantize`` quantizes straight after exporting);
    ``accuracy_level``: MatMulNBits' compute type (module docstring)."""
    from engine.artifacts import check_destination, read_artifact, write_derived_artifact

    art = read_artifact(src)
    if art.config.get("quantization"):
        raise UsageError(f"{src} is already quantized ({art.config['quantization']})")
    dest = Path(dest)
    check_destination(dest, overwrite)
    scheme = scheme_config(quantize, accuracy_level)
    models = art.manifest["models"]
    with tempfile.TemporaryDirectory(prefix="medusa-quantize-") as tmp:
        files = quantize_graphs(art.path, Path(tmp), scheme, models)
        graph_files = {entry["file"] for entry in models.values()}
        graph_files |= {f"{models[g]['file']}.data" for g in models if quantizes(g)}  # Hydra: no "heads"
        for name in art.manifest["files"]:
            if name not in graph_files:
                files[name] = art.path / name
        # a retrieved chain beside a tree would lose exact greedy over the quantized base: not carried
        config = {k: v for k, v in art.config.items() if k not in ("chain", "chain_share")}
        config["quantization"] = scheme
        return write_derived_artifact(art, dest, files=files, config=config, overwrite=overwrite)
