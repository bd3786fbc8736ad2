"""Spectrum simulator over tryptic peptides of a proteome (training data).

b, y and a ions at charges 1-3, H2O/NH3 losses, their 13C isotope peaks, noise peaks,
log-normal intensity variation, a proline effect, and a controllable missing-fragmentation
rate: each cleavage loses all its fragment ions with probability ``missing``.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.io.peptides import CO, H2O, NH3, PROTON, residue_masses

from .preprocess import ISOTOPE_SPACING

STANDARD = set("ACDEFGHIKLMNPQRSTVWY")


def read_fasta(path: Path):
    opener = gzip.open if str(path).endswith(".gz") else open
    seq: list[str] = []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith(">"):
                if seq:
                    yield "".join(seq)
                seq = []
            else:
                seq.append(line.strip())
    if seq:
        yield "".join(seq)


def tryptic_peptides(proteins, min_len: int = 7, max_len: int = 25, missed: int = 1) -> list[str]:
    """Cleave after K/R unless followed by P; up to ``missed`` missed cleavages."""
    out = set()
    for prot in proteins:
        pieces = [p for p in re.sub(r"(?<=[KR])(?!P)", " ", prot).split(" ") if p]
        for i in range(len(pieces)):
            for k in range(missed + 1):
                pep = "".join(pieces[i : i + k + 1])
                if min_len <= len(pep) <= max_len and set(pep) <= STANDARD:
                    out.add(pep)
    return sorted(out)


@dataclass(frozen=True)
class SimConfig:
    missing: tuple[float, float] = (0.0, 0.5)  # per-spectrum missing-cleavage rate range
    noise_peaks: tuple[int, int] = (30, 250)  # real HCD spectra run from ~30 to several hundred peaks
    isotopes: bool = True  # +1 and +2 13C peaks after each fragment (a fifth of real HCD peaks)
    mass_error: float = 0.004  # Da, sd of fragment m/z error
    precursor_ppm: float = 2.0
    p_oxidation: float = 0.25
    p_deamidation: float = 0.03
    p_nterm: float = 0.06  # acetyl or carbamyl
    p_pyro: float = 0.3  # N-terminal Q -> pyro-Glu


def modify(seq: str, rng: np.random.Generator, cfg: SimConfig) -> tuple[str, ...]:
    toks = []
    for aa in seq:
        if aa == "C":
            toks.append("C[Carbamidomethyl]")
        elif aa == "M" and rng.random() < cfg.p_oxidation:
            toks.append("M[Oxidation]")
        elif aa in "NQ" and rng.random() < cfg.p_deamidation:
            toks.append(f"{aa}[Deamidated]")
        else:
            toks.append("L" if aa == "I" else aa)
    if seq[0] == "Q" and toks[0] == "Q" and rng.random() < cfg.p_pyro:
        toks.insert(0, "[Ammonia-loss]-")
    elif rng.random() < cfg.p_nterm:
        toks.insert(0, "[Acetyl]-" if rng.random() < 0.4 else "[Carbamyl]-")
    return tuple(toks)


def simulate(
    tokens: tuple[str, ...], charge: int, rng: np.random.Generator, cfg: SimConfig = SimConfig()
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """-> (mz, intensity, precursor m/z, missing rate used)."""
    rm = residue_masses(tokens)
    M = float(rm.sum())
    prefix = np.cumsum(rm)[:-1]
    L = rm.size
    missing = rng.uniform(*cfg.missing)
    keep = rng.random(L - 1) >= missing
    # proline effect: cleavage N-terminal to P is strong
    residues = [t[0] for t in tokens if not t.endswith("-")]
    boost = np.array([3.0 if residues[i + 1] == "P" else 1.0 for i in range(L - 1)])
    mz_list, int_list = [], []
    max_z = max(1, min(3, charge - 1 if charge > 2 else 1))
    for kind, neutral, base, p_seen in (
        ("y", M - prefix + H2O, 1.0, 0.85),
        ("b", prefix, 0.5, 0.65),
        ("a", prefix - CO, 0.15, 0.3),
    ):
        for z in range(1, max_z + 1):
            for loss, lscale, p_loss in ((0.0, 1.0, 1.0), (H2O, 0.15, 0.3), (NH3, 0.1, 0.25)):
                seen = keep & (rng.random(L - 1) < p_seen * p_loss * (0.6 if z > 1 else 1.0))
                if kind == "a":
                    seen &= prefix < 400
                mz = (neutral - loss + z * PROTON) / z
                inten = base * lscale * boost * rng.lognormal(0.0, 0.8, L - 1) / z
                mz_list.append(mz[seen])
                int_list.append(inten[seen])
                if cfg.isotopes:
                    for k, ratio in enumerate(isotope_ratios(neutral[seen] - loss), start=1):
                        mz_list.append(mz[seen] + k * ISOTOPE_SPACING / z)
                        int_list.append(inten[seen] * ratio)
    pmz = (M + H2O + charge * PROTON) / charge
    n_noise = rng.integers(*cfg.noise_peaks)
    mz_list.append(rng.uniform(50.0, max(pmz * charge - 50.0, 200.0), n_noise))
    int_list.append(0.08 * rng.lognormal(0.0, 1.0, n_noise))
    mz = np.concatenate(mz_list) + rng.normal(0.0, cfg.mass_error, sum(a.size for a in mz_list))
    inten = np.concatenate(int_list)
    ok = mz > 50.0
    order = np.argsort(mz[ok])
    pmz *= 1 + rng.normal(0.0, cfg.precursor_ppm) * 1e-6
    return mz[ok][order], inten[ok][order] * 1e4, float(pmz), float(missing)


def isotope_ratios(neutral_mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intensity of the +1 and +2 13C peaks relative to the monoisotopic one (a Poisson
    approximation: ~0.55 carbon-13 atoms expected per 1,000 Da of peptide)."""
    lam = 0.00055 * neutral_mass
    return lam, lam**2 / 2


def sample_charge(length: int, rng: np.random.Generator) -> int:
    if length < 10:
        return int(rng.choice([2, 3], p=[0.85, 0.15]))
    if length < 18:
        return int(rng.choice([2, 3, 4], p=[0.55, 0.4, 0.05]))
    return int(rng.choice([2, 3, 4], p=[0.2, 0.6, 0.2]))
