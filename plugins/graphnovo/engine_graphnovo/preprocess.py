"""Peak processing before the graph: Casanovo-like filters, deisotoping with fragment charge
deconvolution, and top-k peak selection per m/z window (all limits configurable).

Deisotoping is written here rather than taken from a library: spectrum_utils and pyteomics
have none, and ms_deisotope fits averagine envelopes for MS1 with a compiled stack; a fragment
spectrum only needs the monoisotopic peak of each short envelope and its charge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.io.peptides import PROTON

ISOTOPE_SPACING = 1.00335  # Da, 13C - 12C


@dataclass(frozen=True)
class PreprocessConfig:
    min_mz: float = 50.0
    max_mz: float = 2500.0
    top_n: int = 150
    min_relative_intensity: float = 0.01
    remove_precursor_tol: float = 2.0  # Da around the precursor m/z; 0 disables
    sqrt_intensity: bool = True  # compresses the dynamic range before ranking
    deisotope: bool = True  # drop isotope peaks; 2+ envelopes move to their 1+ m/z
    isotope_tol: float = 0.02  # Da, between envelope peaks
    window: float = 100.0  # Da, for window_top_k
    window_top_k: int = 0  # keep the k most intense peaks of each m/z window; 0: no window rule

    @classmethod
    def from_meta(cls, meta: dict) -> PreprocessConfig:
        """The settings a model recorded; fields it predates take their value of that time."""
        return cls(**{"deisotope": False, "window_top_k": 0, **meta})


def preprocess(
    mz: np.ndarray, intensity: np.ndarray, precursor_mz: float, config: PreprocessConfig = PreprocessConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Filter peaks; returns sorted m/z and intensities scaled to a maximum of 1.

    An empty result is possible (every peak filtered): callers skip such spectra."""
    mz = np.asarray(mz, dtype=np.float64)
    inten = np.asarray(intensity, dtype=np.float64)
    keep = (mz >= config.min_mz) & (mz <= config.max_mz) & (inten > 0)
    if config.remove_precursor_tol > 0:
        keep &= np.abs(mz - precursor_mz) > config.remove_precursor_tol
    mz, inten = mz[keep], inten[keep]
    if config.deisotope and mz.size:
        mz, inten = deisotope(mz, inten, config.isotope_tol)
    if mz.size == 0:
        return mz, inten
    if config.sqrt_intensity:
        inten = np.sqrt(inten)
    inten = inten / inten.max()
    keep = inten >= config.min_relative_intensity
    mz, inten = mz[keep], inten[keep]
    if config.window_top_k:
        mz, inten = window_top_k(mz, inten, config.window, config.window_top_k)
    if mz.size > config.top_n:
        top = np.argpartition(-inten, config.top_n - 1)[: config.top_n]
        mz, inten = mz[top], inten[top]
    order = np.argsort(mz, kind="stable")
    return mz[order], inten[order]


def deisotope(mz: np.ndarray, inten: np.ndarray, tol: float, max_charge: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Monoisotopic peaks only, each at its 1+ m/z, with its envelope's summed intensity.

    From the most intense peak down: a peak followed by a less intense peak 1.00335/z higher
    (z = max_charge .. 1, the highest charge that fits first) starts an envelope of charge z;
    the envelope's later peaks (each less intense than the one before) are removed, and a 2+
    monoisotopic peak moves to z * (m/z - proton) + proton. A peak already claimed by an
    envelope is not a start."""
    order = np.argsort(mz, kind="stable")
    mz, inten = mz[order], inten[order]
    claimed = np.zeros(mz.size, dtype=bool)
    out_mz, out_inten = mz.copy(), inten.copy()
    for i in np.argsort(-inten, kind="stable"):
        if claimed[i]:
            continue
        for z in range(max_charge, 0, -1):
            envelope = _envelope(mz, inten, claimed, i, z, tol)
            if envelope:
                claimed[envelope] = True
                out_inten[i] += inten[envelope].sum()
                out_mz[i] = z * (mz[i] - PROTON) + PROTON
                break
    keep = ~claimed
    return out_mz[keep], out_inten[keep]


def _envelope(mz, inten, claimed, i: int, z: int, tol: float) -> list[int]:
    """Indices of the isotope peaks after peak i at charge z (empty: no envelope)."""
    found, last = [], i
    for k in range(1, 4):
        target = mz[i] + k * ISOTOPE_SPACING / z
        j = int(np.searchsorted(mz, target - tol))
        j_end = int(np.searchsorted(mz, target + tol, side="right"))
        hits = [h for h in range(j, j_end) if not claimed[h] and inten[h] < inten[last]]
        if not hits:
            break
        last = max(hits, key=lambda h: inten[h])
        found.append(last)
    return found


def window_top_k(mz: np.ndarray, inten: np.ndarray, window: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most intense peaks of each m/z window [n * window, (n + 1) * window)."""
    bins = np.floor(mz / window).astype(np.int64)
    order = np.lexsort((-inten, bins))  # by window, then intensity down
    first = np.searchsorted(bins[order], bins[order], side="left")
    keep = order[np.arange(order.size) - first < k]
    return mz[keep], inten[keep]
