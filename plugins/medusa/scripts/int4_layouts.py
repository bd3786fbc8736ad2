"""Four ways to store SmolLM2's weights for a quantized base, side by side (issue 15): how many of the
base's matrix entries come back exactly, perplexity, greedy agreement with fp32, greedy decode speed.

- ``int4-head4``: onnxruntime's quantizer, every matrix at 4 bits (the ``int4`` scheme until 2026-12-06);
- ``int4``: the same with the LM head at 8 bits (the ``int4`` scheme since);
- ``q4_1-exact``: a probe, not a scheme: each 4-bit matrix stored as its GGUF's own Q4_1 blocks (a scale and a
  float minimum per block of 32: ``w = d * q + m``) and the LM head as its Q8_0 blocks, so every weight comes
  back exactly. MatMulNBits has an integer zero point only (a float one falls back to dequantizing every
  call: ~1.5 ms for a 576 x 1536 matrix against 0.03 ms), so the minimum is added through the input's block
  sums, ``x . w = d (x . q) + m (sum of x over the block)``, as llama.cpp's Q4_1 kernel does: MatMulNBits
  with a zero point of 0, plus a Reshape, ReduceSum, MatMul and Add per matrix (the sums once per input);
- ``int8``: onnxruntime's quantizer, 8 bits.

    python scripts/int4_layouts.py ART > scripts/results/int4_layouts.json

ART is the fp32 artifact; the copies go to runs/layout-*. Perplexity: 20 ShareGPT prompts (as the bench's
``--perplexity``); greedy agreement: the fp32 greedy answers to dev prompts 1-10 (64 tokens), teacher-forced
(``quality.greedy_match``); speed: dev prompts 1-4, 96 new tokens, 1 thread, the copies alternated, 3 rounds,
the median.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from engine_medusa import quality
from engine_medusa.data import DEV_PROMPTS
from engine_medusa.quantize import lm_head, own_weights, quantize_artifact, quantize_graph, scheme_config
from onnx import helper, numpy_helper

from engine.artifacts import load_artifact, sha256_file
from engine.datasets import shared_data
from engine.interfaces import GenerationConfig
from engine.io.prompts import read_prompt_rows

LEVELS = 15  # 4 bits: q in 0..15
BLOCK = 32


def q4_1_blocks(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (K, N) weight, K a multiple of ``block``, as Q4_1 blocks along K: ``q`` (N, blocks, block)
    uint8, scales and minima (N, blocks) float32, so that ``w[k, n] == scale * q + minimum`` of its
    block, exactly when ``w`` lies on such a grid. A scale that is the float16 a GGUF stores is taken
    as that float16."""
    k, n = w.shape
    cols = w.T.reshape(n, k // block, block).astype(np.float32)
    lo, hi = cols.min(axis=-1), cols.max(axis=-1)
    scale = (hi - lo) / np.float32(LEVELS)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint((cols - lo[..., None]) / safe[..., None]), 0, LEVELS)
    half = np.where(scale > 0, scale.astype(np.float16).astype(np.float32), scale)
    exact_half = np.all(q * half[..., None] + lo[..., None] == cols, axis=-1)
    scale = np.where(exact_half, half, scale)
    return q.astype(np.uint8), scale.astype(np.float32), lo.astype(np.float32)


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """MatMulNBits' 4-bit layout: two values per byte along the last axis, the first in the low nibble."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def tensor_ranks(model) -> dict[str, int]:
    """The rank of every tensor of ``model`` whose shape onnx's inference knows."""
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(model).graph
    ranks = {t.name: len(t.type.tensor_type.shape.dim) for t in (*graph.input, *graph.value_info, *graph.output)}
    return ranks | {i.name: len(i.dims) for i in graph.initializer}


