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


def test_header_declares_the_vocabulary_modifications_fixed_and_variable(tmp_path):
    """A residue only ever modified (C[Carbamidomethyl] with no plain C) is a fixed modification,
    one also plain a variable one; N-terminal ones are variable at Any N-term."""
    out = tmp_path / "o.mztab"
    residues = ("G", "M", "C[Carbamidomethyl]", "M[Oxidation]", "[Acetyl]-", "K")
    write_mztab(out, [_hit()], ["a.mgf"], residues=residues)
    mtd = {r[1]: r[2] for r in _rows(out, "MTD")}
    assert mtd["fixed_mod[1]"] == "[UNIMOD, UNIMOD:4, Carbamidomethyl, ]" and mtd["fixed_mod[1]-site"] == "C"
    assert mtd["variable_mod[1]"] == "[UNIMOD, UNIMOD:35, Oxidation, ]" and mtd["variable_mod[1]-site"] == "M"
    assert mtd["variable_mod[2]"] == "[UNIMOD, UNIMOD:1, Acetyl, ]" and mtd["variable_mod[2]-site"] == "N-term"
    assert mtd["variable_mod[2]-position"] == "Any N-term" and "fixed_mod[2]" not in mtd
    assert "variable_mod[3]" not in mtd


def test_header_without_a_vocabulary_declares_what_the_hits_carry(tmp_path):
    with_mods, plain = tmp_path / "mods.mztab", tmp_path / "plain.mztab"
    write_mztab(with_mods, [_hit(), _hit()], ["a.mgf"])
    mtd = {r[1]: r[2] for r in _rows(with_mods, "MTD")}
    assert mtd["variable_mod[1]"] == "[UNIMOD, UNIMOD:1, Acetyl, ]" and mtd["variable_mod[1]-site"] == "N-term"
    assert mtd["variable_mod[2]"] == "[UNIMOD, UNIMOD:4, Carbamidomethyl, ]" and mtd["variable_mod[2]-site"] == "C"
    assert "variable_mod[3]" not in mtd  # each once, however many hits carry it
    assert mtd["fixed_mod[1]"] == "[MS, MS:1002453, No fixed modifications searched, ]"
    write_mztab(plain, [_hit(peptide="PEPTIDE")], ["a.mgf"], residues=("P", "E", "T", "I", "D"))
    mtd = {r[1]: r[2] for r in _rows(plain, "MTD")}
    assert mtd["variable_mod[1]"] == "[MS, MS:1002454, No variable modifications searched, ]"


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


# Unimod monoisotopic mass deltas (unimod.org): independent of engine.io.peptides' own table
UNIMOD = {"Acetyl": 42.010565, "Carbamidomethyl": 57.021464, "Oxidation": 15.994915}


@pytest.mark.parametrize(
    ("peptide", "plain", "mods", "deltas", "charge"),
    [
        ("PEPTIDEK", "PEPTIDEK", "null", [], 1),
        ("[Acetyl]-PEPC[Carbamidomethyl]K", "PEPCK", "0-UNIMOD:1,4-UNIMOD:4", ["Acetyl", "Carbamidomethyl"], 2),
        ("GAM[Oxidation]QLRK", "GAMQLRK", "3-UNIMOD:35", ["Oxidation"], 3),
    ],
)
def test_every_psm_field_against_an_independent_oracle(tmp_path, peptide, plain, mods, deltas, charge):
    """calc_mass_to_charge from pyteomics' residue masses and Unimod deltas; the other fields from the hit."""
    mass = pytest.importorskip("pyteomics.mass")
    calc = (mass.fast_mass(plain) + sum(UNIMOD[d] for d in deltas) + charge * mass.nist_mass["H+"][0][0]) / charge
    scores = tuple(0.1 * (i + 1) for i in range(len(plain)))
    hit = PeptideHit("index=4", 17, peptide, 0.75, scores, -2.5, charge, calc + 0.002, source="run.mgf")
    out = tmp_path / "o.mztab"
    write_mztab(out, [hit], ["other.mgf", "run.mgf"])
    (row,) = [dict(zip(PSH, r[1:], strict=True)) for r in _rows(out, "PSM")]
    assert row["sequence"] == plain and row["modifications"] == mods and row["opt_global_proforma"] == peptide
    assert float(row["calc_mass_to_charge"]) == pytest.approx(calc, abs=2e-6)
    assert float(row["exp_mass_to_charge"]) == pytest.approx(calc + 0.002, abs=2e-6)
    assert row["charge"] == str(charge) and row["PSM_ID"] == "0" and row["spectra_ref"] == "ms_run[2]:index=4"
    assert float(row["search_engine_score[1]"]) == 0.75 and row["opt_global_scan"] == "17"
    assert [float(s) for s in row["opt_ms_run[1]_aa_scores"].split(",")] == pytest.approx(scores)
    assert float(row["opt_global_precursor_error_ppm"]) == -2.5


def test_psm_columns_without_a_value_are_the_literal_null(tmp_path):
    """mzTab 1.0 writes "null" (lower case) for a PSM column without a value: readers match it
    exactly. A de novo hit has no protein accession, database, retention time or flanks."""
    out = tmp_path / "out.mztab"
    write_mztab(out, [_hit(peptide="PEPTIDE")], ["a.mgf"])
    (row,) = [dict(zip(PSH, r[1:], strict=True)) for r in _rows(out, "PSM")]
    empty = ("accession", "unique", "database", "database_version", "retention_time", "pre", "post", "start", "end")
    assert {k: row[k] for k in empty} == dict.fromkeys(empty, "null")
    assert row["modifications"] == "null" and row["PSM_ID"] == "0" and row["charge"] == "2"
