"""Quality floors of the default model on the MassIVE-KB held-out split (153 spectra never trained
on), set from the values measured on 2026-12-02 with a stated margin (engine eval graphnovo --json:
peptide recall 11/153 vs the DP baseline's 8/153, AA precision 0.412 vs 0.397, precursor match
0.503 vs 0.157). A wrong answer anywhere in the main job (masses, charge, search, decoding) drops
below them; small float differences between CPUs do not."""

import json

from conftest import SPECTRA as SPECTRA_DIR
from conftest import need

from engine.cli import main

HELD_OUT = 153


def test_default_model_stays_above_its_floors_and_above_the_dp_baseline(capsys):
    need(SPECTRA_DIR / "massivekb" / "massivekb_selected_500.mgf")
    assert main(["--json", "--quiet", "eval", "graphnovo"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["spectra"] == HELD_OUT and r["skipped"] == 0
    assert round(r["peptide_recall"] * HELD_OUT) >= 9  # measured 11: margin 2 spectra
    assert round(r["peptide_recall"] * HELD_OUT) >= round(r["baseline_peptide_recall"] * HELD_OUT) + 1
    assert r["aa_precision"] >= 0.39 and r["aa_precision"] >= r["baseline_aa_precision"] + 0.005
    assert r["precursor_match"] >= 0.40 and r["precursor_match"] >= 2 * r["baseline_precursor_match"]
