"""The Medusa decoding loop, written once over an array backend (torch or onnxruntime).

Batches of prompts of different lengths are left-padded; padding and rejected tree nodes
stay in the KV cache as slots that no query may attend to, so every row keeps its own
positions and accepted path. An empty tree (root only) is plain one-token-per-step decoding.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import attrs
import numpy as np

from engine.errors import EngineError, UsageError

from .drafting import Drafter
from .options import DEFAULT_LOOKUP, SAMPLING_MODES
from .retrieval import ChainLookup, Datastore
from .tree import TreeBuffers, append_chain, build_tree, tree_tokens, tree_tokens_sequential
from .verify import sample, verify_greedy, verify_lossless, verify_typical, warp


def check_finite(logits: np.ndarray) -> None:
    if not np.isfinite(logits).all():
        raise EngineError("the base model produced non-finite logits (NaN/inf): check the weights and dtype")


@attrs.define
class Policy:
    """How tokens are chosen: greedy (temperature 0), lossless or typical sampling."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    mode: str = "lossless"
    eps: float = 0.09
    delta: float = 0.3
    rng: np.random.Generator = attrs.field(factory=np.random.default_rng)

    def __attrs_post_init__(self):
        if self.mode not in SAMPLING_MODES:
            raise UsageError(f"unknown sampling mode {self.mode!r}; choose from {', '.join(SAMPLING_MODES)}")

    def first(self, logits: np.ndarray) -> int:
        if self.temperature == 0:
            return int(logits.argmax())
        return sample(warp(logits, self.temperature, self.top_k, self.top_p), self.rng)

    def verify(self, tree, tokens, logits):
        if self.temperature == 0:
            return verify_greedy(tree, tokens, logits)
        kw = dict(temperature=self.temperature, rng=self.rng, top_k=self.top_k, top_p=self.top_p)
        if self.mode == "typical":
            return verify_typical(tree, tokens, logits, eps=self.eps, delta=self.delta, **kw)
        return verify_lossless(tree, tokens, logits, **kw)


class RowOutput:
    """Collects one row's tokens; applies max_new_tokens, EOS, stop strings and streaming."""

    def __init__(
        self, decode: Callable, max_new: int, eos_ids, stop: Sequence[str], stream: Callable[[str], None] | None
    ):
        self.decode, self.max_new, self.eos_ids = decode, max_new, set(eos_ids)
        self.stop, self.stream = tuple(stop), stream
        self.tokens: list[int] = []
        self._text, self._decoded = "", 0
        self.emitted = 0
        self.done = False
        self.steps = 0

    @property
    def text(self) -> str:
        """The answer so far; decoded when asked (after every token only with stop strings or streaming)."""
        if self._decoded != len(self.tokens):
            self._text = self.decode([t for t in self.tokens if t not in self.eos_ids])
            self._decoded = len(self.tokens)
        return self._text

    def push(self, token: int) -> None:
        if self.done:
            return
        self.tokens.append(int(token))
        if token in self.eos_ids:
            self.done = True
        else:
            for s in self.stop:
                at = self.text.find(s)
                if at >= 0:
                    self._text, self.done = self.text[:at], True
        if len(self.tokens) >= self.max_new:
            self.done = True
        self._flush()

    def _flush(self) -> None:
        if self.stream is None:
            return
        end = len(self.text)
        if not self.done:
            if self.text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait
                return
            for s in self.stop:  # hold back a possible beginning of a stop string
                for n in range(min(len(s) - 1, end), 0, -1):
                    if self.text.endswith(s[:n]):
                        end = min(end, len(self.text) - n)
                        break
        if end > self.emitted:
            self.stream(self.text[self.emitted : end])
            self.emitted = end


def shared_prefix(slots: np.ndarray) -> int:
    """Length of the leading run of slots that every row keeps in place (0, 1, 2, ...)."""
    same = (slots == np.arange(slots.shape[1])[None]).all(axis=0)
    return int(np.argmin(same)) if not same.all() else slots.shape[1]


