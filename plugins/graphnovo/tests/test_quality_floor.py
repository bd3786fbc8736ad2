"""Quality floors of the default model (v5: v4 fine-tuned with pruned graphs among its training
graphs; two paths filled, fragment-evidence rescoring; each graph pruned to 3 nodes per residue of
its precursor since 2026-12-06) on the MassIVE-KB held-out split (153 spectra never trained on), set
from the values measured on 2026-12-06 with a stated margin (engine eval graphnovo --json, the card's
eval_v5r3.json: peptide recall 23/153, AA precision 0.452, AA recall 0.451, precursor match 0.641,
searched-graph node precision 0.226; the DP baseline on the same graphs 9/153, 0.445, 0.439, 0.183).
A wrong answer anywhere in the main job (masses, charge, peak processing, pruning, search, rescoring,
decoding) drops below them; small float differences between CPUs do not. The model is held above
the DP baseline where it is measured ahead: peptides (+14 spectra), residues (+0.007) and matching
the precursor (3.5x)."""

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
    peptides = round(r["peptide_recall"] * HELD_OUT)
    assert peptides >= 20  # measured 23: margin 3 spectra
    assert peptides >= round(r["baseline_peptide_recall"] * HELD_OUT) + 10  # measured 23 against 9
    assert r["aa_precision"] >= 0.44 and r["aa_recall"] >= 0.44  # measured 0.452 / 0.451
    assert r["aa_precision"] >= r["baseline_aa_precision"]  # measured +0.012
    assert r["precursor_match"] >= 0.45 and r["precursor_match"] >= 2 * r["baseline_precursor_match"]
    assert r["graph"]["mean_prefix_coverage"] >= 0.73  # deisotoped graphs: measured 0.739 (v2's 0.721)
    assert r["searched_graph"]["mean_node_precision"] >= 0.21  # pruned: measured 0.226 (v2's graphs 0.110)
