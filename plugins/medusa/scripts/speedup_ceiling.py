"""What issue 11's targets ask of the drafts on this device, from a tree tuning's stored payload
(`engine medusa tune-tree` writes it under the user's cache directory; `--max-nodes 32` for the
largest trees it times). Per tree size: the Medusa step's cost measured here relative to a plain
decoding step (tree forward + the heads a tree that deep reads), so the tokens per step a tree that
size must give for the speed-up target; the most any tree the tuner grows from these heads' rank
accuracies is expected to give; and the acceptance per draft a chain that size would need (every
draft accepted with the same probability a, given its parent was: 1 + a + ... + a^(n-1) tokens).

With ``--measure ARTIFACT`` the trees the tuner grows from those rank accuracies at a few sizes
also decode the bench's prompts (dev 1-10, 128 tokens, prompt lookup as by default) and their
tokens per step are counted: the estimate is made on other prompts (dev 11-26).

    python scripts/speedup_ceiling.py TUNED.json [--speedup 1.6] [--tokens 2.2] [--measure ART] > scripts/results/X.json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from chain_acceptance import prompt_sets, tokens_per_step
from engine_medusa.ort_path import OrtMedusaDecoder
from engine_medusa.tree import expected_accept, grow_tree

from engine.artifacts import read_artifact

MEASURED_SIZES = (5, 8, 16, 32)


def chain_acceptance_needed(tokens: float, nodes: int) -> float | None:
    """The a with 1 + a + ... + a^(nodes-1) = tokens (bisection), None if even a = 1 falls short."""
    if tokens > nodes:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(60):
        a = (lo + hi) / 2
        lo, hi = (a, hi) if sum(a**i for i in range(nodes)) < tokens else (lo, a)
    return round(hi, 3)


def ceiling(tuned: dict, speedup: float, tokens: float) -> dict:
    latency = {int(k): v for k, v in tuned["latency_ms"].items()}
    heads = {int(k): v for k, v in tuned["heads_latency_ms"].items()}
    plain = latency[1]
    rows = []
    for n in sorted(latency):
        grown = [c for c in tuned["candidates"] if c["nodes"] == n]
        best = max(grown, key=lambda c: c["expected_speedup"], default=None)
        chain_cost = (latency[n] + heads.get(n - 1, 0.0)) / plain if n - 1 <= max(heads, default=0) else None
        rows.append(
            {
                "nodes": n,
                "forward_cost": round(latency[n] / plain, 3),
                "heads_best_tree": best
                and {
                    k: best[k] for k in ("depth", "expected_tokens_per_step", "relative_step_cost", "expected_speedup")
                },
                "tokens_needed_by_best_tree_cost": best and round(speedup * best["relative_step_cost"], 3),
                "chain_tokens_needed": chain_cost and round(speedup * chain_cost, 3),
                "chain_acceptance_needed": chain_cost and chain_acceptance_needed(speedup * chain_cost, n),
            }
        )
    free_rows = 1 + heads.get(1, 0.0) / plain  # a device where a tree forward costs one plain step
    return {
        "device": tuned["device"],
        "tuned_at": tuned.get("tuned_at"),
        "calibration": tuned.get("calibration"),
        "head_top1": [round(r[0], 4) for r in tuned["rank_accuracy"]],
        "targets": {"speedup": speedup, "tokens_per_step": tokens},
        "best_expected_speedup": max(c["expected_speedup"] for c in tuned["candidates"]),
        "most_expected_tokens_per_step": max(c["expected_tokens_per_step"] for c in tuned["candidates"]),
        "largest_tree": max(latency),
        "tokens_needed_if_rows_were_free": round(speedup * free_rows, 3),
        "by_size": rows,
    }


def measured(artifact: str, tuned: dict, tokens: int = 128) -> list[dict]:
    """Tokens per step of grown trees on the bench's prompts (deterministic)."""
    acc = np.asarray(tuned["rank_accuracy"])
    rows = prompt_sets(10, 0, False)["dev_first_10"]
    out = []
    for n in MEASURED_SIZES:
        choices = grow_tree(acc, n - 1)
        decoder = OrtMedusaDecoder(read_artifact(artifact), provider="cpu", threads=1, tree=choices)
        out.append(
            {
                "nodes": n,
                "choices": choices,
                "expected_tokens_per_step": round(expected_accept(choices, acc), 3),
                "bench_prompts_tokens_per_step": tokens_per_step(decoder, rows, tokens, {}),
            }
        )
        print(n, out[-1]["bench_prompts_tokens_per_step"], file=sys.stderr, flush=True)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="speedup_ceiling.py")
    parser.add_argument("tuned")
    parser.add_argument("--speedup", type=float, default=1.6)
    parser.add_argument("--tokens", type=float, default=2.2)
    parser.add_argument("--measure", metavar="ARTIFACT", help="decode the bench's prompts with grown trees")
    args = parser.parse_args(argv)
    with open(args.tuned, encoding="utf-8") as f:
        tuned = json.load(f)
    out = ceiling(tuned, args.speedup, args.tokens)
    if args.measure:
        out["measured_on_bench_prompts"] = measured(args.measure, tuned)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
