"""How many tokens per step prompt-lookup candidates would give (issue 15's question: is a copy of
the context a cheaper draft than the heads?), simulated on an artifact's own greedy answers: at
every step the last N tokens of the context (prompt + answer so far) are looked up in the earlier
context, and the tokens that followed their latest earlier occurrence (up to K) are the candidate,
accepted while they equal the greedy answer, as a verification step would. Deterministic.

    python scripts/prompt_lookup.py ARTIFACT [--dev 10] [--held 20] [--tokens 128] > scripts/results/X.json

With ``--store C`` a third table: retrieval from a datastore (REST, He et al. 2024) of the first C
training-split ShareGPT answers (``engine_medusa.retrieval.Datastore``, as ``engine train medusa
--datastore-only`` builds it): the most frequent continuation of the context's longest suffix found
in the store, as a chain of up to K drafts; then the context first, the store where it has none;
and, for trees of head 0's top-h at depth 1 beside such a chain of k (1 + h + k rows), the tokens
per step.

Second table, for a tree of two rows (root + one candidate, the int4 copies' `[[0]]`): head 0's
candidate at every answer position, from the greedy loop's own hidden states (one row per call, as
the greedy loop runs), against a lookup candidate where there is one (head 0 elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from chain_acceptance import prompt_sets
from engine_medusa.data import answer_datastore
from engine_medusa.ort_path import OrtMedusaDecoder
from engine_medusa.retrieval import ChainLookup
from lookup_ab import run

from engine.artifacts import read_artifact

NGRAMS = (1, 2, 3)
LENGTHS = (1, 2, 4)
UNION_HEADS, UNION_CHAINS = (1, 2, 4), (1, 2, 4)


def lookup(context: list[int], n: int, k: int) -> list[int]:
    """The up to ``k`` tokens after the latest earlier occurrence of the context's last ``n``: the
    decoder's own context lookup."""
    return ChainLookup(n, context).propose(k)


def walk(prompt: list[int], answer: list[int], propose) -> tuple[int, int, int]:
    """(verification steps, steps with a candidate, tokens accepted from candidates) over one answer,
    ``propose(context)`` giving each step's candidate; the first answer token comes from the prompt's
    forward pass and is not counted."""
    steps = proposed = accepted = 0
    t = 0
    while t < len(answer) - 1:
        candidate = propose(prompt + answer[: t + 1])
        run = 0
        while run < len(candidate) and t + 1 + run < len(answer) and answer[t + 1 + run] == candidate[run]:
            run += 1
        steps, proposed, accepted = steps + 1, proposed + bool(candidate), accepted + run
        t += 1 + run
    return steps, proposed, accepted


def head_candidates(decoder, prompt: list[int], answer: list[int], k: int = 1) -> list[list[int]]:
    """Head 0's top-k proposals for answer[j + 1] at every j (-1 for j = 0: no hidden state yet), as the
    decoder proposes it: from the hidden state of answer[j - 1] (the prompt's last for j = 0... 1)
    and the path [answer[j]]; the answer is replayed one token per call and checked to be greedy."""
    backend = decoder.backend
    backend.reset()
    ids = np.asarray([prompt])
    allowed = np.tril(np.ones((1, len(prompt), len(prompt)), bool))
    logits = backend.forward(ids, np.arange(len(prompt))[None], allowed, logits_at=len(prompt) - 1)[:, -1]
    hidden = backend.hidden_at(np.array([len(prompt) - 1]))
    out = []
    for j, token in enumerate(answer[:-1]):
        if int(logits[0].argmax()) != token:
            raise SystemExit(f"the replayed answer is not greedy at token {j}")
        out.append([int(t) for t in backend.hydra_topk_of(hidden, 0, np.array([[token]]), k)[0]])
        past = len(prompt) + j
        logits = backend.forward(np.array([[token]]), np.array([[past]]), np.ones((1, 1, past + 1), bool))[:, -1]
        hidden = backend.hidden_at(np.array([0]))
    return out


def two_row_walk(prompt: list[int], answer: list[int], heads: list[int], n: int | None) -> tuple[int, int]:
    """(steps, accepted) of a root + one candidate per step: the lookup's (n-gram n) where it has
    one, head 0's elsewhere (n None: head 0 always)."""
    steps = accepted = t = 0
    while t < len(answer) - 1:
        found = lookup(prompt + answer[: t + 1], n, 1) if n else []
        candidate = found[0] if found else heads[t][0]
        hit = candidate == answer[t + 1]
        steps, accepted, t = steps + 1, accepted + hit, t + 1 + hit
    return steps, accepted


def union_walk(prompt: list[int], answer: list[int], heads: list[list[int]], h: int, propose) -> tuple:
    """(steps, accepted, rows of every step) of a tree with head 0's top-h at depth 1 beside a chain
    from ``propose``: a step accepts the longer of the two (a head hit is one token, the chain its
    right prefix)."""
    steps = accepted = t = 0
    rows = []
    while t < len(answer) - 1:
        chain = propose(prompt + answer[: t + 1])
        rows.append(1 + h + len(chain))
        run = 0
        while run < len(chain) and t + 1 + run < len(answer) and answer[t + 1 + run] == chain[run]:
            run += 1
        got = max(run, int(answer[t + 1] in heads[t][:h]))
        steps, accepted, t = steps + 1, accepted + got, t + 1 + got
    return steps, accepted, rows