def rewrite_matmuls(model, block: int, accuracy_level: int) -> int:
    """Every MatMul of ``model`` with a constant 2-D weight (each its own, see ``quantize.own_weights``)
    becomes MatMulNBits on the 4-bit blocks plus the block sums' product with the minima. Inputs shared
    by several MatMuls (a layer's q, k, v) are summed once. A weight whose input width is not a whole
    number of blocks stays as it is (none in SmolLM2). Returns how many MatMuls were rewritten."""
    from onnx import helper, numpy_helper

    graph, ranks = model.graph, tensor_ranks(model)
    inits = {i.name: i for i in graph.initializer}
    sums: dict[str, str] = {}
    nodes, done, used_weights = [], 0, set()
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.dims[0] % block or node.input[0] not in ranks:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        k, n = w.shape
        q, scale, minimum = q4_1_blocks(w, block)
        name, x, out = node.name or weight.name, node.input[0], node.output[0]
        graph.initializer.extend(
            [
                numpy_helper.from_array(pack_nibbles(q), f"{name}.q4"),
                numpy_helper.from_array(scale.reshape(-1), f"{name}.scale"),
                numpy_helper.from_array(np.zeros(n * -(-q.shape[1] // 2), np.uint8), f"{name}.zero"),
                numpy_helper.from_array(np.ascontiguousarray(minimum.T), f"{name}.minimum"),
            ]
        )
        if x not in sums:
            sums[x] = f"{name}.block_sums"
            shape = [0] * (ranks[x] - 1) + [k // block, block]
            graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), f"{name}.blocks"))
            graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), f"{name}.last"))
            nodes += [
                helper.make_node("Reshape", [x, f"{name}.blocks"], [f"{name}.in_blocks"], name=f"{name}.in_blocks"),
                helper.make_node(
                    "ReduceSum", [f"{name}.in_blocks", f"{name}.last"], [sums[x]], keepdims=0, name=sums[x]
                ),
            ]
        nodes += [
            helper.make_node(
                "MatMulNBits",
                [x, f"{name}.q4", f"{name}.scale", f"{name}.zero"],
                [f"{name}.scaled"],
                name=f"{name}.nbits",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=4,
                block_size=block,
                accuracy_level=accuracy_level,
            ),
            helper.make_node("MatMul", [sums[x], f"{name}.minimum"], [f"{name}.minima"], name=f"{name}.minima"),
            helper.make_node("Add", [f"{name}.scaled", f"{name}.minima"], [out], name=f"{name}.add"),
        ]
        used_weights.add(weight.name)
        done += 1
    del graph.node[:]
    graph.node.extend(nodes)
    still_used = {i for node in nodes for i in node.input}
    for name in used_weights - still_used:
        graph.initializer.remove(inits[name])
    return done


