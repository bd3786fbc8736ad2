"""Verification of a Medusa token tree against the base model's logits (numpy only).

Each rule takes one row's tree (candidate tokens [N], base logits [N, V] at every node)
and returns (accepted node path starting at the root 0, the next root token). The next
root is the base model's token after the last accepted node, so no extra forward is needed.
"""

from __future__ import annotations

import numpy as np

from .tree import TreeBuffers


def warp(logits: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """Sampling distribution(s) over the last axis: temperature, then top-k, then top-p."""
    z = logits.astype(np.float64) / temperature
    if top_k and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[..., -top_k, None]
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-p, axis=-1)
        sp = np.take_along_axis(p, order, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop_sorted = (np.cumsum(sp, axis=-1) - sp) >= top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        p = np.where(drop, 0.0, p)
        p /= p.sum(axis=-1, keepdims=True)
    return p


def sample(p: np.ndarray, rng: np.random.Generator) -> int:
    """One draw from a 1-D distribution by inverse CDF (exact, float64)."""
    c = np.cumsum(p)
    return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), len(p) - 1))


def _best_path(tree: TreeBuffers, ok: np.ndarray, score: np.ndarray | None = None) -> np.ndarray:
    """Longest accepted prefix over the leaf paths; ties by summed score, then first path."""
    ret = tree.retrieve
    valid = ret[:, 1:] >= 0
    node_ok = np.where(valid, ok[np.maximum(ret[:, 1:], 0)], False)
    lengths = np.cumprod(node_ok, axis=1).sum(axis=1)
    best = lengths.max()
    rows = np.flatnonzero(lengths == best)
    if score is not None and len(rows) > 1 and best > 0:
        sums = score[np.maximum(ret[rows, 1 : best + 1], 0)].sum(axis=1)
        rows = rows[[int(np.argmax(sums))]]
    return ret[rows[0], : best + 1]


def verify_greedy(tree: TreeBuffers, tokens: np.ndarray, logits: np.ndarray):
    """Accept a candidate iff it equals the base argmax at its parent: output == base greedy."""
    am = logits.argmax(axis=-1)
    ok = np.zeros(tree.size, bool)
    ok[1:] = tokens[1:] == am[tree.parent[1:]]
    path = _best_path(tree, ok)
    return path, int(am[path[-1]])


def verify_typical(
    tree: TreeBuffers,
    tokens: np.ndarray,
    logits: np.ndarray,
    *,
    temperature: float,
    rng: np.random.Generator,
    eps: float = 0.09,
    delta: float = 0.3,
    top_k: int = 0,
    top_p: float = 1.0,
):
    """Typical acceptance: accept x iff p(x) > min(eps, delta * exp(-H(p))) at its parent;
    among the longest paths take the highest summed log p. Not distribution-preserving."""
    p = warp(logits, max(temperature, 1e-5), top_k, top_p)
    ent = -(p * np.log(p + 1e-5)).sum(axis=-1)
    thr = np.minimum(eps, delta * np.exp(-ent))
    par = tree.parent[1:]
    px = p[par, tokens[1:]]
    ok = np.zeros(tree.size, bool)
    ok[1:] = px > thr[par]
    logp = np.zeros(tree.size)
    logp[1:] = np.log(px + 1e-30)
    path = _best_path(tree, ok, logp)
    return path, sample(p[path[-1]], rng)


def verify_lossless(
    tree: TreeBuffers,
    tokens: np.ndarray,
    logits: np.ndarray,
    *,
    temperature: float,
    rng: np.random.Generator,
    top_k: int = 0,
    top_p: float = 1.0,
):
    """Tree-aware rejection sampling (SpecInfer-style, deterministic drafts).

    At a node with target distribution p, try its children in rank order: accept child x
    with probability r(x), where r is p with the already-rejected siblings removed and
    renormalised; on rejection set r(x) = 0. If no child is accepted, the next token is drawn
    from r. Each emitted token is therefore distributed exactly as p given its prefix.
    """
    node = 0
    path = [0]
    while True:
        r = warp(logits[node], temperature, top_k, top_p)
        for child in tree.children[node]:
            x = tokens[child]
            mass = r.sum()
            if rng.random() * mass < r[x]:
                node = child
                path.append(child)
                break
            r[x] = 0.0
        else:
            return np.asarray(path), sample(r, rng)
