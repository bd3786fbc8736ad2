"""Probe: does a one-layer autoregressive draft (engine_medusa.draft_layer) propose the base's
tokens better than the default Hydra heads? Trained on the same teacher-forced ShareGPT cache
and measured on the same held-back split, with the same measures plus the chain estimate
(1 + the expected number of consecutive draft tokens equal to the base's greedy tokens).

    python scripts/draft_layer_probe.py train OUT_DIR --steps N [--streams 4]   (resumable)
    python scripts/draft_layer_probe.py eval OUT.json DRAFT_DIR_OR_hydra:HEADS_DIR
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from engine_medusa import data
from engine_medusa.base import DEFAULT_BASE, canonical_base_name, load_base
from engine_medusa.draft_layer import DraftLayer, stream_forward
from engine_medusa.heads import load_heads
from engine_medusa.training import cosine_lr, flatten_positions, frequent_tokens, split_samples

from engine.checkpoints import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
STREAM_WEIGHT = 0.8  # stream s's loss weighs 0.8^s (later draft steps matter less)


def base_parts():
    model, _ = load_base(DEFAULT_BASE)
    return model, model.get_output_embeddings(), model.get_input_embeddings()


def rope_theta(cfg) -> float:
    return (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or getattr(cfg, "rope_theta", 10000.0)


def train_samples():
    lim = data.TEACHER_LIMITS
    folder = data.teacher_folder(canonical_base_name(DEFAULT_BASE), "train", 0, lim["max_prompt"], lim["max_answer"])
    return split_samples(data.load_shards(folder), 0.05, 0)


def batch_of(samples, rng, batch: int, length: int):
    """Random windows of `length` answer positions from `batch` random conversations (padded)."""
    picks = [samples[i] for i in rng.integers(0, len(samples), batch)]
    d = picks[0][2].shape[1]
    hid, tok, grd = (
        np.zeros((batch, length, d), np.float16),
        np.zeros((batch, length), np.int64),
        np.zeros((batch, length), np.int64),
    )
    valid = np.zeros((batch, length), bool)
    for b, (_, t, h, g) in enumerate(picks):
        a = int(rng.integers(0, max(1, len(t) - length + 1)))
        m = min(length, len(t) - a)
        hid[b, :m], tok[b, :m], grd[b, :m], valid[b, :m] = h[a : a + m], t[a : a + m], g[a : a + m], True
    return torch.from_numpy(hid).float(), torch.from_numpy(tok), torch.from_numpy(grd), torch.from_numpy(valid)


def targets_of(valid, streams: int):
    """mask[s, b, p]: stream s at p has a chain (p - s >= 0) and a target (p + 1 valid)."""
    n = valid.shape[1]
    nxt = F.pad(valid[:, 1:], (0, 1), value=False)
    pos = torch.arange(n)
    return torch.stack([nxt & (pos >= s)[None] for s in range(streams)])


def draft_logits(out, weight):
    return F.linear(out, weight)


def train(args):
    model, lm_head, emb = base_parts()
    tr, _ = train_samples()
    subset = frequent_tokens(tr, 8192, lm_head.weight.shape[0])
    w_sub = lm_head.weight.detach()[subset]
    cfg = model.config
    torch.manual_seed(0)
    layer = DraftLayer(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, rope_theta(cfg))
    opt = torch.optim.AdamW(layer.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, step, history = out / "checkpoint.pt", 0, []
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        layer.load_state_dict(state["layer"])
        opt.load_state_dict(state["opt"])
        step, history = state["step"], state["history"]
    t0 = time.time()
    while step < args.steps:
        rng = np.random.default_rng([0, step])  # the batch depends on the step only: exact resume
        hid, tok, grd, valid = batch_of(tr, rng, args.batch, args.length)
        for g in opt.param_groups:
            g["lr"] = args.lr * cosine_lr(step, args.steps, args.steps // 20)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs = stream_forward(layer, hid, emb(tok).detach(), valid, args.streams)
            logits = draft_logits(outs, w_sub).float()
        mask = targets_of(valid, args.streams)
        target_h = F.pad(hid[:, 1:], (0, 0, 0, 1))
        with torch.no_grad():
            teacher = F.linear(target_h, w_sub).softmax(-1)
        ce = -(teacher * logits.log_softmax(-1)).sum(-1)  # [S, B, L]
        reg = F.smooth_l1_loss(outs.float(), target_h.expand_as(outs), reduction="none").mean(-1)
        per = ((args.reg_weight * reg + args.cls_weight * ce) * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)
        loss = (STREAM_WEIGHT ** torch.arange(args.streams) * per).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(layer.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0 or step == args.steps:
            history.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "ce": [round(x, 3) for x in ((ce * mask).sum((1, 2)) / mask.sum((1, 2))).tolist()],
                    "seconds": round(time.time() - t0, 1),
                }
            )
            print(json.dumps(history[-1]), flush=True)
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(
                {"layer": layer.state_dict(), "opt": opt.state_dict(), "step": step, "history": history}, ckpt
            )
    torch.save(
        {"layer": layer.state_dict(), "subset": subset, "streams": args.streams, "history": history}, out / "draft.pt"
    )


def chain_report(correct: np.ndarray) -> dict:
    """correct [S, P] (step s right at chain start P) -> top-1 per step and 1 + sum of chain rates."""
    chain = np.cumprod(correct, 0)
    return {
        "top1": [round(float(x), 4) for x in correct.mean(1)],
        "chain": [round(float(x), 4) for x in chain.mean(1)],
        "tokens_per_step_estimate": round(1 + float(chain.mean(1).sum()), 4),
        "chain_starts": int(correct.shape[1]),
    }


def eval_draft(folder, samples, model, emb, streams: int) -> np.ndarray:
    state = torch.load(Path(folder) / "draft.pt")
    cfg = model.config
    layer = DraftLayer(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, rope_theta(cfg))
    layer.load_state_dict(state["layer"])
    w_sub = model.get_output_embeddings().weight.detach()[state["subset"]]
    rows = []
    for _, t, h, g in samples:
        m = len(t)
        with torch.no_grad():
            outs = stream_forward(
                layer,
                torch.from_numpy(h).float()[None],
                emb(torch.from_numpy(t).long())[None],
                torch.ones(1, m, dtype=torch.bool),
                streams,
            )
        pred = state["subset"][draft_logits(outs[:, 0], w_sub).argmax(-1)].numpy()  # [S, m]: at p predicts p + 1
        # chain start j: step s is stream s at p = j + s, right if it equals greedy[j + s + 1]
        ok = np.zeros((streams, m), bool)
        for s in range(streams):
            j = np.arange(0, m - s - 1)
            ok[s, j] = pred[s, j + s] == g[j + s + 1]
        rows.append(ok)
    return np.concatenate(rows, 1)


def eval_hydra(folder, samples, model, streams: int) -> np.ndarray:
    heads, _ = load_heads(folder, model)
    heads = heads.float().eval()
    pos = flatten_positions(samples, heads.num_heads)
    with torch.no_grad():
        logits = heads(pos.hidden.float(), pos.paths)
        pred = heads.token_ids(logits.argmax(-1)).numpy()  # [P, K]
    return (pred == pos.targets.numpy()).T[:streams]


def greedy_samples(path: Path, prompts: int, new_tokens: int):
    """The base's own greedy answers to the bench's prompts (dev 1-N, chat template) and the hidden
    state predicting each token, in the cache's layout (cached in `path`)."""
    if path.is_file():
        with np.load(path) as z:
            off = z["offsets"]
            return [
                (str(i), z["tokens"][a:b], z["hidden"][a:b], z["tokens"][a:b])
                for i, (a, b) in enumerate(zip(off[:-1], off[1:], strict=True))
            ]
    from engine_medusa.data import RecordingBackend
    from engine_medusa.torch_path import MedusaDecoder
    from engine_medusa.tuning import calibration_prompts

    dec = MedusaDecoder(heads="none", tree=[])
    rec = RecordingBackend(dec.backend)
    out = []
    for p in calibration_prompts(None, prompts):
        rows, hid = rec.greedy([dec.encode(p)], new_tokens, dec.codec.eos_ids)
        t = np.asarray(rows[0].tokens, np.int64)
        out.append((str(len(out)), t, hid[0, : len(t)], t))
    np.savez(
        path,
        tokens=np.concatenate([s[1] for s in out]),
        hidden=np.concatenate([s[2] for s in out]),
        offsets=np.cumsum([0] + [len(s[1]) for s in out]),
    )
    return out


