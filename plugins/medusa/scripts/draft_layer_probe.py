"""Probe: does a one-layer autoregressive draft (engine_medusa.draft_layer) propose the base's
tokens better than the default Hydra heads? Trained on the same teacher-forced ShareGPT cache
and measured on the same held-back split, with the same measures plus the chain estimate
(1 + the expected number of consecutive draft tokens equal to the base's greedy tokens).

    python scripts/draft_layer_probe.py eval OUT.json DRAFT_HEADS_DIR|hydra:HEADS_DIR ... [--bench-prompts 10]
    python scripts/draft_layer_probe.py save RUN_DIR HEADS_DIR

`save` turns a run of the first version of this script (a `draft.pt`, trained by the loop that
is now `engine train medusa --kind draft`, which gives the same losses step for step), or the
last checkpoint of a packaged run, into a heads folder.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from engine_medusa import data
from engine_medusa.base import DEFAULT_BASE, canonical_base_name, load_base
from engine_medusa.draft_layer import DraftHeads, layer_shape
from engine_medusa.heads import heads_config, load_heads, save_heads
from engine_medusa.training import draft_hits, flatten_positions

torch.set_num_threads(1)


def base_parts():
    model, _ = load_base(DEFAULT_BASE)
    return model, model.get_output_embeddings(), model.get_input_embeddings()


def chain_report(correct: np.ndarray) -> dict:
    """correct [S, P] (step s right at chain start P) -> top-1 per step and 1 + sum of chain rates."""
    chain = np.cumprod(correct, 0)
    return {
        "top1": [round(float(x), 4) for x in correct.mean(1)],
        "chain": [round(float(x), 4) for x in chain.mean(1)],
        "tokens_per_step_estimate": round(1 + float(chain.mean(1).sum()), 4),
        "chain_starts": int(correct.shape[1]),
    }


def eval_draft(folder, samples, model) -> np.ndarray:
    heads, _ = load_heads(folder, model)
    return draft_hits(heads.float().eval(), samples)


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
    model = base_parts()[0]
    if args.bench_prompts:
        cache = Path("runs") / f"{Path(args.out).stem}.greedy.npz"  # hidden states: not for git
        samples = greedy_samples(cache, args.bench_prompts, 128)
    else:
        samples = data.heldout_samples(model, None, canonical_base_name(DEFAULT_BASE))
    report = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for what in args.what:
        t0 = time.time()
        if what.startswith("hydra:"):
            ok = eval_hydra(what[6:], samples, model, args.streams)
        else:
            ok = eval_draft(what, samples, model)[: args.streams]
        walk = {
            f"chain_{d}": round(decode_walk(ok, [len(x[1]) for x in samples], d), 4) for d in range(1, args.streams + 1)
        }
        report[what] = chain_report(ok) | {"tokens_per_step_walk": walk, "seconds": round(time.time() - t0, 1)}
        print(what, json.dumps(report[what]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


def save(args):
    """A draft run as a heads folder (kind "draft") the decoders load: a run of the probe's first
    version (`draft.pt`), or the last checkpoint of `engine train medusa --kind draft` (a look
    part-way through a run, whose learning rate has not decayed yet)."""
    model, lm_head, emb = base_parts()
    shape = layer_shape(model.config)
    run = Path(args.run)
    if (run / "draft.pt").is_file():
        state = torch.load(run / "draft.pt")
        heads = DraftHeads(lm_head, state["streams"], state["subset"], embedding=emb, **shape)
        heads.layer.load_state_dict(state["layer"])
        history = state["history"]
        training = {"probe_run": run.name, "steps": history[-1]["step"], "seconds": history[-1]["seconds"]}
    else:
        state = torch.load(run / "checkpoint.pt", weights_only=False)
        weights = state["modules"]["heads"]
        heads = DraftHeads(lm_head, state["cfg"]["num_heads"], weights["vocab_subset"], embedding=emb, **shape)
        heads.load_state_dict(weights)
        training = {"run": run.name, "checkpoint_step": state["step"], "of_steps": state["cfg"]["max_steps"]}
    info = {"draft_layer": shape, "training": training}
    save_heads(args.heads, heads, heads_config(heads, canonical_base_name(DEFAULT_BASE), lm_head.weight, **info))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
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
    v = sub.add_parser("save")
    v.add_argument("run")
    v.add_argument("heads")
    a = p.parse_args()
    {"eval": evaluate, "save": save}[a.cmd](a)
