"""How far a quantized artifact is from the fp32 one (numpy + onnxruntime, no torch).

All three measures run the artifact's base graph on whole sequences (teacher forcing):

- ``greedy_match``: at every position of the fp32 artifact's greedy answers, does the
  other artifact's argmax equal the fp32 token? (each position sees the same context, so
  one early disagreement does not decide the rest, unlike comparing free-running outputs)
- ``prefix_agreement``: the free-running view: share of the reference's tokens generated
  before the first divergence;
- ``perplexity`` of a text (the base's next-token loss, exp of the mean).
"""

from __future__ import annotations

import numpy as np

SEQ_LIMIT = 256  # tokens per perplexity text


def logits(backend, ids) -> np.ndarray:
    """Base logits [len(ids), V] for one sequence, from an empty cache (the cache is reset after)."""
    n = len(ids)
    backend.reset()
    allowed = np.tril(np.ones((n, n), bool))[None]
    out = backend.forward(np.asarray([ids], np.int64), np.arange(n)[None], allowed)[0]
    backend.reset()
    return out


def greedy_match(backend, prompt_ids, answers) -> float:
    """Share of the reference answers' tokens that are the backend's argmax given the same prefix."""
    hits = total = 0
    for prompt, answer in zip(prompt_ids, answers, strict=True):
        if not answer:
            continue
        out = logits(backend, list(prompt) + list(answer)[:-1])
        pred = out[len(prompt) - 1 :].argmax(-1)
        hits += int((pred == np.asarray(answer)).sum())
        total += len(answer)
    return hits / total if total else 1.0


def prefix_agreement(outputs, reference) -> float:
    """Tokens before the first divergence, over the reference's tokens."""
    same = 0
    for out, ref in zip(outputs, reference, strict=True):
        n = next((i for i, (a, b) in enumerate(zip(out, ref, strict=False)) if a != b), min(len(out), len(ref)))
        same += n
    return same / max(1, sum(len(r) for r in reference))


def perplexity(backend, texts_ids) -> float:
    """exp(mean next-token negative log-likelihood) over the texts (each cut to SEQ_LIMIT tokens)."""
    nll, count = 0.0, 0
    for ids in texts_ids:
        ids = list(ids)[:SEQ_LIMIT]
        if len(ids) < 2:
            continue
        out = logits(backend, ids[:-1]).astype(np.float64)
        top = out.max(-1, keepdims=True)
        logz = np.log(np.exp(out - top).sum(-1)) + top[:, 0]
        target = np.asarray(ids[1:])
        nll += float((logz - out[np.arange(len(target)), target]).sum())
        count += len(target)
    return float(np.exp(nll / count)) if count else float("nan")
