"""The field's evaluation rule (DeepNovo / Casanovo): amino acids match by prefix-mass
alignment (cumulative mass difference < 0.5 Da and residue mass difference < 0.1 Da);
a peptide matches when its tokens equal the label's after I = L."""

from __future__ import annotations

import numpy as np

from engine.io.peptides import normalize_il, residue_masses

CUM_TOL = 0.5
AA_TOL = 0.1


def aa_matches(pred: np.ndarray, true: np.ndarray) -> int:
    """Number of predicted residues aligned to a true residue of the same mass."""
    i = j = 0
    cp = ct = 0.0
    hits = 0
    while i < pred.size and j < true.size:
        np_, nt = cp + pred[i], ct + true[j]
        if abs(np_ - nt) < CUM_TOL:
            hits += abs(pred[i] - true[j]) < AA_TOL
            i, j, cp, ct = i + 1, j + 1, np_, nt
        elif nt > np_:
            i, cp = i + 1, np_
        else:
            j, ct = j + 1, nt
    return int(hits)


class Scorer:
    """Accumulates AA precision/recall and peptide recall over spectra."""

    def __init__(self):
        self.matched = self.pred_len = self.true_len = self.peptides = self.correct = 0

    def add(self, pred_tokens: tuple[str, ...] | None, true_tokens: tuple[str, ...]) -> bool:
        true_m = residue_masses(true_tokens)
        self.peptides += 1
        self.true_len += true_m.size
        if not pred_tokens:
            return False
        pred_m = residue_masses(pred_tokens)
        self.pred_len += pred_m.size
        self.matched += aa_matches(pred_m, true_m)
        ok = normalize_il(pred_tokens) == normalize_il(true_tokens)
        self.correct += ok
        return ok

    def result(self, prefix: str = "") -> dict:
        return {
            f"{prefix}peptide_recall": self.correct / max(self.peptides, 1),
            f"{prefix}aa_precision": self.matched / max(self.pred_len, 1),
            f"{prefix}aa_recall": self.matched / max(self.true_len, 1),
        }
