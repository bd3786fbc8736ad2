"""Draft heads: Medusa heads (Cai et al. 2024) and Hydra heads (Ankner et al. 2024).

Medusa: p_k = softmax(W2_k (SiLU(W1_k h) + h)). Each ResBlock is exactly the identity at
init (weight AND bias zero); W2 starts as a copy of the base LM head, or is the frozen base
LM head itself (`share_lm_head`), in which case only the residual blocks are trained and stored.

Hydra: head k also sees the input embeddings of the k+1 tokens already on its tree path
(the root and the proposals of heads 0..k-1): u = h + A_k [e_0; ...; e_k], then the same
ResBlocks and projection; A_k starts at zero, so at init a Hydra head is a Medusa head.

Both may project onto a frequency-ranked subset of the vocabulary (FR-Spec, Zhao et al.
2025): the heads only propose, the base verifies with its full logits, so output is unchanged
while the heads' projection reads a fraction of the vocabulary matrix.
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
    """K heads on the base's final hidden state; forward(h [..., d]) -> logits [..., K, V]
    (V = the draft vocabulary: the subset's size when there is one; `token_ids` maps back)."""

    kind = "medusa"

    def __init__(
        self,
        lm_head: nn.Linear,
        num_heads: int = 4,
        num_layers: int = 1,
        share_lm_head: bool = True,
        vocab_subset: torch.Tensor | None = None,
    ):
        super().__init__()
        if num_heads < 1 or num_layers < 1:
            raise UsageError("num_heads and num_layers must be >= 1")
        vocab, d = lm_head.weight.shape
        self.num_heads, self.num_layers, self.share_lm_head = num_heads, num_layers, share_lm_head
        # one fresh ResBlock per layer per head (the reference's [ResBlock] * n shares them)
        self.blocks = nn.ModuleList(nn.Sequential(*[ResBlock(d) for _ in range(num_layers)]) for _ in range(num_heads))
        subset = None if vocab_subset is None else torch.as_tensor(vocab_subset, dtype=torch.int64)
        if subset is not None and (subset.ndim != 1 or subset.min() < 0 or subset.max() >= vocab):
            raise UsageError(f"vocab_subset must be token ids in [0, {vocab})")
        self.register_buffer("vocab_subset", subset)
        weight = lm_head.weight if subset is None else lm_head.weight[subset]
        object.__setattr__(self, "_lm_head", lm_head)  # the base's, frozen: not a submodule
        if share_lm_head:
            self.out = None
            # not a parameter: neither saved nor trained (the subset's rows, copied once)
            self.register_buffer("draft_weight", weight.detach(), persistent=False)
        else:
            self.out = nn.ModuleList(nn.Linear(d, len(weight), bias=False) for _ in range(num_heads))
            with torch.no_grad():
                for o in self.out:
                    o.weight.copy_(weight)

    def refresh_draft_weight(self):
        """Re-read the subset's rows of the shared LM head (after loading a subset)."""
        if self.out is None:
            w = self._lm_head.weight
            self.draft_weight = (w if self.vocab_subset is None else w[self.vocab_subset]).detach()

    @property
    def draft_vocab(self) -> int:
        return 0 if self.vocab_subset is None else len(self.vocab_subset)

    def token_ids(self, index):
        """Draft-vocabulary indices -> token ids."""
        return index if self.vocab_subset is None else self.vocab_subset[index]

    def project(self, z, head: int | None = None):
        """Vocabulary projection of features z [..., n, d] (all heads) or of one head's [..., d]."""
        if self.out is None:
            return nn.functional.linear(z, self.draft_weight)
        if head is not None:
            return self.out[head](z)
        return torch.stack([o(z[..., k, :]) for k, o in enumerate(self.out)], dim=-2)

    def residual(self, h):
        """Per-head features [..., K, d] (input of the vocabulary projection)."""
        return torch.stack([b(h) for b in self.blocks], dim=-2)

    def forward(self, h, select=None):
        """Logits [..., K, V]; with select (int64 [n], head numbers) only those heads [..., n, V].

        A tree d deep reads heads 0..d-1 only, and the vocabulary projection is the costly
        part, so the shared-LM-head heads project only the selected ones."""
        z = self.residual(h)
        if self.out is None:
            return self.project(z if select is None else z.index_select(-2, select))
        logits = self.project(z)
        return logits if select is None else logits.index_select(-2, select)

    def topk(self, h, k: int, select=None):
        """Token ids of each head's top k: [..., K or n, k]."""
        return self.token_ids(self(h, select).topk(k, dim=-1).indices)


class HydraHeads(MedusaHeads):
    """Sequentially dependent heads: head k reads h and the embeddings of the k+1 tokens on its
    path. forward(h [..., d], path [..., K] token ids) -> logits [..., K, V] (teacher-forced:
    head k uses path[..., :k+1]); head_logits(h, k, path [..., k+1]) runs one head (decoding)."""

    kind = "hydra"

    def __init__(self, lm_head, num_heads=4, num_layers=1, share_lm_head=True, vocab_subset=None, *, embedding):
        super().__init__(lm_head, num_heads, num_layers, share_lm_head, vocab_subset)
        d = lm_head.weight.shape[1]
        self.mix = nn.ModuleList(nn.Linear((k + 1) * d, d, bias=False) for k in range(num_heads))
        for m in self.mix:
            nn.init.zeros_(m.weight)  # at init: a Medusa head
        object.__setattr__(self, "_embedding", embedding)  # the base's, frozen: not saved

    def embed(self, path):
        return self._embedding(path).to(self.mix[0].weight.dtype)

    def features(self, h, k: int, path):
        e = self.embed(path[..., : k + 1]).flatten(-2)
        return self.blocks[k](h + self.mix[k](e))

    def forward(self, h, path=None, select=None):
        if path is None:
            raise UsageError("Hydra heads need the tokens on each path")
        z = torch.stack([self.features(h, k, path) for k in range(self.num_heads)], dim=-2)
        logits = self.project(z)
        return logits if select is None else logits.index_select(-2, select)

    def head_logits(self, h, k: int, path):
        return self.project(self.features(h, k, path), head=k)

    def head_topk(self, h, k: int, path, n: int):
        """Token ids of head k's top n given its path: [..., n]."""
        return self.token_ids(self.head_logits(h, k, path).topk(n, dim=-1).indices)


def make_heads(
    lm_head, *, kind="medusa", num_heads=4, num_layers=1, share_lm_head=True, vocab_subset=None, embedding=None
) -> MedusaHeads:
    """Medusa or Hydra heads (Hydra heads read the base's input embeddings)."""
    args = (lm_head, num_heads, num_layers, share_lm_head, vocab_subset)
    if kind == "hydra":
        if embedding is None:
            raise UsageError("Hydra heads need the base model's input embeddings")
        return HydraHeads(*args, embedding=embedding)
    return MedusaHeads(*args)


def heads_from_config(lm_head, cfg: dict, embedding=None) -> MedusaHeads:
    """Heads shaped as a config describes them, to load weights into (the draft vocabulary's
    token ids come with the weights)."""
    subset = torch.zeros(cfg["draft_vocab"], dtype=torch.int64) if cfg.get("draft_vocab") else None
    if cfg.get("kind") == "draft":
        from .draft_layer import DraftHeads

        return DraftHeads(lm_head, cfg["num_heads"], subset, embedding=embedding, **cfg["draft_layer"])
    keys = ("num_heads", "num_layers", "share_lm_head")
    return make_heads(
        lm_head, kind=cfg.get("kind", "medusa"), vocab_subset=subset, embedding=embedding, **{k: cfg[k] for k in keys}
    )


def heads_config(heads: MedusaHeads, base_name: str, lm_head_weight, **extra) -> dict:
    return {
        "format": "medusa-heads/1",
        "base_model": canonical_base_name(base_name),
        "lm_head_fingerprint": lm_head_fingerprint(lm_head_weight),
        "num_heads": heads.num_heads,
        "num_layers": heads.num_layers,
        "share_lm_head": heads.share_lm_head,
        "kind": heads.kind,
        "draft_vocab": heads.draft_vocab,
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
    tensors = {k: _stored(v, dtype) for k, v in heads.state_dict().items() if v is not None}
    tensors.update({k: _stored(v, dtype) for k, v in (extra_tensors or {}).items()})
    _atomic_write(folder / WEIGHTS, lambda p: save_file(tensors, p, metadata={"config": json.dumps(config)}))
    _atomic_write(folder / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def _stored(t, dtype):
    t = t.detach()
    return (t.to(dtype) if t.is_floating_point() else t).contiguous()  # token ids stay integers


def read_config(folder) -> dict:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise UsageError(f"no Medusa heads in {folder} (missing {CONFIG})")
    return json.loads(path.read_text())


PUBLISHED_WEIGHTS = ("medusa_lm_head.safetensors", "medusa_lm_head.pt")


def weights_file(folder) -> Path:
    """The file holding a heads folder's weights (this project's layout or a published one)."""
    folder = Path(folder)
    for name in (WEIGHTS, *PUBLISHED_WEIGHTS):
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"no Medusa heads weights in {folder} (expected {WEIGHTS})")


def is_published(cfg: dict) -> bool:
    """The layout of published Medusa heads (FasterDecoding): `medusa_num_heads` in the config."""
    return "medusa_num_heads" in cfg


def load_published(folder, model, cfg: dict) -> tuple[MedusaHeads, dict]:
    """Published Medusa heads: head i = ResBlock x medusa_num_layers, then its own output layer,
    stored as keys ``{i}.{j}.linear.weight/bias`` and ``{i}.{layers}.weight``. They load as
    MedusaHeads with own output matrices; the shapes must fit the base."""
    from engine.checkpoints import load_checkpoint

    folder = Path(folder)
    found = [folder / name for name in PUBLISHED_WEIGHTS if (folder / name).is_file()]
    if not found:
        raise UsageError(f"published Medusa heads in {folder} need one of {', '.join(PUBLISHED_WEIGHTS)}")
    if found[0].suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(found[0]))
    else:
        tensors = load_checkpoint(found[0])
    k, layers = int(cfg["medusa_num_heads"]), int(cfg.get("medusa_num_layers", 1))
    lm_head = model.get_output_embeddings()
    heads = MedusaHeads(lm_head, k, layers, share_lm_head=False)
    state = {}
    for i in range(k):
        for j in range(layers):
            for part in ("weight", "bias"):
                state[f"blocks.{i}.{j}.linear.{part}"] = _published(tensors, f"{i}.{j}.linear.{part}", found[0])
        state[f"out.{i}.weight"] = _published(tensors, f"{i}.{layers}.weight", found[0])
    want = heads.state_dict()
    for name, value in state.items():
        if value.shape != want[name].shape:
            raise UsageError(
                f"{found[0]}: {name} has shape {tuple(value.shape)}, this base needs {tuple(want[name].shape)} "
                "(heads published for another base?)"
            )
    heads.load_state_dict({n: v.to(lm_head.weight.dtype) for n, v in state.items()})
    config = heads_config(heads, cfg.get("base_model_name_or_path", "unknown"), lm_head.weight, published=True)
    return heads.eval().requires_grad_(False), config


def _published(tensors: dict, key: str, path: Path):
    if key not in tensors:
        raise UsageError(f"{path} has no {key!r}: not the published Medusa heads layout")
    return tensors[key]


def load_heads(folder, model, *, check_base: bool = True) -> tuple[MedusaHeads, dict]:
    """Load heads for `model`; refuses heads trained on another base (LM-head fingerprint).
    Published Medusa heads (FasterDecoding layout) load too (see :func:`load_published`)."""
    from safetensors.torch import load_file

    cfg = read_config(folder)
    if is_published(cfg):
        return load_published(folder, model, cfg)
    lm_head = model.get_output_embeddings()
    fp = lm_head_fingerprint(lm_head.weight)
    if check_base and cfg["lm_head_fingerprint"] != fp:
        raise UsageError(
            f"heads in {folder} were trained for {cfg['base_model']} "
            f"(LM head {cfg['lm_head_fingerprint']}), not this base (LM head {fp})"
        )
    heads = heads_from_config(lm_head, cfg, model.get_input_embeddings())
    tensors = load_file(str(Path(folder) / WEIGHTS))
    dtype = lm_head.weight.dtype
    own = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items() if not k.startswith("base.")}
    heads.load_state_dict(own)
    heads.refresh_draft_weight()
    base_delta = {k[5:]: v.to(dtype) for k, v in tensors.items() if k.startswith("base.")}
    if base_delta:  # Medusa-2 fine-tuned backbone parameters
        missing = set(base_delta) - set(dict(model.named_parameters()))
        if missing:
            raise UsageError(f"heads in {folder} carry backbone weights this model lacks: {sorted(missing)[:3]}")
        model.load_state_dict(base_delta, strict=False)
    return heads.eval().requires_grad_(False), cfg
