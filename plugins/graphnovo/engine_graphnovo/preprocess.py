"""Casanovo-like peak preprocessing (all limits configurable)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PreprocessConfig:
    min_mz: float = 50.0
    max_mz: float = 2500.0
    top_n: int = 150
    min_relative_intensity: float = 0.01
    remove_precursor_tol: float = 2.0  # Da around the precursor m/z; 0 disables
    sqrt_intensity: bool = True  # compresses the dynamic range before ranking


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
    if mz.size == 0:
        return mz, inten
    if config.sqrt_intensity:
        inten = np.sqrt(inten)
    inten = inten / inten.max()
    keep = inten >= config.min_relative_intensity
    mz, inten = mz[keep], inten[keep]
    if mz.size > config.top_n:
        top = np.argpartition(-inten, config.top_n - 1)[: config.top_n]
        mz, inten = mz[top], inten[top]
    order = np.argsort(mz, kind="stable")
    return mz[order], inten[order]
