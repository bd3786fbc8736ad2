"""Retrieved drafts (REST, He et al. 2024): a chain of tokens copied from the context or from a
datastore of answers, verified beside the heads' tree at no model cost (numpy only).

The datastore is one token array (answers joined by a separator) with, for every position, the
key of the up to ``NGRAM`` tokens from it; sorted, the occurrences of any n-gram (n <= NGRAM) are
one range of the sorted keys, found by ``np.searchsorted``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import UsageError

from .options import DATASTORE_FILE

NGRAM = 4  # longest context suffix looked up: 4 tokens of 16 bits fill a 64-bit key
SEPARATOR = 0xFFFF  # ends every stored answer; no token id of a supported vocabulary
BUILD_COMMAND = "engine train medusa --data sharegpt --datastore-only -o DIR"
SAMPLE = 400  # occurrences read per lookup: enough to count the common continuations


class Datastore:
    """Answers as tokens; :meth:`propose` gives the most frequent continuation of the context's
    longest suffix found among them."""

    def __init__(self, tokens: np.ndarray):
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or not len(tokens) or tokens[-1] != SEPARATOR:
            raise UsageError("a datastore is a 1-D token array that ends with its separator")
        self.tokens = tokens.astype(np.int64)
        self.sequences = int((self.tokens == SEPARATOR).sum())
        padded = np.concatenate([self.tokens, np.full(NGRAM - 1, SEPARATOR, np.int64)])
        keys = np.zeros(len(self.tokens), np.uint64)
        for j in range(NGRAM):
            keys = (keys << np.uint64(16)) | padded[j : j + len(self.tokens)].astype(np.uint64)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> Datastore:
        if not sequences:
            raise UsageError("a datastore needs at least one answer")
        if max((max(s, default=0) for s in sequences), default=0) >= SEPARATOR:
            raise UsageError(f"a datastore holds token ids below {SEPARATOR}: this vocabulary is too large")
        return cls(np.concatenate([np.asarray([*s, SEPARATOR], np.uint16) for s in sequences]))

    @classmethod
    def load(cls, path: str | Path) -> Datastore:
        return cls(np.load(path, allow_pickle=False))

    def save(self, path: str | Path) -> Path:
        """Written to a temporary file and renamed (a reader never sees half a store)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, self.tokens.astype(np.uint16), allow_pickle=False)
        os.replace(tmp, path)
        return path

    def __len__(self) -> int:
        return int((self.tokens != SEPARATOR).sum())

    def propose(self, context: Sequence[int], k: int, min_share: float = 0.0) -> list[int]:
        """Up to k tokens: the most frequent continuation of the longest suffix of the context
        (at most NGRAM tokens) that occurs in the store, token by token, while the share of the
        occurrences that continue so is at least ``min_share``; [] if none occurs."""
        for n in range(min(NGRAM, len(context)), 0, -1):
            tail = [int(t) for t in context[-n:]]
            if max(tail) >= SEPARATOR:
                return []
            shift = np.uint64(16 * (NGRAM - n))
            low = np.uint64(_pack(tail)) << shift
            lo = int(np.searchsorted(self.keys, low, side="left"))
            hi = int(np.searchsorted(self.keys, low | ((np.uint64(1) << shift) - np.uint64(1)), side="right"))
            if hi > lo:
                picks = np.unique(np.linspace(lo, hi - 1, min(SAMPLE, hi - lo)).astype(np.int64))
                return self._top_path(self.order[picks] + n, k, min_share)
        return []

    def _top_path(self, positions: np.ndarray, k: int, min_share: float) -> list[int]:
        path: list[int] = []
        total = len(positions)
        while len(path) < k and len(positions):
            following = self.tokens[positions]
            values, counts = np.unique(following, return_counts=True)
            best = int(values[counts.argmax()])
            # stop where most occurrences end their answer, or too few of all the suffix's continue so
            if best == SEPARATOR or counts.max() / total < min_share:
                break
            path.append(best)
            positions = positions[following == best] + 1
        return path


def _pack(tokens: Sequence[int]) -> int:
    key = 0
    for t in tokens:
        key = (key << 16) | t
    return key


class ChainLookup:
    """One row's retrieved chain: the tokens that followed the latest earlier occurrence of the
    context's last ``n`` tokens (prompt and answer so far, kept in a dict as tokens arrive), or,
    where the context has none, the datastore's continuation (``min_share``: see :meth:`Datastore.propose`)."""

    def __init__(self, n: int, tokens: Sequence[int], store: Datastore | None = None, min_share: float = 0.0):
        self.n, self.store, self.min_share, self.tokens, self.after = max(n, 1), store, min_share, [], {}
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            if len(self.tokens) >= self.n:
                self.after[tuple(self.tokens[-self.n :])] = len(self.tokens)  # the latest occurrence wins
            self.tokens.append(int(token))

    def propose(self, k: int) -> list[int]:
        at = self.after.get(tuple(self.tokens[-self.n :]))
        if at is not None:
            return self.tokens[at : at + k]
        return self.store.propose(self.tokens[-NGRAM:], k, self.min_share) if self.store is not None else []


def open_datastore(source) -> Datastore | None:
    """A Datastore as given, read from a file, or the one a heads or artifact folder holds (None if it holds none)."""
    if source is None or isinstance(source, Datastore):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / DATASTORE_FILE
        if not path.is_file():
            return None
    elif not path.is_file():
        raise UsageError(f"datastore {source} does not exist ({BUILD_COMMAND} writes one)")
    try:
        return Datastore.load(path)
    except (ValueError, OSError):
        raise UsageError(f"cannot read datastore {path}: not a token array as {BUILD_COMMAND} writes") from None
