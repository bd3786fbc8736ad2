"""engine.io.mztab: mzTab 1.0, CSV and skipped.tsv written from PeptideHits, atomically."""

from __future__ import annotations

import csv

import pytest

from engine.interfaces import PeptideHit
from engine.io.mztab import PSH, write_csv, write_mztab, write_skipped
from engine.io.peptides import parse_peptide, precursor_mz

PEPTIDE = "[Acetyl]-PEPC[Carbamidomethyl]K"


def _hit(source="a.mgf", ref="index=0", scan=7, peptide=PEPTIDE):
    mz = precursor_mz(parse_peptide(peptide), 2)
    n = len([t for t in parse_peptide(peptide) if not t.endswith("-")])
    return PeptideHit(ref, scan, peptide, 0.5, [0.9] * n, 1.25, 2, mz + 0.001, source=source)


def _rows(path, kind):
    return [line.split("\t") for line in path.read_text().splitlines() if line.startswith(kind)]


def test_mztab_rows_mods_and_runs(tmp_path):
    out = tmp_path / "out.mztab"
    hits = [_hit(), _hit(source="b.mzML", ref="scan=3", scan=None, peptide="PEPTIDE")]
    assert write_mztab(out, hits, ["a.mgf", "b.mzML"], component="mine") == 2
    mtd = {r[1]: r[2] for r in _rows(out, "MTD")}
    assert mtd["mzTab-version"] == "1.0.0" and "engine mine" in mtd["software[1]"]
    assert mtd["description"] == "engine mine de novo peptide sequencing"
    assert mtd["ms_run[2]-location"].startswith("file://")
    psms = [dict(zip(PSH, r[1:], strict=True)) for r in _rows(out, "PSM")]
    assert psms[0]["sequence"] == "PEPCK" and psms[0]["modifications"] == "0-UNIMOD:1,4-UNIMOD:4"
    assert psms[0]["search_engine"] == "[, , engine mine, ]" and psms[0]["opt_global_proforma"] == PEPTIDE
    assert psms[1]["spectra_ref"] == "ms_run[2]:scan=3" and psms[1]["opt_global_scan"] == "null"
    assert psms[1]["modifications"] == "null"
    assert float(psms[0]["exp_mass_to_charge"]) - float(psms[0]["calc_mass_to_charge"]) == pytest.approx(0.001)


def test_software_and_description_can_be_given(tmp_path):
    out = tmp_path / "o.mztab"
    write_mztab(out, [], [], software="engine graphnovo", description="GraphNovo de novo peptide sequencing")
    mtd = {r[1]: r[2] for r in _rows(out, "MTD")}
    assert mtd["description"] == "GraphNovo de novo peptide sequencing" and "engine graphnovo" in mtd["software[1]"]


def test_csv_and_skipped(tmp_path):
    out = tmp_path / "o.csv"
    assert write_csv(out, [_hit()]) == 1
    (row,) = csv.DictReader(open(out, newline=""))
    assert row["peptide"] == PEPTIDE and row["scan"] == "7" and row["aa_scores"].count(";") == 4
    skipped = tmp_path / "o.skipped.tsv"
    assert write_skipped(skipped, [("a.mgf", "index=1", "charge: bad\tcharge")]) == 1
    assert skipped.read_text().splitlines() == ["file\tspectra_ref\treason", "a.mgf\tindex=1\tcharge: bad charge"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "o.skipped.tsv"]  # no temp files
