"""Medusa-1 and Medusa-2 training on self-distilled data (single process or torchrun/DDP).

Medusa-1: backbone frozen, loss = sum_k 0.8^k CE(head_k(h_t), x_{t+k+1}); the frozen
backbone's hidden states were cached during self-distillation, so a step costs only the heads.
Medusa-2: stage 1 trains the heads alone, stage 2 trains jointly with the last N backbone
layers unfrozen: loss = KL(teacher || student) on the base head + lambda_0 * sum_k 0.8^k L_k,
the teacher being the frozen original model; the heads get lr * head_lr_mult.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from pathlib import Path

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from engine.artifacts import sha256_file
from engine.checkpoints import load_checkpoint, save_checkpoint
from engine.errors import UsageError
from engine.io.prompts import read_prompt_rows

from .data import head_paths, head_targets
from .heads import HydraHeads, MedusaHeads, heads_config, make_heads, save_heads

HEAD_DECAY = 0.8


@attrs.define
class TrainConfig:
    mode: str = "medusa1"  # medusa1 | medusa2
    kind: str = "medusa"  # medusa | hydra | draft (Medusa-1 training: the base frozen)
    draft_vocab: int = 0  # 0: the full vocabulary; else the N most frequent base tokens (FR-Spec)
    soft_targets: bool = False  # the base's distribution at the target position (teacher-forced data)
    num_heads: int = 4
    num_layers: int = 1
    share_lm_head: bool = True
    epochs: float = 1.0
    max_steps: int = 0  # 0: from epochs
    batch_size: int = 256  # positions (medusa1) or sequences (medusa2)
    lr: float = 1e-3
    warmup: float = 0.1
    weight_decay: float = 0.0
    val_fraction: float = 0.05
    seed: int = 0
    checkpoint_every: int = 100
    bf16: bool = True  # autocast the vocabulary projections (CPU AMX)
    # Medusa-2
    unfreeze_last: int = 2
    lambda0: float = 0.2
    head_lr_mult: float = 4.0
    stage1_steps: int = 0
    max_len: int = 256  # Medusa-2 sequences; the draft's training windows
    betas: tuple = (0.9, 0.999)
    # the draft layer: loss = sum_s 0.8^s (reg_weight x feature smooth-L1 + cls_weight x soft CE)
    draft_reg_weight: float = 1.0
    draft_cls_weight: float = 0.1
    draft_init: str = "random"  # random | identity (DraftLayer.pass_through)

    def __attrs_post_init__(self):
        if self.mode not in ("medusa1", "medusa2"):
            raise UsageError(f"unknown training mode {self.mode!r} (medusa1 or medusa2)")
        if self.kind not in ("medusa", "hydra", "draft"):
            raise UsageError(f"unknown heads kind {self.kind!r} (medusa, hydra or draft)")
        if self.mode == "medusa2" and (self.kind != "medusa" or self.draft_vocab or self.soft_targets):
            raise UsageError("Medusa-2 trains Medusa heads over the full vocabulary with hard targets")
        if self.num_heads < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UsageError("num_heads, batch_size and lr must be positive")
        if not 0 < self.val_fraction < 1:
            raise UsageError("val_fraction must be in (0, 1)")


def head_weights(k: int) -> torch.Tensor:
    return torch.tensor([HEAD_DECAY ** (i + 1) for i in range(k)])


def medusa_loss(head_logits, targets, weights):
    """sum_k w_k CE_k over positions with a target (-100 = none); returns (loss, per-head CE)."""
    k = head_logits.shape[-2]
    ce = torch.stack(
        [
            F.cross_entropy(
                head_logits[..., i, :].float().reshape(-1, head_logits.shape[-1]),
                targets[..., i].reshape(-1),
                ignore_index=-100,
            )
            for i in range(k)
        ]
    )
    ce = torch.nan_to_num(ce)  # a head with no target in the batch contributes nothing
    return (weights * ce).sum(), ce.detach()


def split_samples(samples, val_fraction: float, seed: int):
    idx = list(range(len(samples)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, int(round(len(idx) * val_fraction)))
    return [samples[i] for i in idx[n_val:]], [samples[i] for i in idx[:n_val]]


def target_rows(m: int, k: int, start: int) -> np.ndarray:
    """rows[j, i] = start + j + i + 1: the hidden state whose base distribution head i at h_j
    learns (soft targets), -1 past the end."""
    r = np.full((m, k), -1, np.int64)
    for i in range(k):
        r[: max(m - i - 1, 0), i] = start + np.arange(i + 1, m)
    return r


@attrs.frozen
class Positions:
    """Training positions: hidden states, hard targets (the base's tokens), Hydra paths and the
    rows of the soft targets' hidden states."""

    hidden: torch.Tensor  # [P, d] fp16
    targets: torch.Tensor  # [P, K]
    paths: torch.Tensor  # [P, K]
    rows: torch.Tensor  # [P, K]

    def __len__(self):
        return len(self.hidden)


def flatten_positions(samples, k: int) -> Positions:
    hidden = np.concatenate([s[2] for s in samples])
    # the base's own token at every position: for teacher-forced data the answer is not the base's
    targets = np.concatenate([head_targets(np.asarray(s[-1], np.int64), k) for s in samples])
    paths = np.concatenate([head_paths(np.asarray(s[1], np.int64), k) for s in samples])
    starts = np.cumsum([0] + [len(s[1]) for s in samples])
    rows = np.concatenate([target_rows(len(s[1]), k, int(a)) for s, a in zip(samples, starts, strict=False)])
    return Positions(*(torch.from_numpy(x) for x in (hidden, targets, paths, rows)))


def frequent_tokens(samples, n: int, vocab: int) -> torch.Tensor:
    """The n tokens the base itself emits most often on the training data (FR-Spec's subset),
    sorted by id; ties by id."""
    counts = np.bincount(np.concatenate([np.asarray(s[-1], np.int64) for s in samples]), minlength=vocab)
    order = np.lexsort((np.arange(vocab), -counts))[:n]
    return torch.from_numpy(np.sort(order))


def run_heads(heads, h, paths=None, select=None):
    return heads(h, paths, select) if isinstance(heads, HydraHeads) else heads(h, select)


@torch.no_grad()
def head_accuracy(heads, hidden, targets, batch: int = 512, bf16: bool = True, paths=None):
    """Per-head teacher-forced top-1 and top-5 accuracy (and rank counts for tree tuning).
    Hydra heads read the tokens on each path (``paths``, see :func:`head_paths`)."""
    k = targets.shape[1]
    top1, top5, n = torch.zeros(k), torch.zeros(k), torch.zeros(k)
    rank_hits = torch.zeros(k, 10)
    for s in range(0, len(hidden), batch):
        h, t = hidden[s : s + batch], targets[s : s + batch]
        path = None if paths is None else paths[s : s + batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = run_heads(heads, h.to(heads_dtype(heads)), path)
        top = heads.token_ids(logits.float().topk(10, dim=-1).indices)  # [b, K, 10]
        valid = t >= 0
        hit = top == t[..., None]
        top1 += (hit[..., 0] & valid).sum(0)
        top5 += (hit[..., :5].any(-1) & valid).sum(0)
        rank_hits += (hit & valid[..., None]).sum(0).float()
        n += valid.sum(0)
    n = n.clamp(min=1)
    return {
        "top1": (top1 / n).tolist(),
        "top5": (top5 / n).tolist(),
        "rank_acc": (rank_hits / n[:, None]).tolist(),
        "positions": int(n[0]),
    }


def heads_dtype(heads):
    return next(heads.parameters()).dtype


# ----------------------------------------------------------------------------- runtime


def dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class Trainer:
    """Shared optimisation loop: schedule, DDP gradient averaging, checkpoints, resume, logs."""

    def __init__(self, cfg: TrainConfig, out: Path, params_groups, modules, progress=None, log=print):
        self.cfg, self.out, self.modules = cfg, Path(out), modules
        self.rank, self.world = dist_info()
        self.opt = torch.optim.AdamW(params_groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.step = 0
        self.progress, self.log = progress, log
        self.history = []
        self.out.mkdir(parents=True, exist_ok=True)

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoint.pt"

    def state(self):
        return {
            "step": self.step,
            "opt": self.opt.state_dict(),
            "history": self.history,
            "modules": {n: {k: v for k, v in m.state_dict().items()} for n, m in self.modules.items()},
            "rng": torch.get_rng_state(),
            "cfg": attrs.asdict(self.cfg),
        }

    def resume(self) -> bool:
        if not self.ckpt.is_file():
            return False
        st = load_checkpoint(self.ckpt)
        for n, m in self.modules.items():
            m.load_state_dict(st["modules"][n], strict=False)
        self.opt.load_state_dict(st["opt"])
        self.step, self.history = st["step"], st["history"]
        torch.set_rng_state(st["rng"])
        self.log(f"resumed from {self.ckpt} at step {self.step}")
        return True

    def save_checkpoint(self):
        if self.rank == 0:
            save_checkpoint(self.state(), self.ckpt)

    def sync_grads(self, params):
        if self.world > 1:
            for p in params:
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= self.world

    def run(self, total: int, batch_fn, loss_fn, params):
        warm = max(1, int(self.cfg.warmup * total))
        it = range(self.step, total)
        bar = it
        if self.progress and self.rank == 0:
            bar = self.progress(it, total=total - self.step, desc=f"train {self.cfg.mode}")
        t0 = time.time()
        for step in bar:
            scale = cosine_lr(step, total, warm)
            for g, lr in zip(self.opt.param_groups, self.base_lrs, strict=True):
                g["lr"] = lr * scale
            loss, ce = loss_fn(batch_fn(step))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.sync_grads(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.opt.step()
            self.step = step + 1
            if step % 10 == 0 or self.step == total:
                self.history.append(
                    {
                        "step": self.step,
                        "loss": float(loss.detach()),
                        "ce": [round(float(c), 4) for c in ce],
                        "seconds": round(time.time() - t0, 1),
                    }
                )
            if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint()
        self.save_checkpoint()


def _position_batches(n: int, batch: int, seed: int, rank: int, world: int):
    """Deterministic shuffled position batches, sharded across DDP ranks."""

    def batch_at(step):
        per_epoch = max(1, n // (batch * world))
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        start = (i * world + rank) * batch
        return perm[start : start + batch]

    return batch_at


def heldout_accuracy(heads, samples, bf16: bool = False) -> dict:
    """Teacher-forced accuracy of the heads against the base's own tokens on held-out samples."""
    pos = flatten_positions(samples, heads.num_heads)
    paths = pos.paths if isinstance(heads, HydraHeads) else None
    acc = head_accuracy(heads, pos.hidden, pos.targets, bf16=bf16, paths=paths)
    return {
        "top1": [round(x, 4) for x in acc["top1"]],
        "top5": [round(x, 4) for x in acc["top5"]],
        "positions": acc["positions"],
        "conversations": len(samples),
    }


def soft_loss(head_logits, teacher_logits, valid, weights):
    """sum_k w_k H(p_teacher, q_k): cross-entropy against the base's own distribution at the
    target position, over the draft vocabulary; positions without a target (valid False) skipped."""
    logq = F.log_softmax(head_logits.float(), -1)
    p = F.softmax(teacher_logits.float(), -1)
    ce = -(p * logq).sum(-1)  # [b, K]
    per_head = (ce * valid).sum(0) / valid.sum(0).clamp(min=1)
    return (weights * per_head).sum(), per_head.detach()


def draft_targets(targets, subset, vocab: int):
    """Token-id targets -> indices in the draft vocabulary; a token outside it is no target (-100)."""
    if subset is None:
        return targets
    index = torch.full((vocab,), -100, dtype=torch.int64)
    index[subset] = torch.arange(len(subset))
    return torch.where(targets >= 0, index[targets.clamp(min=0)], -100)


def build_heads(lm_head, cfg: TrainConfig, samples, embedding=None):
    subset = frequent_tokens(samples, cfg.draft_vocab, lm_head.weight.shape[0]) if cfg.draft_vocab else None
    shape = {"num_heads": cfg.num_heads, "num_layers": cfg.num_layers, "share_lm_head": cfg.share_lm_head}
    return make_heads(lm_head, kind=cfg.kind, vocab_subset=subset, embedding=embedding, **shape)


def train_medusa1(
    samples,
    lm_head,
    cfg: TrainConfig,
    out: Path,
    base_name: str,
    *,
    embedding=None,
    init=None,
    resume=False,
    progress=None,
    log=print,
):
    """Train heads on cached hidden states, new ones or (``init``) a copy of trained heads of the
    same shape. Returns (heads, report dict)."""
    torch.manual_seed(cfg.seed)
    train, val = split_samples(samples, cfg.val_fraction, cfg.seed)
    tr = flatten_positions(train, cfg.num_heads)
    va = flatten_positions(val, cfg.num_heads)
    heads = build_heads(lm_head, cfg, train, embedding)
    if init is not None:  # their weights and draft vocabulary; what trains stays as in new heads
        heads.load_state_dict(init.state_dict())
        heads.refresh_draft_weight()
    params = [p for p in heads.parameters() if p.requires_grad]
    trainer = Trainer(cfg, out, [{"params": params, "lr": cfg.lr}], {"heads": heads}, progress, log)
    if resume:
        trainer.resume()
    total = cfg.max_steps or max(1, int(cfg.epochs * len(tr) / (cfg.batch_size * trainer.world)))
    batch_at = _position_batches(len(tr), cfg.batch_size, cfg.seed, trainer.rank, trainer.world)
    weights = head_weights(cfg.num_heads)
    paths = tr.paths if cfg.kind == "hydra" else None
    frozen = lm_head.weight.detach()
    teacher_w = frozen if heads.vocab_subset is None else frozen[heads.vocab_subset]
    targets = draft_targets(tr.targets, heads.vocab_subset, frozen.shape[0])

    def loss_fn(idx):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = run_heads(heads, tr.hidden[idx].float(), None if paths is None else paths[idx])
            if not cfg.soft_targets:
                return medusa_loss(logits, targets[idx], weights)
            rows = tr.rows[idx]
            with torch.no_grad():
                teacher = F.linear(tr.hidden[rows.clamp(min=0)].float(), teacher_w)
        return soft_loss(logits, teacher, rows >= 0, weights)

    va_paths = va.paths if cfg.kind == "hydra" else None
    before = head_accuracy(heads, va.hidden, va.targets, bf16=cfg.bf16, paths=va_paths) if trainer.step == 0 else None
    t0 = time.time()
    trainer.run(total, batch_at, loss_fn, params)
    report = {
        "mode": "medusa1",
        "kind": cfg.kind,
        "draft_vocab": cfg.draft_vocab,
        "soft_targets": cfg.soft_targets,
        "steps": total,
        "train_positions": len(tr),
        "val_positions": len(va),
        "train_samples": len(train),
        "val_samples": len(val),
        "seconds": round(time.time() - t0, 1),
        "world_size": trainer.world,
        "val_accuracy": head_accuracy(heads, va.hidden, va.targets, bf16=cfg.bf16, paths=va_paths),
        "val_accuracy_at_init": before,
        "history": trainer.history,
    }
    if trainer.rank == 0:
        finish(heads, lm_head, cfg, out, base_name, report)
    return heads.eval(), report


def finish(heads, lm_head, cfg, out: Path, base_name: str, report: dict, extra_tensors=None):
    """Write the heads (fp16 safetensors + config) and the training report."""
    info = {"training": {k: v for k, v in report.items() if k != "history"}, "train_config": attrs.asdict(cfg)}
    if heads.kind == "draft":
        info["draft_layer"] = heads.shape
    save_heads(out, heads, heads_config(heads, base_name, lm_head.weight, **info), extra_tensors=extra_tensors)
    tmp = out / ".train_log.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out / "train_log.json")


# ----------------------------------------------------------------------------- Medusa-2


DRAFT_STREAM_DECAY = 0.8  # stream s's loss weighs 0.8^s: later draft steps matter less


def draft_windows(samples, rng, batch: int, length: int):
    """Random windows of `length` answer positions from `batch` random conversations (right
    padded): features, tokens and the valid mask, as tensors (the loss's targets are the next
    features, so the base's own tokens are not needed)."""
    picks = [samples[i] for i in rng.integers(0, len(samples), batch)]
    d = picks[0][2].shape[1]
    hid = np.zeros((batch, length, d), np.float16)
    tok = np.zeros((batch, length), np.int64)
    valid = np.zeros((batch, length), bool)
    for b, (_, t, h, _) in enumerate(picks):
        a = int(rng.integers(0, max(1, len(t) - length + 1)))
        m = min(length, len(t) - a)
        hid[b, :m], tok[b, :m], valid[b, :m] = h[a : a + m], t[a : a + m], True
    return torch.from_numpy(hid).float(), torch.from_numpy(tok), torch.from_numpy(valid)


def stream_targets(valid, streams: int):
    """mask[s, b, p]: stream s at p has a chain (p - s >= 0) and a target (p + 1 valid)."""
    nxt = F.pad(valid[:, 1:], (0, 1), value=False)
    pos = torch.arange(valid.shape[1])
    return torch.stack([nxt & (pos >= s)[None] for s in range(streams)])


def draft_loss(heads, hid, tok, valid, cfg: TrainConfig):
    """EAGLE's loss on every stream: the next feature (smooth L1) and the base's distribution
    there (soft cross-entropy on the draft vocabulary); -> (loss, per-stream CE)."""
    from .draft_layer import stream_forward

    streams = heads.num_heads
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        outs = stream_forward(heads.layer, hid, heads._embedding(tok).detach(), valid, streams)
        logits = F.linear(outs, heads.draft_weight).float()
    mask = stream_targets(valid, streams)
    target = F.pad(hid[:, 1:], (0, 0, 0, 1))
    with torch.no_grad():
        teacher = F.linear(target, heads.draft_weight).softmax(-1)
    ce = -(teacher * logits.log_softmax(-1)).sum(-1)
    reg = F.smooth_l1_loss(outs.float(), target.expand_as(outs), reduction="none").mean(-1)
    count = mask.sum((1, 2)).clamp(min=1)
    per = ((cfg.draft_reg_weight * reg + cfg.draft_cls_weight * ce) * mask).sum((1, 2)) / count
    loss = (DRAFT_STREAM_DECAY ** torch.arange(streams) * per).sum()
    return loss, ((ce * mask).sum((1, 2)) / count).detach()


def draft_hits(heads, samples) -> np.ndarray:
    """hits[s, P]: whether the base's token is the top-1 of draft step s + 1 of the chain after
    each position P of the samples (drafted along their tokens, as decoding does while its
    drafts are accepted; False past an answer's end)."""
    return hit_ranks(heads, samples, 1) == 0


def hit_ranks(heads, samples, ranks: int) -> np.ndarray:
    """rank[s, P]: the rank of the base's token among draft step s + 1's top `ranks` at chain
    start P (as in draft_hits), `ranks` where it is not among them or past an answer's end."""
    from .draft_layer import stream_forward

    streams, rows = heads.num_heads, []
    for _, t, h, g in samples:
        m = len(t)
        with torch.no_grad():
            tok = torch.from_numpy(np.asarray(t, np.int64))[None]
            outs = stream_forward(
                heads.layer, torch.from_numpy(h).float()[None], heads._embedding(tok), tok >= 0, streams
            )
            top = heads.token_ids(F.linear(outs[:, 0], heads.draft_weight).topk(ranks, -1).indices).numpy()
        rank = np.full((streams, m), ranks)
        for s in range(streams):
            j = np.arange(0, max(m - s - 1, 0))
            same = top[s, j + s] == np.asarray(g)[j + s + 1, None]
            rank[s, j] = np.where(same.any(-1), same.argmax(-1), ranks)
        rows.append(rank)
    return np.concatenate(rows, 1)


def draft_accuracy(heads, samples) -> dict:
    rank = hit_ranks(heads, samples, 5)  # one pass of the streams for top-1 and top-5
    top1, top5 = rank == 0, rank < 5
    chain = np.cumprod(top1, 0).mean(1)
    return {
        "top1": [round(float(x), 4) for x in top1.mean(1)],
        "top5": [round(float(x), 4) for x in top5.mean(1)],
        "chain": [round(float(x), 4) for x in chain],
        "expected_tokens_per_step": round(1 + float(chain.sum()), 4),
        "positions": int(top1.shape[1]),
    }


def train_draft(
    samples, lm_head, embedding, shape: dict, cfg, out, base_name, *, resume=False, progress=None, log=print
):
    """The one-layer draft (`draft_layer`) on cached features: windows of answer positions, every
    draft step trained at once by streams. Batches depend on the step only: exact resume."""
    from .draft_layer import DraftHeads

    train, val = split_samples(samples, cfg.val_fraction, cfg.seed)
    subset = frequent_tokens(train, cfg.draft_vocab, lm_head.weight.shape[0]) if cfg.draft_vocab else None
    torch.manual_seed(cfg.seed)
    heads = DraftHeads(lm_head, cfg.num_heads, subset, embedding=embedding, **shape)
    if cfg.draft_init == "identity":
        heads.layer.pass_through()
    params = list(heads.layer.parameters())
    trainer = Trainer(cfg, out, [{"params": params, "lr": cfg.lr}], {"heads": heads}, progress, log)
    if resume:
        trainer.resume()
    total = cfg.max_steps or max(1, int(cfg.epochs * sum(len(s[1]) for s in train) / (cfg.batch_size * cfg.max_len)))

    def batch_at(step):
        return draft_windows(train, np.random.default_rng([cfg.seed, step]), cfg.batch_size, cfg.max_len)

    t0 = time.time()
    trainer.run(total, batch_at, lambda b: draft_loss(heads, *b, cfg), params)
    report = {
        "mode": "medusa1",
        "kind": "draft",
        "draft_vocab": cfg.draft_vocab,
        "soft_targets": True,
        "steps": total,
        "train_samples": len(train),
        "val_samples": len(val),
        "seconds": round(time.time() - t0, 1),
        "val_accuracy": draft_accuracy(heads.eval(), val),
        "history": trainer.history,
    }
    if trainer.rank == 0:
        finish(heads, lm_head, cfg, out, base_name, report)
    return heads, report


def sequences_from(samples, prompt_ids: dict, max_len: int):
    """(ids [T], first answer position) per sample: prompt tokens + distilled answer."""
    seqs = []
    for sid, answer, *_ in samples:
        p = prompt_ids.get(sid)
        if p is None:
            continue
        ids = (list(p) + [int(t) for t in answer])[:max_len]
        if len(ids) > len(p):
            seqs.append((ids, len(p)))
    if not seqs:
        raise UsageError("no usable sequences for Medusa-2 training")
    return seqs


def _pad_batch(seqs, k: int):
    width = max(len(s) for s, _ in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    att = torch.zeros(len(seqs), width, dtype=torch.long)
    tgt = torch.full((len(seqs), width, k + 1), -100, dtype=torch.long)
    for b, (s, start) in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        att[b, : len(s)] = 1
        # position j (>= start - 1) predicts s[j+1] (base) and s[j+1+i] (head i)
        for i in range(k + 1):
            for j in range(start - 1, len(s) - 1 - i):
                tgt[b, j, i] = s[j + 1 + i]
    return ids, att, tgt


def train_medusa2(
    model, seqs, cfg: TrainConfig, out: Path, base_name: str, *, heads=None, resume=False, progress=None, log=print
):
    """Two-stage Medusa-2: heads only for stage1_steps, then joint with the last N layers."""
    torch.manual_seed(cfg.seed)
    lm_head = model.get_output_embeddings()
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    heads = heads or MedusaHeads(lm_head, cfg.num_heads, cfg.num_layers, cfg.share_lm_head)
    backbone = _unfreeze_last(model, cfg.unfreeze_last)
    head_params = [p for p in heads.parameters() if p.requires_grad]
    groups = [{"params": head_params, "lr": cfg.lr * cfg.head_lr_mult}, {"params": backbone, "lr": cfg.lr}]
    trainer = Trainer(cfg, out, groups, {"heads": heads, "backbone": _ParamBag(model, backbone)}, progress, log)
    if resume:
        trainer.resume()
    train, val = split_samples(seqs, cfg.val_fraction, cfg.seed)
    total = cfg.max_steps or max(1, int(cfg.epochs * len(train) / (cfg.batch_size * trainer.world)))
    weights = head_weights(cfg.num_heads)

    def batch_fn(step):
        rng = random.Random(cfg.seed * 1_000_003 + step * trainer.world + trainer.rank)
        return _pad_batch(rng.sample(train, min(cfg.batch_size, len(train))), cfg.num_heads)

    def loss_fn(batch):
        ids, att, tgt = batch
        joint = trainer.step >= cfg.stage1_steps
        model.train(joint)
        with torch.set_grad_enabled(joint):
            hidden = model.base_model(input_ids=ids, attention_mask=att).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            head_logits = heads(hidden if joint else hidden.detach())
        l_heads, ce = medusa_loss(head_logits, tgt[..., 1:], weights)
        if not joint:
            return l_heads, ce
        mask = tgt[..., 0] >= 0
        with torch.no_grad():
            t_logits = teacher(input_ids=ids, attention_mask=att).logits[mask].float()
        s_logits = lm_head(hidden)[mask].float()
        kl = F.kl_div(F.log_softmax(s_logits, -1), F.log_softmax(t_logits, -1), log_target=True, reduction="batchmean")
        return kl + cfg.lambda0 * l_heads, torch.cat([kl.detach()[None], ce])

    t0 = time.time()
    trainer.run(total, batch_fn, loss_fn, head_params + backbone)
    model.eval()
    report = {
        "mode": "medusa2",
        "steps": total,
        "stage1_steps": cfg.stage1_steps,
        "train_samples": len(train),
        "val_samples": len(val),
        "seconds": round(time.time() - t0, 1),
        "world_size": trainer.world,
        "val_accuracy": _seq_accuracy(model, heads, val, cfg),
        "history": trainer.history,
    }
    if trainer.rank == 0:
        names = {id(p): n for n, p in model.named_parameters()}
        extra = {"base." + names[id(p)]: p for p in backbone}
        finish(heads, lm_head, cfg, out, base_name, report, extra_tensors=extra)
    return heads.eval(), report


@torch.no_grad()
def _seq_accuracy(model, heads, seqs, cfg):
    ids, att, tgt = _pad_batch(seqs, cfg.num_heads)
    hidden = model.base_model(input_ids=ids, attention_mask=att).last_hidden_state
    return head_accuracy(
        heads, hidden.reshape(-1, hidden.shape[-1]), tgt[..., 1:].reshape(-1, cfg.num_heads), bf16=cfg.bf16
    )


class _ParamBag(torch.nn.Module):
    """state_dict() of just the unfrozen backbone parameters (for checkpoints)."""

    def __init__(self, model, params):
        super().__init__()
        names = {id(p): n for n, p in model.named_parameters()}
        object.__setattr__(self, "_items", {names[id(p)]: p for p in params})

    def state_dict(self, *a, **k):
        return {n: p.detach().clone() for n, p in self._items.items()}

    def load_state_dict(self, state, strict=True):
        with torch.no_grad():
            for n, v in state.items():
                self._items[n].copy_(v)


def _unfreeze_last(model, n: int):
    """Unfreeze the last n transformer blocks (LoRA-free way to fit Medusa-2 on a CPU)."""
    blocks = None
    for mod in model.base_model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == model.config.num_hidden_layers:
            blocks = mod
            break
    if blocks is None:
        raise UsageError("cannot find the transformer blocks to unfreeze")
    params = []
    for block in list(blocks)[len(blocks) - n :] if n > 0 else []:
        for p in block.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


# ----------------------------------------------------------------------------- a whole run


def _answer_datastore(codec, o, out: Path) -> dict:
    from .data import answer_datastore
    from .options import DATASTORE_FILE

    if o.data != "sharegpt":
        raise UsageError("--datastore-only stores ShareGPT's answers: give --data sharegpt")
    out.mkdir(parents=True, exist_ok=True)
    store = answer_datastore(codec)
    path = store.save(out / DATASTORE_FILE)
    return {"datastore": str(path), "answers": store.sequences, "tokens": len(store)}


def run(options, *, base: str, out: Path, seed: int = 0, progress=None, log=print) -> dict:
    """Self-distillation (cached) then Medusa-1 or Medusa-2 training, as ``engine train medusa``.

    ``options`` is an :class:`engine_medusa.options.TrainOptions`. Single process or under
    torchrun (``torchrun --nproc_per_node 2 -m engine train medusa ...``, gloo on a CPU):
    ranks shard the batches and average gradients; rank 0 writes checkpoints and the heads.
    Returns the report (without the loss history).
    """
    from . import data
    from .base import canonical_base_name, load_base

    o = options
    base_name = canonical_base_name(base)
    model, codec = load_base(base)
    if o.datastore_only:
        return _answer_datastore(codec, o, out)
    rank, _ = dist_info()
    init = _initial_heads(o, model)  # refused before minutes of data, not after
    if o.data == "sharegpt":
        folder, extra = _teacher_forced(model, codec, o, base_name, seed, rank, progress, log)
    else:
        folder, extra = _self_distilled(model, codec, o, base_name, seed, rank, progress, log)
    if o.prepare_only:
        return extra
    samples = data.load_shards(folder)
    next(iter(extra.values()))["prompts"] = len(samples)
    same = ("mode", "kind", "epochs", "batch_size", "lr", "val_fraction", "checkpoint_every")
    same += ("unfreeze_last", "lambda0", "head_lr_mult", "stage1_steps")
    draft = {"warmup": 0.05, "betas": (0.9, 0.95)} if o.kind == "draft" else {}
    cfg = TrainConfig(
        draft_reg_weight=o.draft_reg_weight,
        draft_cls_weight=o.draft_cls_weight,
        draft_init=o.draft_init,
        **draft,
        num_heads=init.num_heads if init else o.heads,
        num_layers=init.num_layers if init else o.layers,
        share_lm_head=init.share_lm_head if init else not o.own_lm_head,
        draft_vocab=init.draft_vocab if init else o.draft_vocab,
        soft_targets=o.data == "sharegpt",
        max_steps=o.steps,
        seed=seed,
        bf16=not o.fp32,
        **{name: getattr(o, name) for name in same},
    )
    if cfg.kind == "draft":
        if o.mode != "medusa1":
            raise UsageError("a draft layer trains with the base frozen (--mode medusa1)")
        from .draft_layer import layer_shape

        _, report = train_draft(
            samples,
            model.get_output_embeddings(),
            model.get_input_embeddings(),
            layer_shape(model.config),
            cfg,
            out,
            base_name,
            resume=o.resume,
            progress=progress,
            log=log,
        )
    elif o.mode == "medusa1":
        _, report = train_medusa1(
            samples,
            model.get_output_embeddings(),
            cfg,
            out,
            base_name,
            embedding=model.get_input_embeddings(),
            init=init,
            resume=o.resume,
            progress=progress,
            log=log,
        )
    else:
        prompts = _distill_prompts(o, seed)[1]
        prompt_ids = {str(r.get("id")): codec.encode_prompt(r["prompt"]) for r in prompts}
        seqs = sequences_from(samples, prompt_ids, cfg.max_len)
        _, report = train_medusa2(model, seqs, cfg, out, base_name, resume=o.resume, progress=progress, log=log)
    report.update(extra)
    if rank == 0:
        _merge_log(out, extra)
        acc = report["val_accuracy"]
        log("per-head val top-1: " + " ".join(f"{x:.3f}" for x in acc["top1"]))
        log("per-head val top-5: " + " ".join(f"{x:.3f}" for x in acc["top5"]))
    if torch.distributed.is_initialized():  # gloo threads still running at exit can abort the process
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {k: v for k, v in report.items() if k != "history"}


def _initial_heads(o, model):
    """The heads ``--init-heads`` names (Medusa-1 heads of ``--kind``), or None."""
    if not o.init_heads:
        return None
    from .heads import load_heads

    heads, cfg = load_heads(o.init_heads, model)
    if cfg.get("kind", "medusa") != o.kind or o.kind == "draft" or o.mode != "medusa1":
        raise UsageError(
            f"--init-heads: {o.init_heads} holds {cfg.get('kind', 'medusa')} heads; fine-tuning takes Medusa or "
            f"Hydra heads of the --kind trained (here {o.kind}) with --mode medusa1"
        )
    return heads


def _answering_artifact(path: str, model):
    """The artifact at ``path`` (read and verified), refused in one line unless it was exported
    from ``model`` (the fingerprint of its LM head)."""
    from engine.artifacts import read_artifact

    from .base import lm_head_fingerprint

    artifact = read_artifact(path)
    theirs = (artifact.config.get("heads_config") or {}).get("lm_head_fingerprint")
    ours = lm_head_fingerprint(model.get_output_embeddings().weight)
    if theirs != ours:
        raise UsageError(
            f"--distill-artifact: {path} was exported from {artifact.config.get('base_model')} (LM head {theirs}), "
            f"not the base trained on (LM head {ours})"
        )
    return artifact


def _distill_backend(model, o, answering):
    """What writes the answers: the greedy loop of the artifact ``answering`` on onnxruntime, else
    the torch base in ``--distill-dtype``."""
    from .base import TorchBackend
    from .ort_path import OrtMedusaDecoder

    if answering is not None:  # --threads, as for torch
        return OrtMedusaDecoder(answering, provider="cpu", threads=torch.get_num_threads(), tree=[]).backend
    return TorchBackend(model if o.distill_dtype == "float32" else copy.deepcopy(model).to(torch.bfloat16), None)


def _distill_prompts(o, seed: int):
    from . import data
    from .options import parse_mix

    prompts_path = Path(o.prompts) if o.prompts else data.TRAIN_PROMPTS
    mix = parse_mix(o.mix)
    # ShareGPT conversations held back from training (measured on) are never answered for it either
    rows = [r for r in read_prompt_rows(prompts_path) if not data.held_back_prompt(r)]
    prompts = rows[: mix["all"]] if "all" in mix else data.select_prompts(rows, mix, seed)
    if not prompts:
        raise UsageError(f"no prompts selected from {prompts_path} with --mix {o.mix}")
    return prompts_path, prompts, mix


def _self_distilled(model, codec, o, base_name: str, seed: int, rank: int, progress, log):
    """The base's own greedy answers to training prompts (cached): folder and the log's record."""
    from . import data

    prompts_path, prompts, mix = _distill_prompts(o, seed)
    answering = _answering_artifact(o.distill_artifact, model) if o.distill_artifact else None
    digest = sha256_file(Path(o.distill_artifact) / "manifest.json")[:12] if answering else ""
    folder = data.distill_folder(base_name, prompts_path, mix, seed, o.max_new_tokens, o.distill_dtype, digest)
    if data.to_continue(folder, o.distill_minutes):
        if rank == 0:
            backend = _distill_backend(model, o, answering)
            log(f"self-distillation: {len(prompts)} prompts -> {folder}")
            data.distill(
                backend,
                codec,
                prompts,
                folder,
                max_new_tokens=o.max_new_tokens,
                batch_size=o.distill_batch,
                progress=progress,
                minutes=o.distill_minutes,
                one_at_a_time=answering is not None,
            )
            del backend  # the bf16 copy or the onnxruntime sessions: not needed for training
        _barrier()
    else:
        log(f"using cached self-distillation data {folder}")
    done = json.loads((folder / "DONE").read_text())
    record = {
        "folder": folder.name,
        "selected": len(prompts),
        "mix": mix,
        "batches": done.get("batches"),
        "complete": done.get("complete", True),
        "max_new_tokens": o.max_new_tokens,
        "prompts_file": prompts_path.name,
    }
    if answering is not None:  # which artifact answered: its manifest and quantization
        record["artifact"] = {"manifest_sha256": digest, **answering.config.get("quantization", {})}
    else:
        record["dtype"] = o.distill_dtype
    return folder, {"distill": record}


def _teacher_forced(model, codec, o, base_name: str, seed: int, rank: int, progress, log):
    """One bf16 forward of the base over ShareGPT conversations (cached, resumable)."""
    from . import data

    max_prompt, max_answer = data.TEACHER_LIMITS["max_prompt"], data.TEACHER_LIMITS["max_answer"]
    folder = data.teacher_folder(base_name, "train", seed, max_prompt, max_answer)
    done = folder / "DONE"
    if data.to_continue(folder, o.teacher_minutes):
        if rank == 0:
            rows = data.sharegpt_split(data.read_sharegpt(), "train", seed)
            log(f"teacher forcing: {len(rows)} ShareGPT conversations -> {folder}")
            gen = copy.deepcopy(model).to(torch.bfloat16)
            data.teacher_force(
                gen,
                codec,
                rows,
                folder,
                max_prompt=max_prompt,
                max_answer=max_answer,
                minutes=o.teacher_minutes,
                progress=progress,
            )
            del gen
        _barrier()
    else:
        log(f"using cached teacher-forced data {folder}")
    state = json.loads(done.read_text())
    record = {
        "folder": folder.name,
        "data": "sharegpt-v3 first turns, held-back 2% excluded",
        **state,
        "max_prompt": max_prompt,
        "max_answer": max_answer,
        "dtype": "bfloat16",
    }
    return folder, {"teacher_forced": record}


def _barrier():
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _merge_log(out: Path, extra: dict):
    path = out / "train_log.json"
    log = json.loads(path.read_text())
    log.update(extra)
    tmp = out / ".train_log.json.tmp"
    tmp.write_text(json.dumps(log, indent=1))
    os.replace(tmp, path)