def prefill_arrays(prompts: Sequence[Sequence[int]], pad_id: int = 0):
    """Left-padded ids [B, L], positions [B, L], valid [B, L] and the prefill mask [B, L, L]."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad_id, np.int64)
    valid = np.zeros((len(prompts), width), bool)
    for b, p in enumerate(prompts):
        ids[b, width - len(p) :] = p
        valid[b, width - len(p) :] = True
    positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0)
    causal = np.tril(np.ones((width, width), bool))
    allowed = (causal[None] & valid[:, None, :]) | np.eye(width, dtype=bool)[None]
    return ids, positions, valid, allowed


class HeadQueries:
    """The heads at queries of the latest forward, written once for every back end: a back end
    gives ``hidden_at(index)`` (np [B, d]), ``topk_of`` and ``hydra_topk_of`` on given hidden states;
    a back end running a draft layer sets ``drafting`` and gives ``draft_step`` and ``draft_kv_shape``."""

    drafting = False

    def head_topk(self, index: np.ndarray, k: int, depth: int | None = None) -> np.ndarray:
        """Medusa heads: the top-k token ids [B, depth or K, k] at query index[b]."""
        return self.topk_of(self.hidden_at(index), k, depth)

    def path_topk(self, index: np.ndarray, head: int, paths: np.ndarray, k: int) -> np.ndarray:
        """Hydra: head `head`'s top-k token ids [B, P, k] at query index[b], for P paths per row
        (paths [B, P, head + 1]: the tokens each path holds so far)."""
        b, n, width = paths.shape
        h = np.repeat(self.hidden_at(index), n, axis=0)
        return self.hydra_topk_of(h, head, paths.reshape(b * n, width), k).reshape(b, n, -1)


def with_lookup(tree: TreeBuffers, top: np.ndarray, lookup: np.ndarray | None, depth: int = 0) -> np.ndarray:
    """Top-k tokens [B, P, k] of the root's proposer (depth 0) with each row's ``lookup`` token
    (>= 0) in the rank of the root's last child, unless a child already holds it: a chain's one
    candidate is replaced, a wide tree keeps its best ones. Deeper proposers' unchanged."""
    if depth or lookup is None or not (lookup >= 0).any():
        return top
    ranks = [tree.choices[child - 1][-1] for child in tree.children[0]]
    use = (lookup >= 0) & ~(top[:, 0, ranks] == lookup[:, None]).any(axis=1)
    top = top.copy()
    top[use, 0, ranks[-1]] = lookup[use]
    return top


def propose(
    backend,
    tree: TreeBuffers,
    last: np.ndarray,
    root: np.ndarray,
    drafter: Drafter | None,
    lookup: np.ndarray | None = None,
) -> np.ndarray:
    """The tree's candidate tokens [B, N] from the heads at query `last` of the latest forward
    (the last accepted node: the tree forward cannot know it in advance, so the heads run after),
    or from the draft; ``lookup`` [B] (>= 0 where a row has one, prompt lookup) takes the place of
    the root's last child (:func:`with_lookup`), before deeper sequential heads read the path."""
    if not tree.depth:
        return root[:, None]
    if drafter is not None:
        return tree_tokens_sequential(
            tree,
            root,
            lambda d, paths, nodes: with_lookup(tree, drafter.topk_at(tree, d, paths, nodes, tree.topk), lookup, d),
        )
    if backend.sequential_heads:
        return tree_tokens_sequential(
            tree,
            root,
            lambda head, paths, _: with_lookup(tree, backend.path_topk(last, head, paths, tree.topk), lookup, head),
        )
    return tree_tokens(tree, root, with_lookup(tree, backend.head_topk(last, tree.topk, tree.depth), lookup))


def retrieved_chains(tree: TreeBuffers, tokens: np.ndarray, chains: list[list[int]], rows) -> tuple:
    """The tree and candidates [B, N] with each row's retrieved chain appended under the root, as
    long as the longest (shorter chains are padded with their root: a pad is verified like any
    candidate); unchanged where no row has one."""
    length = max((len(c) for c, r in zip(chains, rows, strict=False) if not r.done), default=0)
    if not length:
        return tree, tokens
    extra = np.repeat(tokens[:, :1], length, axis=1)
    for b, c in enumerate(chains):
        extra[b, : len(c)] = c[:length]
    return _chain_tree(tree, length), np.concatenate([tokens, extra], axis=1)


@functools.lru_cache(maxsize=64)
def _chain_tree(tree: TreeBuffers, length: int) -> TreeBuffers:  # trees hash by identity
    return append_chain(tree, length)


def accepted_pairs(backend, tokens: np.ndarray, paths: list, nxt: np.ndarray, width: int):
    """The draft's new true pairs: each accepted node's base feature and the token after it
    (the next accepted node's, or the base's own next token after the last)."""
    b = len(paths)
    index = np.zeros((b, width), np.int64)
    follow = np.zeros((b, width), np.int64)
    mask = np.zeros((b, width), bool)
    for r, p in enumerate(paths):
        index[r, : len(p)] = p
        follow[r, : len(p)] = np.append(tokens[r, p[1:]], nxt[r])
        mask[r, : len(p)] = True
    feats = np.stack([backend.hidden_at(index[:, m]) for m in range(width)], 1)
    return feats, follow, mask


