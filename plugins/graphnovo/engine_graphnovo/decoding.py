"""Shared decoding pieces: path -> segments, knapsack filling, the SeqFiller mass mask,
and the final precursor check. numpy only (used by the torch and onnxruntime paths)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import GraphBuilder, SpectrumGraph

ISOTOPE = 1.00335483507  # C13 - C12


@dataclass(frozen=True)
class Segment:
    mass: float  # gap between consecutive path nodes
    token: int  # forced token id when exactly one single residue matches, else -1
    first: bool  # starts at the source (an N-terminal token may be used)


def path_segments(graph: SpectrumGraph, path: list[int]) -> list[Segment]:
    out = []
    for a, b in zip(path[:-1], path[1:], strict=False):
        k = graph.edge_index(a, b)
        token = int(graph.single[k]) if k is not None else -1
        out.append(Segment(float(graph.masses[b] - graph.masses[a]), token, a == 0))
    return out


def fill_knapsack(
    segments: list[Segment],
    builder: GraphBuilder,
    tol: float | None = None,
    final_tol: float | None = None,
    carry_residual: bool = True,
):
    """Non-learned fill: each gap gets a fewest-residue composition (heavy first); the
    last gap is first tried within ``final_tol`` so the sum matches the precursor.

    Returns (token ids, per-residue scores) or None when a gap has no composition."""
    tol = tol if tol is not None else 2 * builder.config.ms2_tol
    masses = builder.table.masses
    ids: list[int] = []
    scores: list[float] = []
    carry = 0.0  # residual of earlier gaps, so that errors do not accumulate
    for seg in segments:
        if seg.token >= 0:
            ids.append(seg.token)
            scores.append(1.0)
            carry += (seg.mass - masses[seg.token]) * carry_residual
            continue
        gap = Segment(seg.mass + carry, seg.token, seg.first)
        comp = None
        if final_tol is not None and seg is segments[-1]:
            comp = _gap_composition(gap, builder, final_tol)
        comp = comp if comp is not None else _gap_composition(gap, builder, tol)
        if comp is None:
            return None
        carry += (gap.mass - masses[comp].sum()) * carry_residual
        comp = sorted(comp, key=lambda t: (not builder.table.nterm[t], -masses[t]))
        ids.extend(comp)
        scores.extend([1.0 / len(comp)] * len(comp))
    return ids, scores


def _gap_composition(seg: Segment, builder: GraphBuilder, tol: float) -> list[int] | None:
    ks, res_ids = builder.knapsack, builder.residue_ids
    best = None
    nterm_ids = np.flatnonzero(builder.table.nterm) if seg.first else []
    for extra, off in [(None, 0.0)] + [(int(t), builder.table.masses[t]) for t in nterm_ids]:
        comp = ks.composition(seg.mass - off, tol)
        if comp is None:
            continue
        comp = [int(res_ids[c]) for c in comp] + ([extra] if extra is not None else [])
        if best is None or len(comp) < len(best):
            best = comp
    return best


def allowed_tokens(
    remaining, at_start, builder: GraphBuilder, tol: float, close_tol: float | None = None
) -> np.ndarray:
    """SeqFiller mass mask: tokens that leave a remainder the knapsack can still fill
    (or that close the gap within close_tol, default tol). N-terminal tokens only at
    the peptide start. ``remaining`` and ``at_start``: scalars, or one per beam (B,)
    for a (B, tokens) mask."""
    rest = np.asarray(remaining, dtype=np.float64)[..., None] - builder.table.masses
    close = tol if close_tol is None else close_tol
    ok = (np.abs(rest) <= close) | ((rest > tol) & builder.knapsack.feasible(rest, tol))
    return ok & (np.asarray(at_start)[..., None] | ~builder.table.nterm)


def precursor_match(
    tokens_mass: float, precursor_mass: float, ppm: float, isotopes: tuple[int, ...] = (0,)
) -> tuple[bool, float]:
    """Is the residue sum within ppm of M (optionally M - k isotope spacings)? Returns
    (match, error in ppm against the closest isotope)."""
    errs = [(tokens_mass - (precursor_mass - k * ISOTOPE)) / precursor_mass * 1e6 for k in isotopes]
    err = min(errs, key=abs)
    return abs(err) <= ppm, float(err)
