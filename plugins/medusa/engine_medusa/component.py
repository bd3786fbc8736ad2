"""What the torch and onnxruntime Medusa decoders share (no torch here): the stored tree,
the heads folder, and :class:`MedusaRunner`, the tree / policy / text handling around an
array backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.interfaces import ConfigError, GenerationConfig, GenerationResult, GenerationStats, as_config

from .decoding import Policy, medusa_generate
from .options import DEFAULT_CHAIN, DEFAULT_CHAIN_SHARE, DEFAULT_LOOKUP, as_tree
from .retrieval import open_datastore
from .tree import build_tree

DEFAULT_HEADS = Path(__file__).resolve().parent / "weights" / "default"
# The default heads fine-tuned on an int4 copy's own answers and hidden states (MODEL_CARD.md, "Heads for
# quantized artifacts"): what a quantized export of the default heads carries, as a quantized base is
# another model than the fp32 one the default heads were trained for.
QUANTIZED_HEADS = DEFAULT_HEADS.parent / "quantized"
TREE_FILE = "tree.json"
# Used when a heads folder has no tuned tree: a small CPU-sized tree.
FALLBACK_TREE = [[0], [1], [0, 0], [0, 0, 0], [0, 0, 0, 0]]


def stored_tree(folder, backend: str) -> dict | None:
    """The tree tune-tree stored with the heads for ``backend`` (their step latencies differ):
    torch's at the top level of tree.json, another back end's under its name; None if none."""
    path = Path(folder) / TREE_FILE
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    entry = cfg if backend == "torch" else cfg.get(backend, {})
    return entry if "choices" in entry else None  # a file may hold another back end's tree only


def read_tree(folder, backend: str = "torch") -> tuple[list, int]:
    """The tree stored with the heads for ``backend``, else the torch one, else the fallback."""
    entry = stored_tree(folder, backend)
    if entry is None and backend != "torch":
        entry = stored_tree(folder, "torch")
    if entry is None:
        return FALLBACK_TREE, 10
    return entry["choices"], int(entry.get("topk", 10))


def heads_for_export(folder, quantize: str | None) -> Path | None:
    """The heads a quantized export carries: the default heads become ``QUANTIZED_HEADS``, other
    heads stay as they are (None: those of the decoder)."""
    if quantize and folder is not None and Path(folder).resolve() == DEFAULT_HEADS:
        return QUANTIZED_HEADS
    return None


def resolve_heads(heads) -> Path | None:
    if heads in (None, "none", ""):
        return None
    folder = DEFAULT_HEADS if heads == "default" else Path(heads)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"no Medusa heads at {folder} (expected config.json + heads.safetensors)")
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

    backend_name, subject, device, threads = "torch", None, None, None
    tree_source = "none"

    def _identify(self, backend_name: str, subject: str | None, threads: int | None, gpu: bool = False) -> None:
        """What a tuned tree is keyed by: the back end, the digest of the weights it runs
        (artifact manifest or heads file), this device and the thread count."""
        from engine.runtime import resolve_threads
        from engine.tuned import device_id

        self.backend_name, self.subject, self.threads = backend_name, subject, resolve_threads(threads)
        name = None
        if gpu:
            from engine.doctor import gpu_names

            name = "cuda-" + (gpu_names() or ["gpu"])[0]
        self.device = device_id(backend_name, self.threads, name)

    def _choose_tree(self, tree, stored, stored_source: str, topk: int, num_heads: int):
        """An explicit tree, else the one tuned on this device (``engine medusa tune-tree``),
        else the stored one; returns the choices and remembers where they came from."""
        if tree is not None:
            self.tree_source = "argument"
            return tree
        if self.subject is not None:
            from engine.tuned import load_tuned

            found = load_tuned("medusa", self.subject, self.device)
            if found and int(found[0].get("topk", 10)) == topk:
                choices = found[0].get("choices") or []
                if max(map(len, choices), default=0) <= num_heads:
                    self.tree_source = f"tuned on this device ({found[1]})"
                    return choices
        self.tree_source = stored_source
        return stored

    @property
    def tree_info(self) -> dict:
        """The tree in use, where it came from, the device it is keyed to and the prompt lookup's n
        (for benchmarks)."""
        choices = [list(c) for c in self.tree.choices] if self.tree else []
        return {
            "choices": choices,
            "nodes": len(choices) + 1,
            "source": self.tree_source,
            "device": self.device,
            "lookup": self.lookup if self.tree or self.chain else 0,
            "chain": self.chain,
            "chain_share": self.chain_share,
            "datastore_tokens": len(self.datastore) if self.datastore is not None else 0,
        }

    def _setup(
        self, backend, codec, tree, topk, sampling, chat, num_heads=0, lookup=None, chain=None, store=None, share=None
    ):
        """``store``: the datastore for ``chain`` (a Datastore, a file) or, as a folder, where one may be stored;
        ``share``: the chain's minimum share of the store's occurrences."""
        self.lookup = DEFAULT_LOOKUP if lookup is None else lookup
        self.chain = DEFAULT_CHAIN if chain is None else chain
        if self.lookup < 0 or self.chain < 0:
            raise ConfigError(f"lookup and chain must be >= 0, got {lookup!r} and {chain!r}")
        self.datastore = open_datastore(store) if self.chain else None
        self.chain_share = DEFAULT_CHAIN_SHARE if share is None else float(share)
        if not 0.0 <= self.chain_share <= 1.0:
            raise ConfigError(f"chain_share must be within [0, 1], got {share!r}")
        tree = as_tree(tree)
        if tree and max(len(p) for p in tree) > num_heads:
            raise ConfigError(f"tree is deeper than the {num_heads} heads")
        sampling = sampling or "lossless"
        Policy(mode=sampling)  # validates the mode early
        self.backend, self.codec, self.sampling, self.chat = backend, codec, sampling, chat
        self.tree = build_tree(tree, topk) if tree else None

    def encode(self, prompt: str) -> list[int]:
        return self.codec.encode_prompt(prompt, self.chat)

    def generate(self, prompt: str, config: GenerationConfig | None = None) -> GenerationResult:
        return self.generate_batch([prompt], config)[0]

    def generate_batch(self, prompts: Sequence[str], config: GenerationConfig | None = None):
        config = as_config(GenerationConfig, config)
        if isinstance(prompts, str):
            raise TypeError("generate_batch takes a list of prompts, not one string")
        ids = [self.encode(p) for p in prompts]
        policy = Policy(
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            mode=self.sampling,
            rng=np.random.default_rng(config.seed),
        )
        with self.progress(desc="generate") as steps:  # the host's observers and cancellation see each step
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
                on_step=steps.update,
                lookup=self.lookup,
                chain=self.chain,
                datastore=self.datastore,
                chain_share=self.chain_share,
            )
        return results_from_rows(rows, seconds)
