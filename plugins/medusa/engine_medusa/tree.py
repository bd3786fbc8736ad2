"""Medusa sparse token trees (numpy only: shared by the torch and onnxruntime loops).

A tree is a list of rank paths ("choices"): [0, 1] = head-1 rank 0, then head-2 rank 1.
Node 0 is the root (the base model's own next token); node i >= 1 is the i-th choice in
the reference's order (by depth, then lexicographically).
"""

from __future__ import annotations

import attrs
import numpy as np

from engine.errors import UsageError


def _validate(choices) -> list[tuple[int, ...]]:
    paths = [tuple(int(r) for r in c) for c in choices]
    if len(set(paths)) != len(paths):
        raise UsageError("tree choices contain duplicates")
    have = set(paths)
    for p in paths:
        if not p or min(p) < 0:
            raise UsageError(f"bad tree choice {list(p)}: ranks must be >= 0, path non-empty")
        if len(p) > 1 and p[:-1] not in have:
            raise UsageError(f"tree choice {list(p)} has no parent {list(p[:-1])} in the tree")
    return sorted(paths, key=lambda p: (len(p), p))


@attrs.frozen(eq=False)
class TreeBuffers:
    choices: tuple  # sorted rank paths (node i+1 = choices[i])
    topk: int
    tree_indices: np.ndarray  # [N] index into [root, head1 top-k, head2 top-k, ...]
    positions: np.ndarray  # [N] depth of each node
    attn: np.ndarray  # [N, N] bool: node i sees node j (ancestor or self)
    retrieve: np.ndarray  # [L, D+1] node indices of each leaf path, -1 padded
    parent: np.ndarray  # [N] parent node (-1 for the root)
    children: tuple  # children[i] = node indices in rank order

    @property
    def size(self) -> int:
        return len(self.tree_indices)

    @property
    def depth(self) -> int:
        return int(self.positions.max())


def is_chain(choices) -> bool:
    """One node per depth, each the child of the one before: every node then sits in the tree forward
    at the column the greedy loop gives the same token (no masked sibling before it)."""
    paths = sorted((list(c) for c in choices), key=len)
    return all(len(p) == i + 1 and p[:-1] == (paths[i - 1] if i else []) for i, p in enumerate(paths))


def build_tree(choices, topk: int = 10) -> TreeBuffers:
    paths = _validate(choices)
    if paths and max(max(p) for p in paths) >= topk:
        raise UsageError(f"tree uses rank {max(max(p) for p in paths)} but top-k is {topk}")
    index = {p: i + 1 for i, p in enumerate(paths)}
    n = len(paths) + 1
    tree_indices = np.zeros(n, np.int64)
    positions = np.zeros(n, np.int64)
    parent = np.full(n, -1, np.int64)
    attn = np.eye(n, dtype=bool)
    attn[:, 0] = True
    children = [[] for _ in range(n)]
    for p, i in index.items():
        tree_indices[i] = p[-1] + topk * (len(p) - 1) + 1
        positions[i] = len(p)
        parent[i] = index.get(p[:-1], 0)
        children[parent[i]].append(i)
        for d in range(1, len(p)):
            attn[i, index[p[:d]]] = True
    for c in children:
        c.sort(key=lambda i: paths[i - 1][-1])
    # leaves, deepest-last first, as the reference builds them
    leaves, seen = [], set()
    for p in reversed(paths):
        if p in seen:
            continue
        seen.update(p[:d] for d in range(1, len(p) + 1))
        leaves.append([0] + [index[p[:d]] for d in range(1, len(p) + 1)])
    width = max((len(r) for r in leaves), default=1)
    retrieve = np.full((max(len(leaves), 1), width), -1, np.int64)
    retrieve[:, 0] = 0
    for r, row in enumerate(leaves):
        retrieve[r, : len(row)] = row
    return TreeBuffers(
        tuple(paths), topk, tree_indices, positions, attn, retrieve, parent, tuple(tuple(c) for c in children)
    )


