"""mzTab 1.0 PSM output (Casanovo-style columns) and CSV, each written atomically."""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .masses import MODIFICATIONS, parse_peptide, precursor_mz

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


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def write_mztab(
    path,
    hits: Iterable,
    runs: list[str],
    *,
    software: str = "engine graphnovo",
    description: str = "GraphNovo de novo peptide sequencing",
) -> int:
    """Write hits (engine PeptideHit with .source) to mzTab; returns the row count."""
    run_index = {str(Path(r)): i + 1 for i, r in enumerate(runs)}
    lines = [
        "MTD\tmzTab-version\t1.0.0",
        "MTD\tmzTab-mode\tSummary",
        "MTD\tmzTab-type\tIdentification",
        f"MTD\tdescription\t{description}",
        f"MTD\tsoftware[1]\t[MS, MS:1001456, analysis software, {software}]",
        "MTD\tpsm_search_engine_score[1]\t[MS, MS:1001143, search engine specific score for PSMs, ]",
        "MTD\tfixed_mod[1]\t[MS, MS:1002453, No fixed modifications searched, ]",
        "MTD\tvariable_mod[1]\t[MS, MS:1002454, No variable modifications searched, ]",
    ]
    for run, i in run_index.items():
        lines.append(f"MTD\tms_run[{i}]-location\t{Path(run).resolve().as_uri()}")
    lines.append("PSH\t" + "\t".join(PSH))
    count = 0
    for hit in hits:
        seq, mods = _plain_and_mods(hit.peptide)
        calc = precursor_mz(parse_peptide(hit.peptide), hit.charge)
        run = run_index.get(str(Path(hit.source)) if hit.source else "", 1)
        row = [
            seq,
            str(count),
            "null",
            "null",
            "null",
            "null",
            "[, , engine graphnovo, ]",
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
        lines.append("PSM\t" + "\t".join(_clean(v) for v in row))
        count += 1
    _atomic_write(Path(path), "\n".join(lines) + "\n")
    return count


def _clean(value: str) -> str:
    return re.sub(r"[\t\r\n]", " ", value)


def write_csv(path, hits: Iterable) -> int:
    import io

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
    _atomic_write(Path(path), buf.getvalue())
    return count


def write_skipped(path, skipped: Iterable[tuple[str, str, str]]) -> int:
    rows = ["file\tspectra_ref\treason"] + ["\t".join(_clean(x) for x in s) for s in skipped]
    _atomic_write(Path(path), "\n".join(rows) + "\n")
    return len(rows) - 1
