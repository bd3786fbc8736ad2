"""mzTab 1.0 PSM output (Casanovo-style columns), CSV and skipped.tsv, each written atomically."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

from engine.io.files import atomic_write_text
from engine.io.peptides import AA_MASSES, MODIFICATIONS, parse_peptide, precursor_mz

PSH = [
    "sequence",
    "PSM_ID",
    "accession",
    "unique",
    "database",
    "database_version",
    "search_engine",
    "search_engine_score[1]",
    "modifications",
    "retention_time",
    "charge",
    "exp_mass_to_charge",
    "calc_mass_to_charge",
    "spectra_ref",
    "pre",
    "post",
    "start",
    "end",
    "opt_ms_run[1]_aa_scores",
    "opt_global_scan",
    "opt_global_precursor_error_ppm",
    "opt_global_proforma",
]
CSV_COLUMNS = [
    "file",
    "spectra_ref",
    "scan",
    "peptide",
    "score",
    "charge",
    "precursor_mz",
    "calc_mz",
    "precursor_error_ppm",
    "aa_scores",
]


def _plain_and_mods(proforma: str) -> tuple[str, str]:
    """ProForma -> (bare sequence, mzTab modifications column 'pos-UNIMOD:n,...')."""
    tokens = parse_peptide(proforma)
    seq, mods, pos = [], [], 0
    for t in tokens:
        if t.endswith("-"):
            name = t[1:-2]
            mods.append(f"0-{_accession(name)}")
            continue
        pos += 1
        seq.append(t[0])
        if len(t) > 1:
            mods.append(f"{pos}-{_accession(t[2:-1])}")
    return "".join(seq), ",".join(mods) if mods else "null"


def _accession(name: str) -> str:
    if name in MODIFICATIONS:
        return f"UNIMOD:{MODIFICATIONS[name][1]}"
    return f"CHEMMOD:{name}"


def searched_modifications(residues: Iterable[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(fixed, variable) modifications, each (name, site), of a vocabulary of ProForma tokens:
    ``X[Mod]`` is fixed when plain ``X`` is not in the vocabulary (every X is modified), variable
    otherwise; ``[Mod]-`` is a variable N-terminal one (a plain N-terminus is always possible)."""
    tokens = list(dict.fromkeys(residues))
    plain = {t for t in tokens if len(t) == 1}
    fixed, variable = [], []
    for t in tokens:
        if t.endswith("-"):
            variable.append((t[1:-2], "N-term"))
        elif len(t) > 1:
            (variable if t[0] in plain else fixed).append((t[2:-1], t[0]))
    return fixed, variable


def write_mztab(
    path,
    hits: Iterable,
    runs: list[str],
    *,
    component: str = "sequencer",
    software: str | None = None,
    description: str | None = None,
    residues: Iterable[str] | None = None,
) -> int:
    """Write hits (engine PeptideHit with .source) to mzTab; returns the row count.

    ``software`` defaults to "engine <component>", ``description`` to one naming it. The header
    declares the modifications of ``residues``, the sequencer's vocabulary of ProForma tokens
    (``Sequencer.residues``); without it, every modification the hits carry, as variable."""
    hits = list(hits)
    software = software or f"engine {component}"
    run_index = {str(Path(r)): i + 1 for i, r in enumerate(runs)}
    if residues is None:  # plain residues everywhere: what the hits show is all that is known
        residues = [*AA_MASSES, *(t for hit in hits for t in parse_peptide(hit.peptide))]
    head = _metadata(run_index, software, description or f"{software} de novo peptide sequencing")
    head += _modification_lines(*searched_modifications(residues))
    head += [f"MTD\tms_run[{i}]-location\t{Path(r).resolve().as_uri()}" for r, i in run_index.items()]
    psms = [
        "PSM\t" + "\t".join(_clean(v) for v in _psm_row(hit, count, _run_of(hit, run_index), software))
        for count, hit in enumerate(hits)
    ]
    atomic_write_text(path, "\n".join([*head, "PSH\t" + "\t".join(PSH), *psms]) + "\n")
    return len(psms)


