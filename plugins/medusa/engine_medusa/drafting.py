"""Proposing a tree with the one-layer draft (`draft_layer`), written once over a back end's
``draft_step`` (torch or onnxruntime; numpy here, never torch).

The draft keeps its own key/value cache of the accepted sequence's true (base feature, next
token) pairs. A step first runs the pairs accepted since the last step (the last one pairs the
last accepted feature with the root token, so its output proposes the root's children); then the
tree is drafted depth by depth, each node reading its parent's predicted feature and attending
to the cache and its own ancestors. The draft nodes' keys are dropped after the step: only base
features enter the cache, so what the draft proposes never changes what is accepted.
"""

from __future__ import annotations

import numpy as np


class Drafter:
    """The draft layer's cache and proposals for one batch of rows (one generation)."""

    def __init__(self, backend, batch: int):
        self.backend = backend
        heads, dim = backend.draft_kv_shape
        self.k = np.zeros((batch, heads, 0, dim), np.float32)
        self.v = np.zeros_like(self.k)
        self.valid = np.zeros((batch, 0), bool)
        self.next_pos = np.zeros(batch, np.int64)
        self.pending = None

    def accept(self, features: np.ndarray, tokens: np.ndarray, mask: np.ndarray) -> None:
        """New true pairs per row: features [B, w, d] with the tokens that follow them [B, w];
        mask [B, w] marks each row's pairs (left-aligned, at least one)."""
        self.pending = (features, tokens, mask)

    def topk_at(self, tree, depth: int, paths: np.ndarray, nodes: list[int], k: int) -> np.ndarray:
        """The draft's top-k token ids [B, P, k] after each of the P tree `nodes` at `depth`
        (paths [B, P, depth + 1]: the tokens from the root to each node)."""
        if depth == 0:
            return self._root(k)[:, None]
        feats = np.stack([self.out[int(tree.parent[n])] for n in nodes], 1)
        b, p = paths.shape[:2]
        positions = np.broadcast_to((self.next_pos - 1 + depth)[:, None], (b, p))
        ancestors = np.broadcast_to(tree.attn[np.ix_(nodes, self.slot_nodes)][None], (b, p, len(self.slot_nodes)))
        allowed = np.concatenate(
            [
                np.broadcast_to(self.valid[:, None], (b, p, self.valid.shape[1])),
                ancestors,
                np.broadcast_to(np.eye(p, dtype=bool)[None], (b, p, p)),
            ],
            2,
        )
        past_k, past_v = np.concatenate([self.k, self.dk], 2), np.concatenate([self.v, self.dv], 2)
        out, top, kn, vn = self.backend.draft_step(feats, paths[:, :, -1], positions, past_k, past_v, allowed, k)
        self.dk, self.dv = np.concatenate([self.dk, kn], 2), np.concatenate([self.dv, vn], 2)
        self.slot_nodes += list(nodes)
        for j, n in enumerate(nodes):
            self.out[n] = out[:, j]
        return top

    def _root(self, k: int) -> np.ndarray:
        """Run the pending true pairs into the cache; the draft's top-k after the root [B, k]."""
        feats, tokens, mask = self.pending
        b, w = tokens.shape
        positions = self.next_pos[:, None] + np.arange(w)[None]
        causal = np.tril(np.ones((w, w), bool))[None] & mask[:, None, :] | np.eye(w, dtype=bool)[None]
        allowed = np.concatenate([np.broadcast_to(self.valid[:, None], (b, w, self.valid.shape[1])), causal], 2)
        out, top, kn, vn = self.backend.draft_step(feats, tokens, positions, self.k, self.v, allowed, k)
        self.k, self.v = np.concatenate([self.k, kn], 2), np.concatenate([self.v, vn], 2)
        self.valid = np.concatenate([self.valid, mask], 1)
        self.next_pos = self.next_pos + mask.sum(1)
        last = mask.sum(1) - 1
        rows = np.arange(b)
        self.out = {0: out[rows, last]}
        self.dk, self.dv = self.k[:, :, :0], self.v[:, :, :0]
        self.slot_nodes: list[int] = []
        return top[rows, last]
