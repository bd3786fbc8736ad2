"""ONNX export: base model + Medusa heads as one graph with KV cache in/out.

Graph `medusa`: input_ids [B,q], position_ids [B,q], attention_mask [B,1,q,P+q] (additive
float), logits_index [B,Q] (query positions that need base logits: all for a tree, the last
for a prefill), past_key_i / past_value_i [B,h,P,d] -> logits [B,Q,V], hidden [B,q,D],
present_key_i / present_value_i [B,h,P+q,d]; batch, q, P are dynamic.
Graph `heads` (Medusa heads): hidden [B,D], heads [n] (which heads: a tree d deep needs
0..d-1) -> head_topk [B,n,k] token ids (the next step's candidates, computed at the accepted
node only, which the tree forward cannot know in advance).
Graph `hydra` (Hydra heads): hidden [M,D], path [M,K] (the tokens on each path, 0-padded to
K), head [] -> head_topk [M,k] token ids of that head; run once per tree depth.
Graph `draft` (the one-layer draft): features [B,q,D], tokens [B,q], positions [B,q],
past_key / past_value [B,h,P,d], attention_mask [B,q,P+q] (additive float) -> features [B,q,D]
(the predicted next ones), draft_topk [B,q,k] token ids, key / value [B,h,q,d] of the new pairs.
Format 2 artifacts (a `medusa` graph that also took head_index) still load.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import torch
from torch import nn

from engine.artifacts import check_destination, quiet_exporter, write_component_artifact
from engine.errors import UsageError
from engine.onnx_passes import optimize_graph

from .base import UNBOUNDED_CONTEXT, cache_argument, context_length
from .component import heads_for_export, stored_tree
from .options import DATASTORE_FILE

OPSET = 20
ONNX_KW = {"opset_version": OPSET, "dynamo": True, "external_data": True, "verbose": False}
EXPORT_FORMAT = 6  # 2: the heads graph takes which heads to run; 3: heads out of the base graph, Hydra;
# 4: Hydra as one graph per head (constant weights) and one for the path embeddings; 5: a grouped-query
# base's attention without repeating the cache per query head (inputs and outputs as in 4); 6: the base
# graph's RMSNorms and rotary embeddings fused and its parallel MatMuls merged (engine.onnx_passes;
# inputs and outputs as in 4)


GROUPED_KV = "engine_grouped_kv"  # the attention the export registers with transformers for GQA bases


def grouped_kv_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention of a grouped-query base without copying the cache once per query head: query heads
    ``j * G .. j * G + G - 1`` share key/value head ``j`` (transformers' ``repeat_kv`` order), so
    ``query`` [B, H, T, D] is regrouped as [B, KVH, G * T, D] and multiplies the cache as it is.
    The exported graph then has no Expand of the whole cache per layer and step. Inference only."""
    b, h, t, d = query.shape
    kv_heads, s = key.shape[1], key.shape[2]
    groups = h // kv_heads
    scores = torch.matmul(query.reshape(b, kv_heads, groups * t, d), key.transpose(2, 3))
    scores = scores * (scaling if scaling is not None else d**-0.5)
    if attention_mask is not None:  # [B, 1, T, S] for every head
        scores = scores.view(b, kv_heads, groups, t, s) + attention_mask[:, :, None, :, :s]
    probs = torch.softmax(scores.view(b, kv_heads, groups * t, s), dim=-1, dtype=torch.float32)
    out = torch.matmul(probs.to(query.dtype), value).reshape(b, h, t, d)
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def grouped_kv(model):
    """Export a grouped-query base with ``grouped_kv_attention``; other bases as they are."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    cfg = model.config
    heads, kv_heads = getattr(cfg, "num_attention_heads", 0), getattr(cfg, "num_key_value_heads", 0)
    if not (heads and kv_heads and kv_heads < heads):
        yield
        return
    AttentionInterface.register(GROUPED_KV, grouped_kv_attention)
    AttentionMaskInterface.register(GROUPED_KV, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    before = cfg._attn_implementation
    cfg._attn_implementation = GROUPED_KV
    try:
        yield
    finally:
        cfg._attn_implementation = before


class MedusaGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.n_layers = len(self._layers())
        self.cache_kw = cache_argument(model.base_model)

    def _layers(self):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        return cache.layers if cache.layers else range(self.model.config.num_hidden_layers)

    def forward(self, input_ids, position_ids, attention_mask, logits_index, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(self.n_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model.base_model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            use_cache=True,
            **{self.cache_kw: cache},
        )
        hidden = out.last_hidden_state

        rows = torch.gather(hidden, 1, logits_index[..., None].expand(-1, -1, hidden.shape[-1]))
        logits = self.model.get_output_embeddings()(rows)
        presents = []
        for layer in cache.layers:
            presents += [layer.keys, layer.values]
        return (logits, hidden, *presents)


class HeadsTopK(nn.Module):
    def __init__(self, heads, k: int):
        super().__init__()
        self.heads, self.k = heads, k

    def forward(self, hidden, select):
        return self.heads.topk(hidden, self.k, select)


class HydraEmbed(nn.Module):
    """The embeddings of the tokens on Hydra paths, for ONNX: the base's input table (large), once
    for every head."""

    def __init__(self, heads):
        super().__init__()
        self.register_buffer("embedding", heads._embedding.weight.detach().float())

    def forward(self, path):
        return self.embedding[path]


class HydraHead(nn.Module):
    """Hydra head ``head`` alone, for ONNX, on its path's embeddings (HydraEmbed): every weight a
    constant of its own graph, so onnxruntime reads it where it lies (no per-call gather of stacked
    weights) and a quantized artifact quantizes it."""

    def __init__(self, heads, head: int, k: int):
        super().__init__()
        self.register_buffer("mix", heads.mix[head].weight.detach().float().t().contiguous())
        layers = [layer.linear for layer in heads.blocks[head]]
        for i, linear in enumerate(layers):  # one buffer each: a slice of a stacked one is no constant
            self.register_buffer(f"w{i}", linear.weight.detach().float().t().contiguous())
            self.register_buffer(f"b{i}", linear.bias.detach().float())
        out = heads.draft_weight if heads.out is None else heads.out[head].weight
        self.register_buffer("out", out.detach().float().t().contiguous())
        self.register_buffer("subset", heads.vocab_subset if heads.vocab_subset is not None else torch.zeros(0))
        self.k, self.n_layers = k, len(layers)

    def forward(self, hidden, path_embeddings):
        u = hidden + path_embeddings.flatten(-2) @ self.mix
        for i in range(self.n_layers):
            u = u + nn.functional.silu(u @ getattr(self, f"w{i}") + getattr(self, f"b{i}"))
        top = (u @ self.out).topk(self.k, dim=-1).indices
        return self.subset[top] if self.subset.numel() else top


class DraftStep(nn.Module):
    """The draft layer's incremental step (DraftHeads.step) with its top-k, for ONNX."""

    def __init__(self, heads, k: int):
        super().__init__()
        self.heads, self.k = heads, k

    def forward(self, features, tokens, positions, past_key, past_value, attention_mask):
        out, logits, key, value = self.heads.step(features, tokens, positions, past_key, past_value, attention_mask)
        return out, self.heads.token_ids(logits.topk(self.k, dim=-1).indices), key, value


