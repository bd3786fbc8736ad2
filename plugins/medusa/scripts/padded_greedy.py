"""Does padding the greedy loop's one-token steps to two rows make Medusa over a quantized base
exact? A quantized base (MatMulNBits) computes a one-row call with another kernel than calls of
two rows or more, which agree with each other row for row (`scripts/row_counts.py`); a tree
verification is always such a call. Here each one-token step of the greedy loop also runs as
two rows: the token and a padding row that sees only itself; the padding row's logits, hidden
state and cache entry are dropped. Then Medusa (the artifact's tree) and the greedy loop, each
with and without the padding, on the first N dev prompts, 128 tokens, 1 thread.

    python scripts/padded_greedy.py ARTIFACT [N] > scripts/results/padded_greedy_int4.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from engine.artifacts import load_artifact
from engine.datasets import shared_data
from engine.interfaces import GenerationConfig


def pad_one_row_steps(backend) -> None:
    """Run every one-row forward of ``backend`` (an OrtBackend) as two rows; keep row 0's results."""
    forward = backend.forward

    def padded(ids, positions, allowed, logits_at=None):
        if ids.shape[1] != 1 or logits_at is not None:
            return forward(ids, positions, allowed, logits_at)
        b, _, width = allowed.shape
        grown = np.zeros((b, 2, width + 1), bool)
        grown[:, 0, :width] = allowed[:, 0]
        grown[:, 1, width] = True  # the padding row sees only itself; row 0 does not see it
        logits = forward(np.repeat(ids, 2, axis=1), np.repeat(positions, 2, axis=1), grown)
        backend.past = [p[:, :, :-1] for p in backend.past]
        backend.hidden = backend.hidden[:, :1]
        return logits[:, :1]

    backend.forward = padded


def run(path: str, prompts: list[str], tree, pad: bool) -> dict:
    decoder = load_artifact(path, provider="cpu", threads=1, tree=tree)
    if pad:
        pad_one_row_steps(decoder.backend)
    config = GenerationConfig(max_new_tokens=128)
    start = time.perf_counter()
    results = [decoder.generate(p, config) for p in prompts]
    seconds = time.perf_counter() - start
    tokens = [list(r.tokens) for r in results]
    return {"tokens": tokens, "tokens_per_s": round(sum(map(len, tokens)) / seconds, 2)}


def main(path: str, n: int = 10) -> dict:
    prompts = [json.loads(line)["prompt"] for line in shared_data("prompts", "dev.jsonl").open()][:n]
    out = {"artifact": path, "prompts": n, "max_new_tokens": 128, "threads": 1}
    for pad in (False, True):
        greedy, medusa = run(path, prompts, [], pad), run(path, prompts, None, pad)
        same = sum(a == b for a, b in zip(greedy["tokens"], medusa["tokens"], strict=True))
        key = "two_row_steps" if pad else "one_row_steps"
        out[key] = {
            "greedy_tokens_per_s": greedy["tokens_per_s"],
            "medusa_tokens_per_s": medusa["tokens_per_s"],
            "prompts_identical": same,
        }
        print(key, out[key], file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10), indent=2))
