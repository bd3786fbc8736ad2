"""Prompt lookup on and off, alternated in one process (the card's rule in "Prompt lookup"): an
artifact's decoder with its stored tree at --lookup 0 and N over the bench's prompts, round after
round (this machine has slow and fast phases minutes long), with the greedy loop's output as the
reference. Tokens per step and outputs are deterministic; tokens/s is a timing.

    python scripts/lookup_ab.py ARTIFACT [--lookup 2] [--rounds 6] [--dev 10] [--tokens 128] > scripts/results/X.json

With ``--configs`` the decoders alternated are named configurations (tree, lookup, chain: the card's
rule in "A retrieved chain"); ``--skip``/``--held`` choose other prompts than the bench's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from chain_acceptance import prompt_sets
from engine_medusa.data import DEV_PROMPTS
from engine_medusa.ort_path import OrtMedusaDecoder

from engine.artifacts import read_artifact
from engine.interfaces import GenerationConfig
from engine.io.prompts import read_prompt_rows


def run(decoder, prompts: list[str], tokens: int) -> tuple[list[list[int]], int, int, float]:
    """(outputs, steps, new tokens, seconds) over the prompts, one at a time."""
    outputs, steps, new = [], 0, 0
    t0 = time.perf_counter()
    for prompt in prompts:
        result = decoder.generate(prompt, GenerationConfig(max_new_tokens=tokens))
        outputs.append(list(result.tokens))
        steps, new = steps + result.stats.steps, new + result.stats.new_tokens
    return outputs, steps, new, time.perf_counter() - t0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lookup_ab.py")
    parser.add_argument("artifact")
    parser.add_argument("--lookup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--dev", type=int, default=10)
    parser.add_argument("--skip", type=int, default=0, help="skip the first N dev prompts")
    parser.add_argument("--held", type=int, default=0, help="also N held-back ShareGPT prompts")
    parser.add_argument(
        "--configs",
        type=json.loads,
        default=None,
        help='decoders to alternate instead of lookup 0 / N: {"name": {"tree": ..., "lookup": N, "chain": K}, ...}',
    )
    parser.add_argument("--datastore", default=None, help="datastore for configurations with a chain")
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args(argv)
    artifact = read_artifact(args.artifact)
    prompts = [r["prompt"] for r in read_prompt_rows(DEV_PROMPTS, args.skip + args.dev)[args.skip :]]
    if args.held:
        prompts += [r["prompt"] for r in prompt_sets(0, args.held, False)[f"sharegpt_held_back_{args.held}"]]
    configs = args.configs or {f"lookup_{n}": {"lookup": n} for n in (0, args.lookup)}
    decoders = {
        name: OrtMedusaDecoder(artifact, provider="cpu", threads=1, datastore=args.datastore, **c)
        for name, c in configs.items()
    }
    greedy = OrtMedusaDecoder(artifact, provider="cpu", threads=1, tree=[])
    reference = run(greedy, prompts, args.tokens)[0]
    for d in decoders.values():  # warm-up
        d.generate(prompts[0], GenerationConfig(max_new_tokens=8))
    rates: dict[str, list[float]] = {n: [] for n in decoders}
    out = {"artifact": args.artifact, "prompts": len(prompts), "dev": [args.skip, args.dev], "held": args.held}
    out |= {"tree": decoders[next(iter(decoders))].tree_info} if not args.configs else {}
    out["tokens"] = args.tokens
    for r in range(args.rounds):
        for n, d in decoders.items():
            outputs, steps, new, seconds = run(d, prompts, args.tokens)
            rates[n].append(round(new / seconds, 2))
            out[n] = {"tree": d.tree_info} if args.configs else {}
            out[n] |= {
                "identical_to_greedy": outputs == reference,
                "tokens_per_step": round(new / steps, 4),
                "exact_greedy_declared": "exact-greedy" in d.capabilities,
            }
            print(f"round {r + 1} {n}: {rates[n][-1]} tokens/s", file=sys.stderr, flush=True)
    for n in decoders:
        out[n] |= {"tokens_per_s": rates[n], "median_tokens_per_s": statistics.median(rates[n])}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