def _run_of(hit, run_index: dict[str, int]) -> int:
    return run_index.get(str(Path(hit.source)) if hit.source else "", 1)


def _metadata(run_index: dict[str, int], software: str, description: str) -> list[str]:
    lines = [
        "MTD\tmzTab-version\t1.0.0",
        "MTD\tmzTab-mode\tSummary",
        "MTD\tmzTab-type\tIdentification",
        f"MTD\tdescription\t{description}",
        f"MTD\tsoftware[1]\t[MS, MS:1001456, analysis software, {software}]",
        "MTD\tpsm_search_engine_score[1]\t[MS, MS:1001143, search engine specific score for PSMs, ]",
    ]
    return lines


def _modification_lines(fixed: list[tuple[str, str]], variable: list[tuple[str, str]]) -> list[str]:
    """mzTab 1.0's fixed_mod[i] / variable_mod[i] with their -site (and -position for N-terminal
    ones), or the 'none searched' parameter of each."""
    none = {
        "fixed_mod": "[MS, MS:1002453, No fixed modifications searched, ]",
        "variable_mod": "[MS, MS:1002454, No variable modifications searched, ]",
    }
    lines = []
    for key, mods in (("fixed_mod", fixed), ("variable_mod", variable)):
        if not mods:
            lines.append(f"MTD\t{key}[1]\t{none[key]}")
        for i, (name, site) in enumerate(mods, 1):
            lines += [f"MTD\t{key}[{i}]\t{_modification_param(name)}", f"MTD\t{key}[{i}]-site\t{site}"]
            if site == "N-term":
                lines.append(f"MTD\t{key}[{i}]-position\tAny N-term")
    return lines


def _modification_param(name: str) -> str:
    accession = _accession(name)
    return f"[{accession.split(':')[0]}, {accession}, {name}, ]"


def _psm_row(hit, count: int, run: int, software: str) -> list[str]:
    """One PSM row in PSH column order."""
    seq, mods = _plain_and_mods(hit.peptide)
    calc = precursor_mz(parse_peptide(hit.peptide), hit.charge)
    return [
        seq,
        str(count),
        "null",
        "null",
        "null",
        "null",
        f"[, , {software}, ]",
        f"{hit.score:.6f}",
        mods,
        "null",
        str(hit.charge),
        f"{hit.precursor_mz:.6f}",
        f"{calc:.6f}",
        f"ms_run[{run}]:{hit.spectrum_ref}",
        "null",
        "null",
        "null",
        "null",
        ",".join(f"{s:.5f}" for s in hit.residue_scores),
        "null" if hit.scan is None else str(hit.scan),
        f"{hit.precursor_error_ppm:.3f}",
        hit.peptide,
    ]


def _clean(value: str) -> str:
    return re.sub(r"[\t\r\n]", " ", value)


def write_csv(path, hits: Iterable) -> int:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for h in hits:
        calc = precursor_mz(parse_peptide(h.peptide), h.charge)
        writer.writerow(
            [
                h.source or "",
                h.spectrum_ref,
                "" if h.scan is None else h.scan,
                h.peptide,
                f"{h.score:.6f}",
                h.charge,
                f"{h.precursor_mz:.6f}",
                f"{calc:.6f}",
                f"{h.precursor_error_ppm:.3f}",
                ";".join(f"{s:.5f}" for s in h.residue_scores),
            ]
        )
        count += 1
    atomic_write_text(path, buf.getvalue())
    return count


def write_skipped(path, skipped: Iterable[tuple[str, str, str]]) -> int:
    rows = ["file\tspectra_ref\treason"] + ["\t".join(_clean(x) for x in s) for s in skipped]
    atomic_write_text(path, "\n".join(rows) + "\n")
    return len(rows) - 1
