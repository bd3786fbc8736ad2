"""Tokens per step of Medusa on exported artifacts with one tree, on two prompt sets: the bench's
first dev prompts (vicuna-bench) and ShareGPT prompts held back from training (never distilled,
never teacher-forced). Deterministic (greedy): the same artifacts give the same numbers.

    python scripts/chain_acceptance.py NAME=ARTIFACT ... [--tree '[[0]]'] [--tokens 128] > scripts/results/X.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine_medusa.data import held_back_prompt
from engine_medusa.ort_path import OrtMedusaDecoder

from engine.artifacts import read_artifact
from engine.interfaces import GenerationConfig

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "prompts"


def prompt_sets(dev: int, held: int) -> dict:
    rows = [json.loads(line) for line in (SHARED / "sharegpt.jsonl").open()]
    short_held = [r for r in rows if held_back_prompt(r) and len(r["prompt"]) < 600]
    dev_rows = [json.loads(line) for line in (SHARED / "dev.jsonl").open()]
    return {f"dev_first_{dev}": dev_rows[:dev], f"sharegpt_held_back_{held}": short_held[:held]}


def tokens_per_step(decoder, rows, tokens: int) -> float:
    steps = new = 0
    for r in rows:
        stats = decoder.generate(r["prompt"], GenerationConfig(max_new_tokens=tokens)).stats
        steps, new = steps + stats.steps, new + stats.new_tokens
    return round(new / steps, 3)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+", metavar="NAME=ARTIFACT")
    ap.add_argument("--tree", default="[[0]]")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--dev", type=int, default=10)
    ap.add_argument("--held", type=int, default=12)
    args = ap.parse_args()
    sets = prompt_sets(args.dev, args.held)
    out = {"tree": json.loads(args.tree), "max_new_tokens": args.tokens, "tokens_per_step": {}}
    for spec in args.artifacts:
        name, path = spec.split("=", 1)
        decoder = OrtMedusaDecoder(read_artifact(path), provider="cpu", threads=1, tree=out["tree"])
        out["tokens_per_step"][name] = {k: tokens_per_step(decoder, rows, args.tokens) for k, rows in sets.items()}
    return out


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=1)
    print()