DRAFT_INPUTS = ["features", "tokens", "positions", "past_key", "past_value", "attention_mask"]
DRAFT_OUTPUTS = ["next_features", "draft_topk", "key", "value"]


def _export_draft(heads, topk: int, folder: Path) -> dict:
    Dim = torch.export.Dim
    b, q, p = 2, 3, 4  # q >= 2: the dynamo exporter fails on a sample with q = 1
    d, (h, hd) = heads.layer.d, heads.kv_shape
    sample = (
        torch.zeros(b, q, d),
        torch.zeros(b, q, dtype=torch.int64),
        torch.arange(q).repeat(b, 1),
        torch.zeros(b, h, p, hd),
        torch.zeros(b, h, p, hd),
        torch.zeros(b, q, p + q),
    )
    batch, query, past = Dim("batch"), Dim("query"), Dim("past")
    rows = {0: batch, 1: query}
    shapes = (rows, rows, rows, {0: batch, 2: past}, {0: batch, 2: past}, {0: batch, 1: query, 2: Dim("total")})
    torch.onnx.export(
        DraftStep(heads, topk).eval(),
        sample,
        str(folder / "draft.onnx"),
        input_names=DRAFT_INPUTS,
        output_names=DRAFT_OUTPUTS,
        dynamic_shapes=shapes,
        **ONNX_KW,
    )
    return {"draft": {"file": "draft.onnx", "inputs": DRAFT_INPUTS, "outputs": DRAFT_OUTPUTS}}