def decode_walk(ok: np.ndarray, lengths, depth: int) -> float:
    """Tokens per verification step of chain decoding with `depth` draft tokens: from each
    state the base accepts the draft's run of right tokens plus its own next token (the prefill
    counts as the first step, as the bench counts it)."""
    tokens = steps = 0
    start = 0
    for m in lengths:
        n, steps = 0, steps + 1  # the prefill gives token 0
        while n < m - 1:
            a = 0
            while a < depth and ok[a, start + n]:
                a += 1
            n, steps = n + a + 1, steps + 1
        tokens, start = tokens + m, start + m
    return tokens / steps


def evaluate(args):
    model, _, emb = base_parts()
    if args.bench_prompts:
        samples = greedy_samples(Path(args.out).with_suffix(".greedy.npz"), args.bench_prompts, 128)
    else:
        samples = data.heldout_samples(model, None, canonical_base_name(DEFAULT_BASE))
    report = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for what in args.what:
        t0 = time.time()
        if what.startswith("hydra:"):
            ok = eval_hydra(what[6:], samples, model, args.streams)
        else:
            ok = eval_draft(what, samples, model, emb, args.streams)
        walk = {
            f"chain_{d}": round(decode_walk(ok, [len(x[1]) for x in samples], d), 4) for d in range(1, args.streams + 1)
        }
        report[what] = chain_report(ok) | {"tokens_per_step_walk": walk, "seconds": round(time.time() - t0, 1)}
        print(what, json.dumps(report[what]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--streams", type=int, default=4)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--length", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--checkpoint-every", type=int, default=50)
    # EAGLE's loss: feature regression + 0.1 x token cross-entropy
    t.add_argument("--reg-weight", type=float, default=1.0)
    t.add_argument("--cls-weight", type=float, default=0.1)
    e = sub.add_parser("eval")
    e.add_argument("out")
    e.add_argument("what", nargs="+")
    e.add_argument("--streams", type=int, default=4)
    e.add_argument(
        "--bench-prompts",
        type=int,
        default=0,
        help="the base's greedy answers to dev prompts 1-N instead of the held-back split",
    )
    a = p.parse_args()
    train(a) if a.cmd == "train" else evaluate(a)
