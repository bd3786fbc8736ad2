import numpy as np
import pytest
from engine_graphnovo.metrics import Scorer, aa_matches

from engine.io.peptides import parse_peptide, residue_masses


def m(p):
    return residue_masses(parse_peptide(p))


def test_aa_match_rule():
    assert aa_matches(m("PEPTIDE"), m("PEPTIDE")) == 7
    assert aa_matches(m("PEPTLDE"), m("PEPTIDE")) == 7  # I/L share a mass
    assert aa_matches(m("EPPTIDE"), m("PEPTIDE")) == 5  # swapped pair: prefixes realign after it
    assert aa_matches(m("GGPTIDE"), m("NPTIDE")) == 5  # GG vs N: cumulative masses agree afterwards
    assert aa_matches(m("KAAA"), m("QAAA")) == 4  # 0.036 Da apart: within 0.1
    assert aa_matches(np.array([]), m("PEP")) == 0


def test_scorer_totals():
    s = Scorer()
    assert s.add(parse_peptide("PEPTIDE"), parse_peptide("PEPTLDE"))
    assert not s.add(parse_peptide("EPPTIDE"), parse_peptide("PEPTIDE"))
    assert not s.add(None, parse_peptide("PEPK"))
    r = s.result("x_")
    assert r["x_peptide_recall"] == pytest.approx(1 / 3)
    assert r["x_aa_precision"] == pytest.approx(12 / 14)
    assert r["x_aa_recall"] == pytest.approx(12 / 18)
