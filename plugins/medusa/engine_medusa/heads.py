"""Medusa heads (Cai et al. 2024): p_k = softmax(W2_k (SiLU(W1_k h) + h)).

Each ResBlock is exactly the identity at init (weight AND bias zero); W2 starts as a copy
of the base LM head, or is the frozen base LM head itself (`share_lm_head`), in which case
only the residual blocks are trained and stored.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from engine.errors import UsageError

from .base import canonical_base_name, lm_head_fingerprint

WEIGHTS = "heads.safetensors"
CONFIG = "config.json"


class ResBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.linear = nn.Linear(d, d)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)  # the reference forgets this: not the identity then

    def forward(self, x):
        return x + nn.functional.silu(self.linear(x))


class MedusaHeads(nn.Module):
    """K heads on the base's final hidden state; forward(h [..., d]) -> logits [..., K, V]."""

    def __init__(self, lm_head: nn.Linear, num_heads: int = 4, num_layers: int = 1, share_lm_head: bool = True):
        super().__init__()
        if num_heads < 1 or num_layers < 1:
            raise UsageError("num_heads and num_layers must be >= 1")
        vocab, d = lm_head.weight.shape
        self.num_heads, self.num_layers, self.share_lm_head = num_heads, num_layers, share_lm_head
        # one fresh ResBlock per layer per head (the reference's [ResBlock] * n shares them)
        self.blocks = nn.ModuleList(nn.Sequential(*[ResBlock(d) for _ in range(num_layers)]) for _ in range(num_heads))
        if share_lm_head:
            self.out = None
            object.__setattr__(self, "_lm_head", lm_head)  # not a submodule: not saved/trained
        else:
            self.out = nn.ModuleList(nn.Linear(d, vocab, bias=False) for _ in range(num_heads))
            with torch.no_grad():
                for o in self.out:
                    o.weight.copy_(lm_head.weight)

    def residual(self, h):
        """Per-head features [..., K, d] (input of the vocabulary projection)."""
        return torch.stack([b(h) for b in self.blocks], dim=-2)

    def forward(self, h, select=None):
        """Logits [..., K, V]; with select (int64 [n], head numbers) only those heads [..., n, V].

        A tree d deep reads heads 0..d-1 only, and the vocabulary projection is the costly
        part, so the shared-LM-head heads project only the selected ones."""
        z = self.residual(h)
        if self.out is None:
            return self._lm_head(z if select is None else z.index_select(-2, select))
        logits = torch.stack([o(z[..., k, :]) for k, o in enumerate(self.out)], dim=-2)
        return logits if select is None else logits.index_select(-2, select)


def heads_config(heads: MedusaHeads, base_name: str, lm_head_weight, **extra) -> dict:
    return {
        "format": "medusa-heads/1",
        "base_model": canonical_base_name(base_name),
        "lm_head_fingerprint": lm_head_fingerprint(lm_head_weight),
        "num_heads": heads.num_heads,
        "num_layers": heads.num_layers,
        "share_lm_head": heads.share_lm_head,
        "hidden_size": lm_head_weight.shape[1],
        "vocab_size": lm_head_weight.shape[0],
        **extra,
    }


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_heads(
    folder, heads: MedusaHeads, config: dict, *, dtype=torch.float16, extra_tensors: dict | None = None
) -> Path:
    """safetensors (fp16 by default) + config.json, each written atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in heads.state_dict().items()}
    tensors.update({k: v.detach().to(dtype).contiguous() for k, v in (extra_tensors or {}).items()})
    _atomic_write(folder / WEIGHTS, lambda p: save_file(tensors, p, metadata={"config": json.dumps(config)}))
    _atomic_write(folder / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def read_config(folder) -> dict:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise UsageError(f"no Medusa heads in {folder} (missing {CONFIG})")
    return json.loads(path.read_text())


def load_heads(folder, model, *, check_base: bool = True) -> tuple[MedusaHeads, dict]:
    """Load heads for `model`; refuses heads trained on another base (LM-head fingerprint)."""
    from safetensors.torch import load_file

    cfg = read_config(folder)
    lm_head = model.get_output_embeddings()
    fp = lm_head_fingerprint(lm_head.weight)
    if check_base and cfg["lm_head_fingerprint"] != fp:
        raise UsageError(
            f"heads in {folder} were trained for {cfg['base_model']} "
            f"(LM head {cfg['lm_head_fingerprint']}), not this base (LM head {fp})"
        )
    heads = MedusaHeads(lm_head, cfg["num_heads"], cfg["num_layers"], cfg["share_lm_head"])
    tensors = load_file(str(Path(folder) / WEIGHTS))
    dtype = lm_head.weight.dtype
    own = {k: v.to(dtype) for k, v in tensors.items() if not k.startswith("base.")}
    heads.load_state_dict(own)
    base_delta = {k[5:]: v.to(dtype) for k, v in tensors.items() if k.startswith("base.")}
    if base_delta:  # Medusa-2 fine-tuned backbone parameters
        missing = set(base_delta) - set(dict(model.named_parameters()))
        if missing:
            raise UsageError(f"heads in {folder} carry backbone weights this model lacks: {sorted(missing)[:3]}")
        model.load_state_dict(base_delta, strict=False)
    return heads.eval().requires_grad_(False), cfg
