"""Knapsack tables over residue masses.

One table serves feasibility and edges: ``count[b]`` is the fewest residues whose masses
sum to bin ``b`` (bins of RESOLUTION Da; 255 = unreachable). Feasibility of a node is
``count <= 254`` within the node window; an edge needs ``count <= 6`` within the edge
window. 1e-3 Da bins (not 1e-4) keep the table at 1.2 M entries; the rounding error of a
6-residue sum stays below 0.003 Da, well inside the 0.02 Da windows.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RESOLUTION = 1e-3
MAX_MASS = 1200.0  # Da: covers 6 x W; heavier masses are treated as feasible
UNREACHABLE = 255
MAX_EDGE_RESIDUES = 6


def to_bins(mass) -> np.ndarray:
    return np.rint(np.asarray(mass, dtype=np.float64) / RESOLUTION).astype(np.int64)


class Knapsack:
    """Min-count table for a residue mass set, plus windowed (dilated) views."""

    def __init__(self, residue_masses: np.ndarray, max_mass: float = MAX_MASS):
        self.masses = np.asarray(residue_masses, dtype=np.float64)
        self.bins = np.unique(to_bins(self.masses))
        self.size = int(round(max_mass / RESOLUTION)) + 1
        self.count = self._min_count()
        self._dilated: dict[int, np.ndarray] = {}

    def _min_count(self) -> np.ndarray:
        count = np.full(self.size, UNREACHABLE, dtype=np.uint8)
        count[0] = 0
        frontier = count == 0
        for k in range(1, UNREACHABLE):
            nxt = np.zeros_like(frontier)
            for b in self.bins:
                nxt[b:] |= frontier[: self.size - b]
            nxt &= count == UNREACHABLE
            if not nxt.any():
                break
            count[nxt] = k
            frontier = nxt
        return count

    def dilated(self, half_width_bins: int) -> np.ndarray:
        """count minimised over [b - w, b + w] (a sliding minimum by doubling)."""
        w = int(half_width_bins)
        if w not in self._dilated:
            self._dilated[w] = _window_min(self.count, w)
        return self._dilated[w]

    def min_residues(self, mass, tol: float) -> np.ndarray:
        """Fewest residues matching each mass within tol; masses above the table -> 0
        (treated as feasible), negative masses beyond tol -> UNREACHABLE."""
        mass = np.asarray(mass, dtype=np.float64)
        table = self.dilated(int(np.ceil(tol / RESOLUTION)))
        b = to_bins(mass)
        out = np.full(b.shape, UNREACHABLE, dtype=np.uint8)
        inside = (b >= 0) & (b < self.size)
        out[inside] = table[b[inside]]
        out[b >= self.size] = 0
        # a window that straddles zero: the empty composition is within tol
        out[(b < 0) & (b >= -int(np.ceil(tol / RESOLUTION)))] = table[0]
        return out

    def feasible(self, mass, tol: float) -> np.ndarray:
        return self.min_residues(mass, tol) < UNREACHABLE

    def composition(self, mass: float, tol: float) -> list[int] | None:
        """A fewest-residue multiset (indices into masses) summing to mass within tol.

        Masses beyond the table are first filled greedily with heavy residues."""
        picks: list[int] = []
        order = np.argsort(-self.masses)
        m = float(mass)
        limit = MAX_MASS - 200.0
        while m > limit:  # heavy residues first, keeping the remainder reachable
            for i in order:
                rest = m - self.masses[i]
                if rest > limit or self.feasible(rest, tol):
                    picks.append(int(i))
                    m = rest
                    break
            else:
                return None
        w = int(np.ceil(tol / RESOLUTION))
        centre = int(round(m / RESOLUTION))
        lo, hi = max(centre - w, 0), min(centre + w, self.size - 1)
        if lo > hi:
            return None
        window = self.count[lo : hi + 1]
        if window.min() == UNREACHABLE:
            return None
        # prefer the bin closest to the target among those with the fewest residues
        cands = np.flatnonzero(window == window.min()) + lo
        b = int(cands[np.argmin(np.abs(cands - centre))])
        residue_bins = to_bins(self.masses)
        while b > 0:
            k = self.count[b]
            for i, rb in enumerate(residue_bins):
                if rb <= b and self.count[b - rb] == k - 1:
                    picks.append(i)
                    b -= rb
                    break
        return picks


def _window_min(a: np.ndarray, w: int) -> np.ndarray:
    """Sliding minimum of half-width w via van Herk style doubling (O(n log w))."""
    out = a.copy()
    span = 0  # out[i] = min(a[i - span .. i + span])
    step = 1
    while span < w:
        s = min(step, w - span)
        shifted = out.copy()
        np.minimum(shifted[s:], out[:-s], out=shifted[s:])
        np.minimum(shifted[:-s], out[s:], out=shifted[:-s])
        out = shifted
        span += s
        step *= 2
    return out


@lru_cache(maxsize=8)
def knapsack_for(masses: tuple[float, ...]) -> Knapsack:
    """Process-wide cache: building the table takes ~0.3 s."""
    return Knapsack(np.asarray(masses))