def step_cost(tuned: dict):
    """A step of n rows over a one-token step, from a tree tuning's latencies (interpolated), plus
    depth-1 heads' time."""
    sizes = sorted(int(k) for k in tuned["latency_ms"])
    times = [tuned["latency_ms"][str(k)] for k in sizes]
    heads = tuned["heads_latency_ms"]["1"]
    return lambda rows: (float(np.interp(rows, sizes, times)) + heads) / times[0]


def chain_table(answers, propose) -> dict:
    steps, proposed, accepted = (sum(x) for x in zip(*(walk(p, a, propose) for p, a in answers), strict=True))
    return {
        "steps": steps,
        "candidate_share": round(proposed / steps, 4),
        "extra_tokens_per_step": round(accepted / steps, 4),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="prompt_lookup.py")
    parser.add_argument("artifact")
    parser.add_argument("--dev", type=int, default=10)
    parser.add_argument("--held", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--store", type=int, default=0, metavar="C", help="conversations in the datastore (0: none)")
    parser.add_argument("--skip", type=int, default=0, help="skip the first N dev prompts")
    parser.add_argument("--shares", type=lambda s: [float(x) for x in s.split(",")], default=[0.0])
    parser.add_argument("--latency", help="a tree tuning's payload: expected speed-ups from its step latencies")
    args = parser.parse_args(argv)
    decoder = OrtMedusaDecoder(read_artifact(args.artifact), provider="cpu", threads=1, tree=[])
    store = answer_datastore(decoder.codec, args.store) if args.store else None
    cost = None
    if args.latency:
        with open(args.latency, encoding="utf-8") as f:
            cost = step_cost(json.load(f))
    out = {"artifact": args.artifact, "tokens": args.tokens, "sets": {}}
    if store:
        out["store"] = {"conversations": store.sequences, "tokens": len(store)}
    for name, rows in prompt_sets(args.dev, args.held, False, args.skip).items():
        prompts = [r["prompt"] for r in rows]
        answers = list(zip(map(decoder.encode, prompts), run(decoder, prompts, args.tokens)[0], strict=True))
        table = {
            f"n{n}_k{k}": chain_table(answers, lambda c, n=n, k=k: lookup(c, n, k)) for n in NGRAMS for k in LENGTHS
        }
        if store:
            out["sets"].setdefault(name, {})["datastore"] = {
                f"{source}_k{k}": chain_table(answers, propose)
                for k in (*LENGTHS, 6)
                for source, propose in (
                    ("store", lambda c, k=k: store.propose(c, k)),
                    ("context_n2_else_store", lambda c, k=k: lookup(c, 2, k) or store.propose(c, k)),
                )
            }
        heads = [head_candidates(decoder, p, a, max(UNION_HEADS)) for p, a in answers]
        if store:
            union = {}
            for h, k, share in [(h, k, s) for h in UNION_HEADS for k in (0, *UNION_CHAINS) for s in args.shares]:
                if share and not k:
                    continue
                propose = lambda c, k=k, s=share: (lookup(c, 2, k) or store.propose(c, k, s)) if k else []  # noqa: E731
                walks = [union_walk(p, a, hs, h, propose) for (p, a), hs in zip(answers, heads, strict=True)]
                steps, accepted = (sum(x[i] for x in walks) for i in range(2))
                rows_per_step = [r for w in walks for r in w[2]]
                entry = {"rows": 1 + h + k, "mean_rows": round(float(np.mean(rows_per_step)), 3)}
                entry["tokens_per_step"] = round(1 + accepted / steps, 4)
                if cost:
                    entry["steps"], entry["cost"] = steps, round(sum(map(cost, rows_per_step)), 3)
                    entry["expected_speedup"] = round((steps + accepted) / entry["cost"], 4)
                union[f"heads_top{h}_chain{k}" + (f"_share{share}" if share else "")] = entry
            out["sets"][name]["heads_and_chain"] = union
        two_rows = {}
        for n in (None, *NGRAMS):
            walks = [two_row_walk(p, a, h, n) for (p, a), h in zip(answers, heads, strict=True)]
            steps, accepted = (sum(x) for x in zip(*walks, strict=True))
            two_rows["head 0" if n is None else f"lookup n{n}, else head 0"] = {
                "steps": steps,
                "tokens_per_step": round(1 + accepted / steps, 4),
            }
        out["sets"].setdefault(name, {}).update(prompts=len(rows), by_ngram_and_length=table, two_rows=two_rows)
        print(name, file=sys.stderr, flush=True)
    if cost and store:  # all sets as one: tokens over summed step costs
        tables = [s["heads_and_chain"] for s in out["sets"].values()]
        out["pooled_expected_speedup"] = {
            key: round(
                sum(t[key]["steps"] * t[key]["tokens_per_step"] for t in tables) / sum(t[key]["cost"] for t in tables),
                4,
            )
            for key in tables[0]
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
