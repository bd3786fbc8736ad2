"""Graph -> model arrays, padding into batches, and training labels (numpy only)."""

from __future__ import annotations

import numpy as np

from engine.io.peptides import ResidueTable, token_mass

from .graph import SpectrumGraph, label_nodes

FEATURE_KEYS = ("ions", "masses", "precursor", "charge", "pair_code", "node_mask")


def graph_arrays(graph: SpectrumGraph) -> dict[str, np.ndarray]:
    """Model inputs for one graph (unbatched)."""
    n = graph.n
    return {
        "ions": graph.ions.astype(np.float32),
        "masses": graph.masses.astype(np.float32),
        "precursor": np.float32(graph.precursor_mass),
        "charge": np.int64(graph.charge),
        "pair_code": graph.pair_codes(),
        "node_mask": np.ones(n, dtype=bool),
    }


def pad_batch(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack feature dicts, padding node axes to the largest graph."""
    n = max(it["masses"].shape[0] for it in items)
    out = {}
    for key in FEATURE_KEYS:
        arrs = []
        for it in items:
            a = np.asarray(it[key])
            if a.ndim == 0:
                arrs.append(a)
                continue
            rest = [(0, n - a.shape[1])] if key == "pair_code" else [(0, 0)] * (a.ndim - 1)
            pad = [(0, n - a.shape[0])] + rest
            arrs.append(np.pad(a, pad))
        out[key] = np.stack(arrs)
    return out


def path_label(graph: SpectrumGraph, residue_masses: np.ndarray):
    """PathSearcher teacher-forcing label: input path, next masks and soft targets.

    Label steps are the graph nodes within tolerance of each true prefix mass (prefixes
    without a node are skipped), ending at the sink. Each step's target spreads over
    its matching nodes (closer = heavier weight), restricted to nodes allowed after
    the previous step. Returns (path (T,), next_mask (T, n), target (T, n))."""
    steps = label_nodes(graph, residue_masses)
    mask = graph.next_mask()
    path, masks, targets = [0], [], []
    for hits in steps:
        prev = path[-1]
        allowed = hits[mask[prev, hits]]
        if allowed.size == 0:
            continue
        err = np.abs(graph.masses[allowed] - graph.masses[allowed].mean())
        w = np.exp(-((err / graph.node_tol) ** 2))
        target = np.zeros(graph.n, dtype=np.float32)
        target[allowed] = w / w.sum()
        masks.append(mask[prev])
        targets.append(target)
        path.append(int(allowed[np.argmax(target[allowed])]))
        if path[-1] == graph.n - 1:
            break
    if path[-1] != graph.n - 1:  # the sink is always allowed: close the path there
        target = np.zeros(graph.n, dtype=np.float32)
        target[-1] = 1.0
        masks.append(mask[path[-1]])
        targets.append(target)
        path.append(graph.n - 1)
    return np.array(path[:-1], dtype=np.int64), np.stack(masks), np.stack(targets)


def token_label(table: ResidueTable, tokens: tuple[str, ...], bos: int, boundaries: np.ndarray):
    """SeqFiller teacher-forcing label: (input ids, prefix masses, gap masses, targets).

    ``boundaries`` are the masses of the label path's nodes (ending at the sink): the
    gap at a position is the mass left to the next boundary, as at inference, where the
    boundaries are the PathSearcher's nodes."""
    ids = np.array(table.encode(tokens), dtype=np.int64)
    masses = np.array([token_mass(table.tokens[i]) for i in ids])
    prefix = np.concatenate([[0.0], np.cumsum(masses)[:-1]])
    nxt = np.searchsorted(boundaries, prefix + 0.5)  # first boundary clearly beyond the prefix
    gap = boundaries[np.minimum(nxt, boundaries.size - 1)] - prefix
    inputs = np.concatenate([[bos], ids[:-1]]).astype(np.int64)
    return inputs, prefix.astype(np.float32), gap.astype(np.float32), ids


def pad_sequences(seqs: list[np.ndarray], value=0) -> tuple[np.ndarray, np.ndarray]:
    """Pad a list of (T_i, ...) arrays on axis 0; also returns the (B, T) valid mask."""
    t = max(s.shape[0] for s in seqs)
    out = np.full((len(seqs), t) + seqs[0].shape[1:], value, dtype=seqs[0].dtype)
    valid = np.zeros((len(seqs), t), dtype=bool)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
        valid[i, : s.shape[0]] = True
    return out, valid
