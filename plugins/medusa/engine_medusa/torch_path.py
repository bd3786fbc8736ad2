"""The `medusa` decoder on torch: any Hugging Face causal LM plus Medusa heads."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.interfaces import ConfigError, Decoder
from engine.runtime import use_torch_threads

from .base import DEFAULT_BASE, TorchBackend, load_base
from .component import FALLBACK_TREE, MedusaRunner, read_tree, resolve_heads
from .heads import load_heads, weights_file
from .options import HEADS_DTYPES


class MedusaDecoder(MedusaRunner, Decoder):
    """Medusa on torch for any HF causal LM.

    model: HF id, local dir or .gguf path (default: the heads' base; SmolLM2-135M-Instruct,
    read offline from its GGUF, for the shipped heads); heads: "default" (shipped), a heads
    folder, or "none"/None (plain decoding); tree: rank paths (default: the tree stored with
    the heads); sampling: "lossless" | "typical"; chat: wrap prompts in the chat template
    (None: when the tokenizer has one). The options are :class:`engine_medusa.options.MedusaOptions`.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        heads="default",
        tree=None,
        topk: int | None = None,
        sampling: str | None = None,
        chat: bool | None = None,
        heads_dtype: str = "bfloat16",
        lookup: int | None = None,
        chain: int | None = None,
        datastore=None,
        chain_share: float | None = None,
    ):
        if device not in (None, "cpu"):
            raise ConfigError(
                f"medusa's torch path runs on the CPU, not {device!r}; for a GPU, export it and run "
                "the artifact: engine decode medusa --artifact DIR --provider cuda"
            )
        use_torch_threads(threads)
        folder = resolve_heads(heads)
        base = model
        if base is None:
            stored = json.loads((folder / "config.json").read_text()) if folder else {}
            # published heads name their base "base_model_name_or_path"
            base = stored.get("base_model") or stored.get("base_model_name_or_path") or DEFAULT_BASE
        self.base_name = base
        hf_model, codec = load_base(base)
        retrieval = (lookup, chain, datastore, chain_share)
        self._init(hf_model, codec, folder, tree, topk, sampling, chat, heads_dtype, threads, *retrieval)

    @classmethod
    def from_model(
        cls,
        hf_model,
        codec,
        heads=None,
        tree=None,
        topk: int = 10,
        sampling: str = "lossless",
        chat: bool | None = None,
        base_name: str = "custom",
        heads_dtype: str = "bfloat16",
        lookup: int | None = None,
        chain: int | None = None,
        datastore=None,
        chain_share: float | None = None,
    ):
        """Build around an already loaded model; `heads` is a heads module, a folder or None."""
        self = cls.__new__(cls)
        self.base_name = base_name
        retrieval = (lookup, chain, datastore, chain_share)
        self._init(hf_model, codec, heads, tree, topk, sampling, chat, heads_dtype, None, *retrieval)
        return self

    def _init(
        self,
        hf_model,
        codec,
        heads,
        tree,
        topk,
        sampling,
        chat,
        heads_dtype,
        threads=None,
        lookup=None,
        chain=None,
        store=None,
        share=None,
    ):
        from engine.tuned import digest_of

        self.model, self.heads_config = hf_model, None
        self.heads_folder = Path(heads) if isinstance(heads, (str, Path)) else None
        subject = digest_of(weights_file(self.heads_folder)) if self.heads_folder else None
        self._identify("torch", subject, threads)
        if isinstance(heads, torch.nn.Module):  # MedusaHeads, HydraHeads or DraftHeads
            self.heads = heads
            self.tree_source = "argument" if tree is not None else "fallback"
        elif heads is not None:
            self.heads, self.heads_config = load_heads(heads, hf_model)
            stored, stored_k = read_tree(heads)
            topk = topk or stored_k
            tree = self._choose_tree(tree, stored, "heads (tree.json)", topk, self.heads.num_heads)
        else:
            self.heads = None
        if self.heads is None:
            tree = []
        elif tree is None:
            tree = FALLBACK_TREE
        if heads_dtype not in HEADS_DTYPES:
            raise ConfigError(f"heads_dtype must be {' or '.join(HEADS_DTYPES)}, got {heads_dtype!r}")
        backend = TorchBackend(hf_model, self.heads, getattr(torch, heads_dtype))
        num_heads = self.heads.num_heads if self.heads is not None else 0
        store = store if store is not None else self.heads_folder
        self._setup(backend, codec, tree, topk or 10, sampling, chat, num_heads, lookup, chain, store, share)

    def export_onnx(self, dest, *, overwrite: bool = False, quantize: str | None = None) -> Path:
        """Base model + heads + tokenizer as an engine artifact at ``dest``; ``quantize``
        ("int4" | "int8"): weight-only MatMulNBits (block 32) instead of fp32 weights."""
        from .export import export_artifact

        return export_artifact(self, dest, overwrite=overwrite, quantize=quantize)
