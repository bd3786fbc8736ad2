"""Tokens per step of Medusa on exported artifacts with one tree, on two prompt sets: the bench's
first dev prompts (vicuna-bench) and ShareGPT prompts held back from training (never distilled,
never teacher-forced). Deterministic (greedy): the same artifacts give the same numbers.

    python scripts/chain_acceptance.py NAME=ARTIFACT ... [--tree '[[0]]'] [--tokens 128] [--dev 10]
        [--by-category] > scripts/results/X.json
"""

from __future__ import annotations

import argparse
import json
import sys

from engine_medusa.data import DEV_PROMPTS, held_back_prompt
from engine_medusa.ort_path import OrtMedusaDecoder

from engine.artifacts import read_artifact
from engine.datasets import shared_data
from engine.interfaces import GenerationConfig
from engine.io.prompts import read_prompt_rows


def prompt_sets(dev: int, held: int, by_category: bool, skip: int = 0) -> dict:
    rows = read_prompt_rows(shared_data("prompts", "sharegpt.jsonl"))
    short_held = [r for r in rows if held_back_prompt(r) and len(r["prompt"]) < 600]
    dev_rows = read_prompt_rows(DEV_PROMPTS, skip + dev)[skip:]
    dev_name = f"dev_{skip + 1}_{skip + dev}" if skip else f"dev_first_{dev}"
    sets = {dev_name: dev_rows, f"sharegpt_held_back_{held}": short_held[:held]}
    if by_category:  # the dev prompts again, one set per category
        for r in dev_rows:
            sets.setdefault(f"dev_{r['category']}", []).append(r)
    return sets


def tokens_per_step(decoder, rows, tokens: int, seen: dict) -> float:
    """New tokens over verification steps on the rows; ``seen`` keeps each prompt's (steps, tokens)."""
    for r in rows:
        if r["prompt"] not in seen:
            stats = decoder.generate(r["prompt"], GenerationConfig(max_new_tokens=tokens)).stats
            seen[r["prompt"]] = (stats.steps, stats.new_tokens)
    steps, new = (sum(x) for x in zip(*(seen[r["prompt"]] for r in rows), strict=True))
    return round(new / steps, 3)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+", metavar="NAME=ARTIFACT")
    ap.add_argument("--tree", default="[[0]]")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--dev", type=int, default=10)
    ap.add_argument("--held", type=int, default=12)
    ap.add_argument("--by-category", action="store_true", help="also each category of the dev prompts apart")
    args = ap.parse_args()
    sets = prompt_sets(args.dev, args.held, args.by_category)
    out = {"tree": json.loads(args.tree), "max_new_tokens": args.tokens, "tokens_per_step": {}}
    for spec in args.artifacts:
        name, path = spec.split("=", 1)
        decoder = OrtMedusaDecoder(read_artifact(path), provider="cpu", threads=1, tree=out["tree"])
        seen: dict = {}
        rates = {k: tokens_per_step(decoder, rows, args.tokens, seen) for k, rows in sets.items()}
        out["tokens_per_step"][name] = rates
    return out


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=1)
    print()