def q8_0_head(graph, block: int, accuracy_level: int) -> float:
    """The MatMul writing ``logits`` as symmetric 8-bit blocks (a Q8_0 GGUF block: ``w = d * q``, ``d``
    a float16); returns the share of its entries that come back exactly."""
    head = lm_head(graph)
    inits = {i.name: i for i in graph.initializer}
    w = numpy_helper.to_array(inits[head.input[1]])
    k, n = w.shape
    cols = w.T.reshape(n, k // block, block)
    scale = (np.abs(cols).max(-1) / 127).astype(np.float16).astype(np.float32)
    q = np.clip(np.rint(cols / np.where(scale > 0, scale, 1)[..., None]), -127, 127)
    exact = float(np.mean(q * scale[..., None] == cols))
    name = head.name
    graph.initializer.remove(inits[head.input[1]])
    graph.initializer.extend(
        [
            numpy_helper.from_array((q + 128).astype(np.uint8), f"{name}.q8"),
            numpy_helper.from_array(scale.reshape(-1), f"{name}.scale"),
            numpy_helper.from_array(np.full(n * (k // block), 128, np.uint8), f"{name}.zero"),
        ]
    )
    head.op_type, head.domain = "MatMulNBits", "com.microsoft"
    head.input[:] = [head.input[0], f"{name}.q8", f"{name}.scale", f"{name}.zero"]
    attrs = {"K": k, "N": n, "bits": 8, "block_size": block, "accuracy_level": accuracy_level}
    head.attribute.extend(helper.make_attribute(a, v) for a, v in attrs.items())
    return exact


def entries_back(fp32_graph: Path, graph) -> float:
    """Share of the fp32 graph's weight-matrix entries that ``graph``'s q4_1 blocks give back exactly."""
    ref = onnx.load(str(fp32_graph))
    own_weights(ref.graph)
    weights = {n.name: n.input[1] for n in ref.graph.node if n.op_type == "MatMul"}
    ref_inits = {i.name: i for i in ref.graph.initializer}
    got = {i.name: i for i in graph.initializer}
    same = total = 0
    for name, weight in weights.items():
        if f"{name}.q4" not in got or weight not in ref_inits:
            continue
        w = numpy_helper.to_array(ref_inits[weight])
        k, n = w.shape
        packed = numpy_helper.to_array(got[f"{name}.q4"])
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, k // BLOCK, BLOCK)
        scale = numpy_helper.to_array(got[f"{name}.scale"]).reshape(n, -1, 1)
        minimum = numpy_helper.to_array(got[f"{name}.minimum"]).T[..., None]
        back = (q * scale + minimum).reshape(n, k).T
        same += int((back == w).sum())
        total += w.size
    return same / total


def refresh_manifest(dest: Path) -> None:
    """The manifest's size and sha256 of the replaced base graph (the artifact loader verifies them)."""
    manifest = json.loads((dest / "manifest.json").read_text())
    for f in ("medusa.onnx", "medusa.onnx.data"):
        manifest["files"][f] = {"sha256": sha256_file(dest / f), "size": (dest / f).stat().st_size}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))


def exact_copy(art: Path, dest: Path) -> dict:
    """``art``'s int4 copy with its base graph replaced by the exact Q4_1 / Q8_0 layout."""
    quantize_artifact(art, dest, "int4", overwrite=True)
    model = onnx.load(str(art / "medusa.onnx"))
    own_weights(model.graph)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    head_exact = q8_0_head(model.graph, BLOCK, 4)
    record = {"matrices": rewrite_matmuls(model, BLOCK, 4), "head_entries_back": head_exact}
    record["entries_back"] = entries_back(art / "medusa.onnx", model.graph)  # before saving moves the data out
    for f in ("medusa.onnx", "medusa.onnx.data"):
        (dest / f).unlink()
    onnx.save(model, str(dest / "medusa.onnx"), save_as_external_data=True, location="medusa.onnx.data")
    refresh_manifest(dest)
    return record


def head4_copy(art: Path, dest: Path) -> None:
    """``art``'s int4 copy with the LM head at 4 bits too (the scheme before 2026-12-06)."""
    quantize_artifact(art, dest, "int4", overwrite=True)
    scheme = {k: v for k, v in scheme_config("int4").items() if not k.startswith("head_")}
    for f in ("medusa.onnx", "medusa.onnx.data"):
        (dest / f).unlink()
    quantize_graph(art / "medusa.onnx", dest / "medusa.onnx", scheme)
    refresh_manifest(dest)


def main() -> None:
    art = Path(sys.argv[1])
    copies = {name: Path(f"runs/layout-{name}") for name in ("int4-head4", "int4", "q4_1-exact", "int8")}
    out = {"artifact": str(art), "layouts": {name: {} for name in copies}}
    head4_copy(art, copies["int4-head4"])
    quantize_artifact(art, copies["int4"], "int4", overwrite=True)
    out["layouts"]["q4_1-exact"] |= exact_copy(art, copies["q4_1-exact"])
    quantize_artifact(art, copies["int8"], "int8", overwrite=True)
    ref = load_artifact(art, provider="cpu", threads=1, tree=[])
    sharegpt = read_prompt_rows(shared_data("prompts", "sharegpt.jsonl"), 20)
    texts = [ref.codec.encode_prompt(r["prompt"], False) for r in sharegpt]
    prompts = [r["prompt"] for r in read_prompt_rows(DEV_PROMPTS, 10)]
    answers = [ref.generate(p, GenerationConfig(max_new_tokens=64)).tokens for p in prompts]
    prompt_ids = [ref.codec.encode_prompt(p, True) for p in prompts]
    out["perplexity_fp32"] = round(quality.perplexity(ref.backend, texts), 3)
    decoders = {name: load_artifact(path, provider="cpu", threads=1, tree=[]) for name, path in copies.items()}
    for name, dec in decoders.items():
        row = out["layouts"][name]
        row["perplexity"] = round(quality.perplexity(dec.backend, texts), 3)
        row["greedy_match"] = round(quality.greedy_match(dec.backend, prompt_ids, answers), 4)
        row["bytes"] = sum(f.stat().st_size for f in copies[name].glob("medusa.onnx*"))
    cfg, rates = GenerationConfig(max_new_tokens=96), {name: [] for name in decoders}
    for dec in decoders.values():
        dec.generate(prompts[0], GenerationConfig(max_new_tokens=8))
    for _ in range(3):
        for name, dec in decoders.items():
            start = time.perf_counter()
            tokens = sum(len(dec.generate(p, cfg).tokens) for p in prompts[:4])
            rates[name].append(round(tokens / (time.perf_counter() - start), 2))
    for name, runs in rates.items():
        out["layouts"][name] |= {"tokens_per_s": statistics.median(runs), "tokens_per_s_runs": runs}
    out["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