def append_chain(tree: TreeBuffers, length: int) -> TreeBuffers:
    """The tree with a chain of ``length`` nodes under the root after its own nodes (a retrieved
    draft beside the heads' candidates: its tokens come from elsewhere, so it has no rank path and
    ``choices`` stays the heads'). Verification takes the longest accepted path, either branch."""
    n = tree.size
    size = n + length
    parent = np.concatenate([tree.parent, [0], np.arange(n, size - 1)]).astype(np.int64)
    attn = np.zeros((size, size), bool)
    attn[:n, :n] = tree.attn
    attn[n:, 0] = True
    attn[n:, n:] = np.tril(np.ones((length, length), bool))
    chain = [0, *range(n, size)]
    width = max(tree.retrieve.shape[1], len(chain))
    retrieve = np.full((len(tree.retrieve) + 1, width), -1, np.int64)
    retrieve[:-1, : tree.retrieve.shape[1]] = tree.retrieve
    retrieve[-1, : len(chain)] = chain
    children = list(tree.children)
    children[0] = (*children[0], n)
    children += [(i + 1,) for i in range(n, size - 1)] + [()]
    return TreeBuffers(
        tree.choices,
        tree.topk,
        np.concatenate([tree.tree_indices, np.full(length, -1, np.int64)]),
        np.concatenate([tree.positions, np.arange(1, length + 1)]).astype(np.int64),
        attn,
        retrieve,
        parent,
        tuple(children),
    )


def tree_tokens(tree: TreeBuffers, root: np.ndarray, head_topk: np.ndarray) -> np.ndarray:
    """Candidate tokens of every tree node: [B, N] from root [B] and head top-k [B, K, k]."""
    b = root.shape[0]
    k = tree.topk
    depth = tree.depth
    if depth and head_topk.shape[1] < depth:
        raise UsageError(f"tree is {depth} deep but there are only {head_topk.shape[1]} heads")
    flat = np.concatenate([root[:, None], head_topk[:, :depth, :k].reshape(b, -1)], axis=1)
    return flat[:, tree.tree_indices]


def tree_tokens_sequential(tree: TreeBuffers, root: np.ndarray, topk_at) -> np.ndarray:
    """Candidate tokens [B, N] for sequentially dependent (Hydra) heads or a draft, depth by
    depth: topk_at(head, paths [B, P, head + 1], nodes) gives the top-k token ids [B, P, k]
    after the P `nodes` at that depth that have children, each path being the tokens root..node."""
    tokens = np.zeros((root.shape[0], tree.size), np.int64)
    tokens[:, 0] = root
    for depth in range(tree.depth):
        parents = [i for i in range(tree.size) if tree.positions[i] == depth and tree.children[i]]
        paths = np.stack([tokens[:, _ancestry(tree, i)] for i in parents], axis=1)
        candidates = topk_at(depth, paths, parents)
        for j, i in enumerate(parents):
            for child in tree.children[i]:
                tokens[:, child] = candidates[:, j, tree.choices[child - 1][-1]]
    return tokens


def _ancestry(tree: TreeBuffers, node: int) -> list[int]:
    chain = []
    while node >= 0:
        chain.append(node)
        node = int(tree.parent[node])
    return chain[::-1]


# --------------------------------------------------------------------- tree optimisation


def expected_accept(choices, acc: np.ndarray) -> float:
    """Expected tokens per step = 1 + sum over nodes of the product of accuracies on its path.

    acc[k, r] = P(head k+1's rank-r token is the base's token) (measured on calibration data).
    """
    return 1.0 + sum(float(np.prod([acc[d, r] for d, r in enumerate(p)])) for p in choices)


def grow_tree(acc: np.ndarray, size: int) -> list[list[int]]:
    """Greedy sparse tree: repeatedly add the frontier node (next sibling or first child)
    with the highest product of accuracies along its path."""
    acc = np.asarray(acc, dtype=np.float64)
    heads, ranks = acc.shape

    def value(p):
        return float(np.prod([acc[d, r] for d, r in enumerate(p)]))

    chosen: list[tuple[int, ...]] = []
    frontier = {(0,)}
    while len(chosen) < size and frontier:
        best = max(frontier, key=lambda p: (value(p), -len(p), [-r for r in p]))
        frontier.discard(best)
        chosen.append(best)
        if best[-1] + 1 < ranks:
            frontier.add(best[:-1] + (best[-1] + 1,))
        if len(best) < heads:
            frontier.add(best + (0,))
    return [list(p) for p in sorted(chosen, key=lambda p: (len(p), p))]