def kv_shape(model):
    cfg = model.config
    heads = getattr(cfg, "num_key_value_heads", None) or getattr(cfg, "num_attention_heads", None) or cfg.n_head
    hidden = getattr(cfg, "hidden_size", None) or cfg.n_embd
    n_attn = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    head_dim = getattr(cfg, "head_dim", None) or hidden // n_attn
    return heads, head_dim


def _names(n_layers):
    past = [f"past_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]
    present = [p.replace("past_", "present_") for p in past]
    return past, present


def export_graphs(model, heads, folder: Path, topk: int = 10, on_graph=lambda: None) -> dict:
    """Write medusa.onnx(+.data) and heads.onnx into folder; returns the models manifest.
    ``on_graph`` is called after each graph (progress, cancellation)."""
    graph = MedusaGraph(model).eval()
    past_names, present_names = _names(graph.n_layers)
    kvh, hd = kv_shape(model)
    b, q, p = 2, 3, 4  # q >= 2: the dynamo exporter fails on a sample with q = 1
    dtype = next(model.parameters()).dtype
    ids = torch.randint(0, 10, (b, q))
    pos = torch.arange(p, p + q).repeat(b, 1)
    mask = torch.zeros(b, 1, q, p + q, dtype=dtype)
    lidx = torch.arange(q).repeat(b, 1)
    past = [torch.zeros(b, kvh, p, hd, dtype=dtype) for _ in past_names]
    inputs = ["input_ids", "position_ids", "attention_mask", "logits_index", *past_names]
    outputs = ["logits", "hidden", *present_names]
    Dim = torch.export.Dim
    batch, query, total, plen = Dim("batch"), Dim("query"), Dim("total"), Dim("past")
    shapes = (
        {0: batch, 1: query},
        {0: batch, 1: query},
        {0: batch, 2: query, 3: total},
        {0: batch, 1: Dim("logit_rows")},
        tuple({0: batch, 2: plen} for _ in past_names),
    )
    with quiet_exporter(), torch.no_grad(), grouped_kv(model):
        torch.onnx.export(
            graph,
            (ids, pos, mask, lidx, *past),
            str(folder / "medusa.onnx"),
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=shapes,
            **ONNX_KW,
        )
        context = context_length(model.config)  # the rotary tables get a row per position the base takes
        positions = ("position_ids", context) if context < UNBOUNDED_CONTEXT else None
        passes = optimize_graph(folder / "medusa.onnx", positions)
        on_graph()
        hidden = torch.zeros(b, model.get_output_embeddings().weight.shape[1], dtype=dtype)
        drafts = _export_heads(heads, hidden, topk, folder)
        on_graph()
    return {
        "medusa": {"file": "medusa.onnx", "inputs": inputs, "outputs": outputs, "passes": passes},
        **drafts,
        "keep": gather_graph(folder / "keep.onnx", len(past_names)),
    }


def _export_heads(heads, hidden, topk: int, folder: Path) -> dict:
    Dim = torch.export.Dim
    if heads.kind == "draft":
        return _export_draft(heads, topk, folder)
    common = dict(output_names=["head_topk"], **ONNX_KW)
    if heads.kind == "hydra":
        return _export_hydra(heads, hidden.float(), topk, folder)
    torch.onnx.export(
        HeadsTopK(heads, topk).eval(),
        (hidden, torch.arange(heads.num_heads)),
        str(folder / "heads.onnx"),
        input_names=["hidden", "heads"],
        dynamic_shapes=({0: Dim("batch")}, {0: Dim("n_heads", min=1, max=heads.num_heads)}),
        **common,
    )
    return {"heads": {"file": "heads.onnx", "inputs": ["hidden", "heads"], "outputs": ["head_topk"]}}


def _export_hydra(heads, hidden, topk: int, folder: Path) -> dict:
    """`hydra_embed` (path tokens -> embeddings) and one `hydra_K` graph per head."""
    rows = torch.export.Dim("rows")
    path = torch.zeros(hidden.shape[0], heads.num_heads, dtype=torch.int64)
    torch.onnx.export(
        HydraEmbed(heads).eval(),
        (path,),
        str(folder / "hydra_embed.onnx"),
        input_names=["path"],
        output_names=["path_embeddings"],
        dynamic_shapes=({0: rows, 1: torch.export.Dim("width", max=heads.num_heads)},),
        **ONNX_KW,
    )
    models = {"hydra_embed": {"file": "hydra_embed.onnx", "inputs": ["path"], "outputs": ["path_embeddings"]}}
    for head in range(heads.num_heads):
        embeddings = torch.zeros(hidden.shape[0], head + 1, hidden.shape[1])
        torch.onnx.export(
            HydraHead(heads, head, topk).eval(),
            (hidden, embeddings),
            str(folder / f"hydra_{head}.onnx"),
            input_names=["hidden", "path_embeddings"],
            output_names=["head_topk"],
            dynamic_shapes=({0: rows}, {0: rows}),
            **ONNX_KW,
        )
        inputs = ["hidden", "path_embeddings"]
        models[f"hydra_{head}"] = {"file": f"hydra_{head}.onnx", "inputs": inputs, "outputs": ["head_topk"]}
    return models


def export_artifact(decoder, dest, *, overwrite: bool = False, quantize: str | None = None) -> Path:
    """Export a MedusaDecoder (torch) into an engine artifact at dest: the base model and the
    heads as ONNX graphs plus the tokenizer, so the artifact runs without torch. ``quantize``
    ("int4" | "int8"): the graphs' weights as MatMulNBits (see :mod:`engine_medusa.quantize`)."""
    from .heads import load_heads
    from .quantize import quantize_graphs, scheme_config

    if decoder.heads is None:
        raise UsageError("export needs Medusa heads (heads=None decodes without them)")
    scheme = scheme_config(quantize) if quantize else None
    check_destination(Path(dest), overwrite)  # before minutes of export, not after
    tree = decoder.tree
    topk = tree.topk if tree else 10
    choices = [list(c) for c in tree.choices] if tree else []
    heads, heads_cfg, heads_dir = decoder.heads, decoder.heads_config, decoder.heads_folder
    if (quantized := heads_for_export(heads_dir, quantize)) is not None:  # the default heads' quantized companion
        (heads, heads_cfg), heads_dir = load_heads(quantized, decoder.model), quantized
    retrieval = {}
    if heads_dir is not None:  # prefer the tree tuned on onnxruntime latencies (and its retrieved chain)
        stored = stored_tree(heads_dir, "onnxruntime")
        if stored is not None and int(stored.get("topk", 10)) == topk:
            choices = stored["choices"]
            retrieval = {k: stored[k] for k in ("chain", "chain_share") if k in stored}
    with tempfile.TemporaryDirectory(prefix="medusa-export-") as tmp, decoder.progress(desc="export") as steps:
        folder = Path(tmp) / "fp32"
        folder.mkdir()
        models = export_graphs(decoder.model, heads, folder, topk, on_graph=steps.update)
        if scheme:  # the fp32 graphs are only an intermediate: quantize them beside
            (folder := Path(tmp) / quantize).mkdir()
            quantize_graphs(Path(tmp) / "fp32", folder, scheme, models, on_graph=steps.update)
        files = {f.name: f for f in folder.iterdir() if f.is_file()}
        text_dir = Path(tmp) / "text"
        text_dir.mkdir()
        files.update(decoder.codec.save(text_dir))
        if heads_dir is not None and (heads_dir / DATASTORE_FILE).is_file():  # for --chain
            files[DATASTORE_FILE] = heads_dir / DATASTORE_FILE
        config = {
            "base_model": decoder.base_name,
            "num_heads": heads.num_heads,
            "heads_kind": heads.kind,
            "export_format": EXPORT_FORMAT,
            "tree": choices,
            **retrieval,
            "topk": topk,
            "context": context_length(decoder.model.config),
            "sampling": decoder.sampling,
            "chat": decoder.chat,
            "n_layers": len(models["medusa"]["inputs"][4:]) // 2,
            "kv_shape": list(kv_shape(decoder.model)),
            "heads_config": heads_cfg,
        }
        if heads.kind == "draft":
            config["draft_kv_shape"] = list(heads.kv_shape)
        if scheme:
            config["quantization"] = scheme
        return write_component_artifact(
            decoder, dest, files=files, models=models, opset=OPSET, config=config, overwrite=overwrite
        )


def gather_graph(path: Path, n_tensors: int) -> dict:
    """A small graph that keeps the accepted KV slots of every layer: past_i [B,h,P,d],
    slots [B,L] -> kept_i [B,h,L,d]. With IO binding on CUDA the cache never leaves the device."""
    import onnx
    from onnx import TensorProto, helper

    names = [f"past_{i}" for i in range(n_tensors)]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "heads", "past", "dim"]) for n in names]
    inputs.append(helper.make_tensor_value_info("slots", TensorProto.INT64, ["batch", "kept"]))
    outputs = [
        helper.make_tensor_value_info(f"kept_{i}", TensorProto.FLOAT, ["batch", "heads", "kept", "dim"])
        for i in range(n_tensors)
    ]

    def const(name, vals):
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)
        )

    nodes = [
        const("ax13", [1, 3]),
        const("s0", [0]),
        const("s1", [1]),
        const("s2", [2]),
        const("s3", [3]),
        const("s4", [4]),
        helper.make_node("Unsqueeze", ["slots", "ax13"], ["s4d"]),
        helper.make_node("Shape", [names[0]], ["pshape"]),
        helper.make_node("Shape", ["slots"], ["sshape"]),
        helper.make_node("Slice", ["pshape", "s0", "s2"], ["bh"]),
        helper.make_node("Slice", ["sshape", "s1", "s2"], ["kept"]),
        helper.make_node("Slice", ["pshape", "s3", "s4"], ["dim"]),
        helper.make_node("Concat", ["bh", "kept", "dim"], ["target"], axis=0),
        helper.make_node("Expand", ["s4d", "target"], ["index"]),
    ]
    nodes += [helper.make_node("GatherElements", [n, "index"], [f"kept_{i}"], axis=2) for i, n in enumerate(names)]
    opsets = [helper.make_opsetid("", 17)]
    # make_model stamps onnx's newest IR version (14 with onnx 1.23), which onnxruntime 1.30 refuses
    ir_version = helper.find_min_ir_version_for(opsets)
    model = helper.make_model(
        helper.make_graph(nodes, "medusa_keep", inputs, outputs), opset_imports=opsets, ir_version=ir_version
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"file": path.name, "inputs": names + ["slots"], "outputs": [o.name for o in outputs]}
