"""The `medusa` decoder component (torch path)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import UsageError
from engine.interfaces import Decoder, GenerationConfig, GenerationResult, GenerationStats

from .decoding import Policy, medusa_generate
from .tree import build_tree

DEFAULT_HEADS = Path(__file__).resolve().parent / "weights" / "default"
TREE_FILE = "tree.json"
# Used when a heads folder has no tuned tree: a small CPU-sized tree.
FALLBACK_TREE = [[0], [1], [0, 0], [0, 0, 0], [0, 0, 0, 0]]


def read_tree(folder, backend: str = "torch") -> tuple[list, int]:
    """The tree stored with the heads; tune-tree may store one per backend (their step
    latencies differ), the top level being the torch one."""
    path = Path(folder) / TREE_FILE
    if not path.is_file():
        return FALLBACK_TREE, 10
    cfg = json.loads(path.read_text())
    cfg = cfg.get(backend, cfg) if backend != "torch" else cfg
    return cfg["choices"], int(cfg.get("topk", 10))


def resolve_heads(heads) -> Path | None:
    if heads in (None, "none", ""):
        return None
    folder = DEFAULT_HEADS if heads == "default" else Path(heads)
    if not (folder / "config.json").is_file():
        raise UsageError(f"no Medusa heads at {folder} (expected config.json + heads.safetensors)")
    return folder


def results_from_rows(rows, seconds: float) -> list[GenerationResult]:
    return [
        GenerationResult(
            tokens=tuple(r.tokens),
            text=r.text,
            stats=GenerationStats(steps=r.steps, new_tokens=len(r.tokens), seconds=seconds),
        )
        for r in rows
    ]


class MedusaRunner:
    """What the torch and onnxruntime components share: tree, policy, text handling."""

    name = "medusa"
    capabilities = ("onnx-export", "batch", "stream", "exact-greedy", "lossless-sampling")

    def _setup(self, backend, codec, tree, topk, sampling, chat):
        if tree is not None and not isinstance(tree, (list, tuple)):
            raise UsageError("tree must be a list of rank paths, e.g. [[0], [0, 0], [1]]")
        self.backend, self.codec, self.sampling, self.chat = backend, codec, sampling, chat
        self.tree = build_tree(tree or [], topk) if tree else None
        Policy(mode=sampling)  # validates the mode early

    def encode(self, prompt: str) -> list[int]:
        return self.codec.encode_prompt(prompt, self.chat)

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> GenerationResult:
        return self.generate_batch([prompt], config)[0]

    def generate_batch(self, prompts: Sequence[str], config: GenerationConfig | None = None):
        config = config or GenerationConfig()
        if isinstance(prompts, str):
            raise UsageError("generate_batch takes a list of prompts")
        ids = [self.encode(p) for p in prompts]
        policy = Policy(
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            mode=self.sampling,
            rng=np.random.default_rng(config.seed),
        )
        rows, seconds = medusa_generate(
            self.backend,
            ids,
            tree=self.tree,
            policy=policy,
            max_new_tokens=config.max_new_tokens,
            decode=self.codec.decode,
            eos_ids=self.codec.eos_ids if config.eos else (),
            stop=config.stop,
            stream=config.stream,
        )
        return results_from_rows(rows, seconds)


class MedusaDecoder(MedusaRunner, Decoder):
    """Medusa on torch for any HF causal LM.

    model: HF id, local dir or .gguf path (default SmolLM2-135M-Instruct, offline GGUF);
    heads: "default" (shipped), a heads folder, or None (plain decoding);
    tree: rank paths (default: the tree stored with the heads); sampling: "lossless"|"typical".
    """

    def __init__(
        self,
        model: str | None = None,
        heads="default",
        tree=None,
        topk: int | None = None,
        sampling: str = "lossless",
        chat: bool | None = None,
        threads: int | None = None,
        heads_dtype: str = "bfloat16",
    ):
        import torch

        from .base import DEFAULT_BASE, load_base

        if threads:
            torch.set_num_threads(int(threads))
        folder = resolve_heads(heads)
        base = model
        if base is None:
            base = json.loads((folder / "config.json").read_text())["base_model"] if folder else DEFAULT_BASE
        self.base_name = base
        hf_model, codec = load_base(base)
        self._init(hf_model, codec, folder, tree, topk, sampling, chat, heads_dtype)

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
    ):
        """Build around an already loaded model; `heads` is a MedusaHeads, a folder or None."""
        self = cls.__new__(cls)
        self.base_name = base_name
        self._init(hf_model, codec, heads, tree, topk, sampling, chat, heads_dtype)
        return self

    def _init(self, hf_model, codec, heads, tree, topk, sampling, chat, heads_dtype):
        import torch

        from .base import TorchBackend
        from .heads import MedusaHeads, load_heads

        self.model, self.heads_config = hf_model, None
        self.heads_folder = Path(heads) if isinstance(heads, (str, Path)) else None
        if isinstance(heads, MedusaHeads):
            self.heads = heads
        elif heads is not None:
            self.heads, self.heads_config = load_heads(heads, hf_model)
            stored, stored_k = read_tree(heads)
            tree = stored if tree is None else tree
            topk = topk or stored_k
        else:
            self.heads = None
        if self.heads is None:
            tree = []
        elif tree is None:
            tree = FALLBACK_TREE
        if self.heads is not None and tree and max(len(p) for p in tree) > self.heads.num_heads:
            raise UsageError(f"tree is deeper than the {self.heads.num_heads} heads")
        if heads_dtype not in ("bfloat16", "float32"):
            raise UsageError(f"heads_dtype must be bfloat16 or float32, got {heads_dtype!r}")
        backend = TorchBackend(hf_model, self.heads, getattr(torch, heads_dtype))
        self._setup(backend, codec, tree, topk or 10, sampling, chat)

    def export_onnx(self, dest) -> Path:
        from .export import export_artifact

        return export_artifact(self, dest)
