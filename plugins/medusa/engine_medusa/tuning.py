"""Tree optimisation: per-head rank accuracies on calibration prompts, a sparse tree grown
greedily, and its size chosen by the step latency measured on this device."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from engine.errors import UsageError

from .component import TREE_FILE, resolve_heads
from .drafting import Drafter
from .tree import build_tree, expected_accept, grow_tree

HYDRA_PATHS = 3  # paths per depth when timing Hydra heads (trees tuned here have 1-5 nodes per depth)
TUNE_PAST = 128  # cache length at which step latency is measured: the middle of a chat answer


def calibration_prompts(path, limit: int) -> list[str]:
    from engine.io.prompts import read_prompt_rows

    from .data import DEV_PROMPTS

    return [r["prompt"] for r in read_prompt_rows(path or DEV_PROMPTS, limit)]


def rank_accuracy(decoder, prompts, max_new_tokens: int, ranks: int = 10, batch: int = 4, progress=None):
    """acc[k, r]: how often head k+1's rank-r token is the base's greedy token k+2 steps on,
    measured on the base's own greedy continuations of the prompts, on the back end that will
    decode (torch or onnxruntime). Hydra heads read the greedy tokens as their paths: the
    accuracy of a node given that its ancestors were accepted, which is what a tree needs."""
    from .data import RecordingBackend, head_paths, head_targets

    backend = decoder.backend
    rec, k = RecordingBackend(backend), backend.num_heads
    hits, seen = np.zeros((k, ranks)), np.zeros(k)
    chunks = [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
    for chunk in progress(chunks, total=len(chunks), desc="calibration") if progress else chunks:
        rows, hid = rec.greedy([decoder.encode(p) for p in chunk], max_new_tokens, decoder.codec.eos_ids)
        for b, r in enumerate(rows):
            tokens = np.asarray(r.tokens, np.int64)
            h = hid[b, : len(tokens)].astype(np.float32)
            if backend.drafting:
                top = draft_ranks(backend, tokens, h, k, ranks)
            elif backend.sequential_heads:
                paths = head_paths(tokens, k)
                top = np.stack([backend.hydra_topk_of(h, i, paths[:, : i + 1], ranks) for i in range(k)], axis=1)
            else:
                top = backend.topk_of(h, ranks)
            targets = head_targets(tokens, k)
            valid = targets >= 0
            hits += ((top == targets[..., None]) & valid[..., None]).sum(0)
            seen += valid.sum(0)
    acc = hits / np.maximum(seen, 1)[:, None]
    return acc, {"top1": acc[:, 0].tolist(), "top5": acc[:, :5].sum(1).tolist(), "positions": int(seen[0])}


def draft_ranks(backend, tokens: np.ndarray, hidden: np.ndarray, depth: int, ranks: int) -> np.ndarray:
    """top[j, s]: the draft's top `ranks` token ids at step s of the chain that starts after
    token j, drafted along the base's own tokens (what a tree needs: a node's accuracy given
    its ancestors were accepted); -1 past the end. hidden[j] is the feature that chose tokens[j]."""
    m = len(tokens)
    top = np.full((m, depth, ranks), -1, np.int64)
    chain = build_tree([[0] * d for d in range(1, depth + 1)], ranks)
    for j in range(m - 1):
        drafter = Drafter(backend, 1)
        drafter.accept(hidden[None, : j + 1], tokens[None, : j + 1], np.ones((1, j + 1), bool))
        for s in range(min(depth, m - 1 - j)):
            top[j, s] = drafter.topk_at(chain, s, tokens[None, None, j : j + s + 1], [s], ranks)[0, 0]
    return top


def _time_draft(backend, depth: int, topk: int, past: int) -> None:
    """A draft chain `depth` deep after `past` accepted pairs (the cache filled with noise)."""
    heads, dim = backend.draft_kv_shape
    drafter = Drafter(backend, 1)
    drafter.k = drafter.v = np.zeros((1, heads, past, dim), np.float32)
    drafter.valid = np.ones((1, past), bool)
    drafter.next_pos[:] = past
    width = backend.hidden.shape[-1]
    drafter.accept(np.zeros((1, 1, width), np.float32), np.full((1, 1), 3), np.ones((1, 1), bool))
    chain = build_tree([[0] * d for d in range(1, depth + 1)], topk)
    for s in range(depth):
        drafter.topk_at(chain, s, np.full((1, 1, s + 1), 3, np.int64), [s], topk)


def step_latency(backend, sizes, depths=(), topk: int = 10, past: int = TUNE_PAST, repeats: int = 15):
    """Median seconds of one forward of q tree tokens (+ the cache gather) after `past` tokens,
    and of the heads' top-k for a tree d deep. Sizes are timed in turn within each round, so a
    change in machine load hits all of them alike."""
    rng = np.random.default_rng(0)
    backend.reset()
    backend.forward(rng.integers(3, 90, (1, past)), np.arange(past)[None], np.tril(np.ones((past, past), bool))[None])
    times = {q: [] for q in sizes}
    head_times = {d: [] for d in depths}
    for _ in range(repeats + 1):  # the first round warms up
        for q in sizes:
            allowed = np.concatenate([np.ones((1, q, past), bool), np.tril(np.ones((q, q), bool))[None]], 2)
            t = time.perf_counter()
            backend.forward(rng.integers(3, 90, (1, q)), past + np.arange(q)[None], allowed)
            if q > 1:  # a tree step keeps its accepted nodes; plain decoding keeps all (no gather)
                backend.keep(np.concatenate([np.arange(past), [past + q - 1]])[None])
            times[q].append(time.perf_counter() - t)
            backend.keep(np.arange(past)[None])  # back to the same past
        for d in depths:
            t = time.perf_counter()
            at = np.zeros(1, np.int64)  # a query of the last forward
            if backend.drafting:
                _time_draft(backend, d, topk, past)
            elif backend.sequential_heads:  # one Hydra call per depth, a few paths each as in a tuned tree
                for head in range(d):
                    backend.path_topk(at, head, np.full((1, HYDRA_PATHS, head + 1), 3, np.int64), topk)
            else:
                backend.head_topk(at, topk, d)
            head_times[d].append(time.perf_counter() - t)
    return (
        {q: float(np.median(ts[1:])) for q, ts in times.items()},
        {d: float(np.median(ts[1:])) for d, ts in head_times.items()},
    )


def choose_tree(
    acc: np.ndarray,
    latency: dict[int, float],
    max_nodes: int,
    head_latency: dict | None = None,
    chains=False,
    extra_rows: int = 0,
):
    """Largest expected speed = expected tokens per step / (Medusa step / plain decode step).
    A Medusa step is the tree forward plus the heads a tree that deep reads (plain decoding
    runs none), so trees are grown for every depth limit: a shallow tree can win on cost.
    ``chains``: only one node per depth, each the top-ranked child of the one before (over a
    quantized base only a chain keeps the greedy loop's tokens: ``ort_path`` capabilities).
    ``extra_rows``: a retrieved chain's rows, verified with every tree (its tokens are not counted)."""
    head_latency = head_latency or {}
    table, seen = [], set()
    for depth in range(1, acc.shape[0] + 1):
        for size in (0, depth) if chains else range(0, max_nodes):
            q = size + 1
            tree = [[0] * (i + 1) for i in range(size)] if chains else grow_tree(acc[:depth], size)
            if q + extra_rows not in latency or str(tree) in seen:
                continue
            seen.add(str(tree))
            e = expected_accept(tree, acc)
            cost = latency[q + extra_rows] + head_latency.get(max(map(len, tree), default=0), 0.0)
            row = {"nodes": q, "depth": max(map(len, tree), default=0), "expected_tokens_per_step": round(e, 3)}
            row.update(relative_step_cost=round(cost / latency[1], 3), expected_speedup=round(e * latency[1] / cost, 3))
            table.append({**row, "choices": tree})
    best = max(table, key=lambda r: r["expected_speedup"])
    return best, table


def write_tree(folder: Path, payload: dict) -> Path:
    """torch trees go to the top level, others under their backend's key (kept on rewrite)."""
    path = Path(folder) / TREE_FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    if payload["tuned_on"] == "torch":
        new = {**payload, **{k: v for k, v in old.items() if k == "onnxruntime"}}
    else:
        new = {**old, payload["tuned_on"]: payload}
    tmp = path.with_name(f".{TREE_FILE}.tmp")
    tmp.write_text(json.dumps(new, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def main(argv, ctx):
    """``engine medusa tune-tree ...`` (an extra verb of the plugin)."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: engine medusa tune-tree [options]   (see engine medusa tune-tree --help)")
        return 0 if argv else 2
    if argv[0] != "tune-tree":
        raise UsageError(f"unknown medusa command {argv[0]!r} (known: tune-tree)")
    ctx.prog = f"{ctx.prog} tune-tree"
    return tune_tree(argv[1:], ctx)


def tune_tree(argv, ctx):
    from engine.cli import ArgumentParser

    p = ArgumentParser(
        prog=ctx.prog,
        description="Measure the heads' rank accuracies on calibration prompts, grow sparse trees and choose "
        "the fastest by the step latency measured on this device; the tree is cached for this device in the "
        "user's cache directory, keyed by the artifact (or heads) digest, and decoding uses it from then on.",
        allow_abbrev=False,
    )
    p.add_argument("--artifact", "--onnx", dest="artifact", default=None, help="tune for this artifact (onnxruntime)")
    p.add_argument("--heads", default="default", help="without --artifact: heads folder or 'default' (torch)")
    p.add_argument("--model", default=None, help="base model of the heads (default: the heads' base)")
    p.add_argument("--provider", default="auto", help="onnxruntime provider (auto, cpu, cuda)")
    p.add_argument("--prompts", default=None, help="calibration JSONL (default: shared dev.jsonl)")
    p.add_argument("--limit", type=int, default=16, help="calibration prompts")
    p.add_argument(
        "--skip",
        type=int,
        default=10,
        help="skip the first N calibration prompts (the bench uses the first 10 dev prompts)",
    )
    p.add_argument("--max-new-tokens", type=int, default=96, help="tokens per calibration answer")
    p.add_argument("--max-nodes", type=int, default=24, help="largest tree tried, root included")
    p.add_argument(
        "--past",
        type=int,
        default=TUNE_PAST,
        help="cache length at which step latency is measured (a chat answer's middle)",
    )
    p.add_argument("--topk", type=int, default=None, help="ranks per head a tree may use (default: the artifact's, 10)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: $ENGINE_THREADS)")
    p.add_argument("--dry-run", action="store_true", help="print the tree, do not store it")
    p.add_argument(
        "--any-tree",
        action="store_true",
        help="with a quantized artifact, also try trees with siblings (faster at times, but then Medusa's "
        "tokens may leave the quantized greedy loop's; by default only chains are tried)",
    )
    p.add_argument(
        "--write-heads",
        action="store_true",
        help="also store the tree with the heads (tree.json: how a default is made)",
    )
    a = p.parse_args(argv)
    dec, folder = _tuning_decoder(a)
    prompts = calibration_prompts(a.prompts, a.skip + a.limit)[a.skip :]
    if not prompts:
        raise UsageError(f"no calibration prompts left after skipping {a.skip}")
    topk = a.topk or (dec.artifact.config["topk"] if a.artifact else 10)
    acc, raw = rank_accuracy(dec, prompts, a.max_new_tokens, topk, progress=ctx.progress)
    sizes = sorted({1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32} & set(range(1, a.max_nodes + 1)))
    chain = int(dec.artifact.config.get("chain") or 0) if a.artifact else 0  # stored with an artifact's tree only
    sizes = sorted({*sizes, *(q + chain for q in sizes)})  # a retrieved chain's rows come on top of a tree's
    latency, head_latency = step_latency(dec.backend, sizes, range(1, acc.shape[0] + 1), topk, a.past)
    chains = bool(a.artifact and dec.artifact.config.get("quantization")) and not a.any_tree
    best, table = choose_tree(acc, latency, a.max_nodes, head_latency, chains=chains, extra_rows=chain)
    payload = {
        "choices": best["choices"],
        "topk": topk,
        "tuned_on": dec.backend_name,
        "device": dec.device,
        "threads": dec.threads,
        "subject": dec.subject,
        "expected_tokens_per_step": best["expected_tokens_per_step"],
        "expected_speedup": best["expected_speedup"],
        "chains_only": chains,
        "rank_accuracy": np.round(acc, 4).tolist(),
        "calibration": {
            "prompts": len(prompts),
            "skip": a.skip,
            "max_new_tokens": a.max_new_tokens,
            "positions": raw["positions"],
        },
        "latency_ms": {str(k): round(v * 1e3, 2) for k, v in latency.items()},
        "heads_latency_ms": {str(k): round(v * 1e3, 2) for k, v in head_latency.items()},
        "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "candidates": [{k: v for k, v in r.items() if k != "choices"} for r in table],
    }
    if not a.dry_run:
        from engine.tuned import store_tuned

        ctx.echo(f"wrote {store_tuned('medusa', dec.subject, dec.device, payload)}")
        if a.write_heads:  # with --artifact: the heads the artifact was exported from (--heads)
            ctx.echo(f"wrote {write_tree(folder or resolve_heads(a.heads), payload)}")
    keys = ("choices", "tuned_on", "device", "expected_tokens_per_step", "expected_speedup", "latency_ms")
    return {k: payload[k] for k in keys}


def _tuning_decoder(a):
    """The decoder to tune (no tree: plain decoding) and the heads folder (torch) or None."""
    if a.artifact:
        from engine.artifacts import read_artifact

        from .ort_path import OrtMedusaDecoder

        return OrtMedusaDecoder(read_artifact(a.artifact), provider=a.provider, threads=a.threads, tree=[]), None
    from .torch_path import MedusaDecoder

    folder = resolve_heads(a.heads)
    if folder is None:
        raise UsageError("tune-tree needs heads")
    return MedusaDecoder(model=a.model, heads=folder, tree=[], threads=a.threads), folder


def evaluate_heads(decoder, prompts_path, limit, max_new_tokens, progress=None):
    """Per-head accuracies on the base's greedy continuations + measured Medusa tokens/step."""
    if decoder.heads is None:
        raise UsageError("evaluation needs heads")
    prompts = calibration_prompts(prompts_path, limit)
    acc, raw = rank_accuracy(decoder, prompts, max_new_tokens, progress=progress)
    from engine.interfaces import GenerationConfig

    tokens = steps = 0
    for p in prompts:
        r = decoder.generate(p, GenerationConfig(max_new_tokens=max_new_tokens))
        tokens, steps = tokens + r.stats.new_tokens, steps + r.stats.steps
    return {
        "top1": [round(x, 4) for x in raw["top1"]],
        "top5": [round(x, 4) for x in raw["top5"]],
        "positions": raw["positions"],
        "tokens_per_step": round(tokens / steps, 3),
        "expected_tokens_per_step": round(expected_accept(decoder.tree.choices if decoder.tree else [], acc), 3),
        "prompts": len(prompts),
    }
