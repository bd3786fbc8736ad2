"""Self-distillation data: the base model answers training prompts; answers + final hidden
states are cached on disk (sharded .npz) and reused by Medusa-1/Medusa-2 training."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np

from engine.datasets import shared_data
from engine.errors import UsageError

from .decoding import Policy, medusa_generate

TRAIN_PROMPTS = shared_data("prompts", "train.jsonl")
DEV_PROMPTS = shared_data("prompts", "dev.jsonl")


def read_prompts(path, limit: int | None = None) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no prompt file {path}")
    rows = []
    # "\n" only: str.splitlines() also splits at U+2028 and U+0085, which JSON strings may hold raw
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{path}:{n}: not valid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise UsageError(f"{path}:{n}: each line needs a non-empty 'prompt' string")
        rows.append(row)
        if limit and len(rows) == limit:  # what lies beyond is not read (a large file may be broken further on)
            break
    return rows


def select_prompts(rows: list[dict], per_category: dict[str, int], seed: int = 0, max_chars: int = 1200) -> list[dict]:
    """A seeded sample of prompts per category (train.jsonl is 83% math: balance it)."""
    rng = random.Random(seed)
    out = []
    for cat, n in per_category.items():
        pool = [r for r in rows if r.get("category") == cat and len(r["prompt"]) <= max_chars]
        rng.shuffle(pool)
        out += pool[:n]
    rng.shuffle(out)
    return out


class RecordingBackend:
    """Wraps a backend and records the final hidden state of the last query of each forward
    (for plain decoding that is the hidden state of the token just fed)."""

    def __init__(self, inner):
        self.inner = inner
        self.records: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def reset(self):
        self.records = []
        self.inner.reset()

    def forward(self, ids, positions, allowed, **kw):
        logits = self.inner.forward(ids, positions, allowed, **kw)
        self.records.append(self.inner.last_hidden().astype(np.float16))
        return logits

    def greedy(self, ids: list[list[int]], max_new_tokens: int, eos_ids) -> tuple[list, np.ndarray]:
        """Plain greedy answers to ``ids`` and the hidden state of every step, [B, steps, d]."""
        rows, _ = medusa_generate(
            self,
            ids,
            tree=None,
            policy=Policy(),
            max_new_tokens=max_new_tokens,
            decode=lambda t: "",
            eos_ids=eos_ids,
        )
        return rows, np.stack(self.records, axis=1)


def cache_key(**params) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def write_shard(folder: Path, index: int, answers: list[list[int]], hidden: list[np.ndarray], ids: list[str]) -> Path:
    offsets = np.cumsum([0] + [len(a) for a in answers]).astype(np.int64)
    path = folder / f"shard_{index:05d}.npz"
    tmp = folder / f".tmp_{index:05d}.npz"
    np.savez(
        tmp,
        tokens=np.concatenate([np.asarray(a, np.int32) for a in answers]),
        hidden=np.concatenate(hidden).astype(np.float16),
        offsets=offsets,
        ids=np.asarray(ids),
    )
    os.replace(tmp, path)
    return path


def load_shards(folder: Path):
    """-> list of (prompt id, answer tokens [m], hidden [m, d] fp16)."""
    samples = []
    for path in sorted(Path(folder).glob("shard_*.npz")):
        z = np.load(path)
        off = z["offsets"]
        for i, sid in enumerate(z["ids"]):
            samples.append((str(sid), z["tokens"][off[i] : off[i + 1]], z["hidden"][off[i] : off[i + 1]]))
    return samples


def distill(
    backend,
    codec,
    prompts: list[dict],
    folder: Path,
    *,
    max_new_tokens: int,
    batch_size: int,
    progress=None,
    minutes: float | None = None,
) -> Path:
    """Generate greedy answers in batches, one shard per batch; finished shards are reused
    (so an interrupted run resumes where it stopped). With `minutes`, generation stops when
    that budget is spent and the data set is closed with the shards written so far."""
    import time

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rec = RecordingBackend(backend)
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    it = range(len(batches))
    if progress:
        it = progress(it, total=len(batches), desc="self-distillation")
    for bi in it:
        if (folder / f"shard_{bi:05d}.npz").exists():
            continue
        if minutes is not None and time.monotonic() - t0 > minutes * 60:
            break
        batch = sorted(batches[bi], key=lambda r: len(r["prompt"]))
        ids = [codec.encode_prompt(r["prompt"]) for r in batch]
        rows, hid = rec.greedy(ids, max_new_tokens, codec.eos_ids)
        answers = [r.tokens for r in rows]
        write_shard(
            folder, bi, answers, [hid[b, : len(a)] for b, a in enumerate(answers)], [str(r.get("id")) for r in batch]
        )
    shards = len(list(folder.glob("shard_*.npz")))
    (folder / "DONE").write_text(
        json.dumps({"batches": shards, "of": len(batches), "complete": shards == len(batches)})
    )
    return folder


DEFAULT_MIX = {"chat": 427, "code": 300, "math": 250}


def cache_root() -> Path:
    return Path(os.environ.get("ENGINE_MEDUSA_CACHE", Path.home() / ".cache" / "engine-medusa"))


def distill_folder(base: str, prompts_path, mix: dict, seed: int, max_new_tokens: int, dtype: str = "bfloat16") -> Path:
    digest = hashlib.sha256(Path(prompts_path).read_bytes()).hexdigest()[:12]
    key = cache_key(base=base, prompts=digest, mix=mix, seed=seed, max_new=max_new_tokens)
    return cache_root() / "distill" / (key + ("-bf16" if dtype == "bfloat16" else ""))