def medusa_generate(
    backend,
    prompts: Sequence[Sequence[int]],
    *,
    tree: TreeBuffers | None,
    policy: Policy,
    max_new_tokens: int,
    decode: Callable,
    eos_ids=(),
    stop: Sequence[str] = (),
    stream=None,
    on_step: Callable[[], None] | None = None,
    lookup: int = 0,
    chain: int = 0,
    datastore: Datastore | None = None,
    chain_share: float = 0.0,
) -> tuple[list[RowOutput], float]:
    """Generate for a batch of token-id prompts; returns (row outputs, seconds).
    ``on_step`` is called after every verification step (progress, cancellation); ``lookup``
    n > 0: where the context's last n tokens occurred before, the token after them takes the place
    of the root's last child (prompt lookup); ``chain`` k > 0 instead: up to k tokens after them,
    or the ``datastore``'s continuation while ``chain_share`` of its occurrences agree, form a chain
    beside the tree (:func:`retrieved_chains`).
    Verification, so the output, is unchanged by either."""
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UsageError("empty prompt: give some text to continue")
    if stream is not None and len(prompts) != 1:
        raise UsageError("streaming works with one prompt at a time")
    tree = tree or build_tree([])
    longest = max(len(p) for p in prompts)
    if longest + 1 > backend.context:
        raise UsageError(f"prompt of {longest} tokens does not fit the model's context of {backend.context}")
    t0 = time.perf_counter()
    rows = [RowOutput(decode, max_new_tokens, eos_ids, stop, stream) for _ in prompts]
    backend.reset()
    ids, positions, valid, allowed = prefill_arrays(prompts)
    logits = backend.forward(ids, positions, allowed, logits_at=ids.shape[1] - 1)[:, -1]
    check_finite(logits)
    last = np.full(len(prompts), ids.shape[1] - 1)
    root = np.array([policy.first(row) for row in logits], np.int64)
    next_pos = np.array([len(p) for p in prompts], np.int64)
    for r, t in zip(rows, root, strict=True):
        r.steps = 1
        r.push(t)
    drafter = Drafter(backend, len(prompts)) if tree.depth and backend.drafting else None
    if drafter is not None:
        drafter.accept(backend.hidden_at(last)[:, None], root[:, None], np.ones((len(prompts), 1), bool))
    lookups = []
    if lookup or chain:
        ngram = lookup or DEFAULT_LOOKUP
        context = [[*p, *r.tokens] for p, r in zip(prompts, rows, strict=True)]
        lookups = [ChainLookup(ngram, tokens, datastore, chain_share) for tokens in context]
    heads_tree = tree
    while not all(r.done for r in rows):
        if int(next_pos.max()) + heads_tree.depth + chain + 1 > backend.context:
            break  # the context is full: stop where we are
        copied = None
        if lookups and heads_tree.depth and not chain:
            copied = np.array([(c.propose(1) or [-1])[0] for c in lookups], np.int64)
        tokens = propose(backend, heads_tree, last, root, drafter, copied)
        tree, tokens = retrieved_chains(heads_tree, tokens, [c.propose(chain) for c in lookups] if chain else [], rows)
        n = tokens.shape[1]
        attn = np.broadcast_to(tree.attn[None], (len(rows), n, n))
        allowed = np.concatenate([np.broadcast_to(valid[:, None, :], (len(rows), n, valid.shape[1])), attn], axis=2)
        logits = backend.forward(tokens, next_pos[:, None] + tree.positions[None], allowed)
        check_finite(logits)
        paths, nxt = [], np.zeros_like(root)
        for b, r in enumerate(rows):
            if r.done:
                paths.append(np.zeros(1, np.int64))
                continue
            path, nxt[b] = policy.verify(tree, tokens[b], logits[b])
            paths.append(path)
            r.steps += 1
            for t in tokens[b, path[1:]]:
                r.push(t)
            r.push(nxt[b])
            if lookups:
                lookups[b].extend([*tokens[b, path[1:]], nxt[b]])
        width = max(len(p) for p in paths)
        if drafter is not None:
            drafter.accept(*accepted_pairs(backend, tokens, paths, nxt, width))
        past = valid.shape[1]
        slots = np.full((len(rows), past + width), past, np.int64)
        slots[:, :past] = np.arange(past)
        keep = np.zeros((len(rows), width), bool)
        for b, p in enumerate(paths):
            slots[b, past : past + len(p)] = past + p
            keep[b, : len(p)] = True
        if slots.shape[1] != past + n or (slots != np.arange(past + n)).any():  # plain decoding keeps all
            backend.keep(slots)
        valid = np.concatenate([valid, keep], axis=1)
        next_pos += np.array([len(p) for p in paths])
        last = np.array([p[-1] for p in paths])
        root = nxt
        if on_step is not None:
            on_step()
    return rows, time.perf_counter() - t0
