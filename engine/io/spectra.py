"""Streamed spectrum readers: MGF, mzML, mzXML (pyteomics), NIST MSP, PEPREC labels.

Readers yield ``engine.interfaces.Spectrum`` one at a time (MS2 only). A spectrum that
cannot be used is not raised: it is counted in a ``SkipReport`` with its reason, and the
run goes on. A file that breaks part way (truncated, garbage) keeps what was read.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.interfaces import Spectrum
from engine.io.peptides import PeptideError, apply_mods, parse_peptide, residue_mass_of, to_proforma

FORMATS = {".mgf": "mgf", ".mzml": "mzml", ".mzxml": "mzxml", ".msp": "msp"}


@dataclass
class SkipReport:
    """Every input spectrum ends up either yielded or here, with a reason."""

    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (source, ref, reason)
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # kept, but worth saying
    read: int = 0

    def skip(self, source: str, ref: str, reason: str) -> None:
        self.skipped.append((source, ref, reason))

    def note(self, source: str, ref: str, reason: str) -> None:
        self.notes.append((source, ref, reason))

    def reasons(self) -> dict[str, int]:
        return dict(Counter(_reason_kind(r) for _, _, r in self.skipped))

    def __len__(self) -> int:
        return len(self.skipped)


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


@dataclass(frozen=True)
class ReaderConfig:
    """Limits a spectrum must meet to be sequenced."""

    min_peaks: int = 1
    min_precursor_mass: float = 300.0  # Da, residue mass of the precursor
    max_precursor_mass: float = 6000.0
    max_charge: int = 10
    require_label: bool = False  # eval: an unreadable label skips the spectrum


OTHER_LEVEL = object()  # a format reader's stand-in for an MS1 (or MS3) spectrum it passes over


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown spectrum format {path.suffix!r} (use .mgf, .mzML, .mzXML, .msp)")
    return fmt


def read_spectra(
    paths,
    report: SkipReport | None = None,
    config: ReaderConfig = ReaderConfig(),
    labels: str | Path | None = None,
) -> Iterator[Spectrum]:
    """Stream good MS2 spectra of several files; bad ones go to ``report``."""
    report = report if report is not None else SkipReport()
    side = read_peprec(labels) if labels else None
    for path in map(Path, paths):
        fmt = detect_format(path)
        problem = _file_problem(path)
        if problem:
            report.skip(str(path), "file", f"unreadable: {path} {problem}")
            continue
        file_labels = side if side is not None else _peprec_beside(path)
        raw = {"mgf": _mgf, "mzml": _mzml, "mzxml": _mzxml, "msp": _msp}[fmt](path)
        before = report.read
        other_levels = yield from _checked(raw, path, report, config, file_labels)
        if report.read == before and not any(src == str(path) for src, _, _ in report.skipped):
            report.skip(str(path), "file", f"empty: {path} holds no {_none_read(other_levels)}")


def _none_read(other_levels: int) -> str:
    """What an empty file lacks: an MS1-only mzML is not the same problem as an empty MGF."""
    if not other_levels:
        return "spectra"
    return f"MS2 spectra ({other_levels} spectr{'um' if other_levels == 1 else 'a'} of other MS levels, not sequenced)"


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a spectrum file, or None."""
    if path.is_dir():
        return "is a directory"
    if not path.exists():
        return "does not exist"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied)"
    return None


def _checked(raw, path, report, config, file_labels):
    """Yield the good spectra of ``raw``; return how many records were of another MS level."""
    count = other_levels = 0
    try:
        for rec in raw:
            if rec is OTHER_LEVEL:
                other_levels += 1
                continue
            count += 1
            report.read += 1
            spec = _validate(rec, path, report, config, file_labels)
            if spec is not None:
                yield spec
    except EngineError:  # a missing extra is the user's to fix, not a bad file
        raise
    except Exception as exc:  # truncated or garbage file: keep what was read, say where
        reason = f"unreadable: {type(exc).__name__} after {count} spectra: {str(exc)[:120]}"
        report.skip(str(path), "file", reason.replace("\n", " "))
    return other_levels


def _validate(rec: dict, path: Path, report: SkipReport, config: ReaderConfig, file_labels):
    src, ref = str(path), rec["ref"]
    if rec.get("skip"):
        report.skip(src, ref, rec["skip"])
        return None
    mz = np.asarray(rec["mz"], dtype=np.float64)
    inten = np.asarray(rec["intensity"], dtype=np.float64)
    reason = _peak_problem(mz, inten, config)
    charge = rec.get("charge")
    pmz = rec.get("precursor_mz")
    if reason is None:
        reason = _precursor_problem(pmz, charge, config)
    if reason:
        report.skip(src, ref, reason)
        return None
    label, problem = _label(rec, file_labels)
    if problem:
        if config.require_label:
            report.skip(src, ref, problem)
            return None
        report.note(src, ref, problem)
    if config.require_label and label is None:
        report.skip(src, ref, "unlabelled: no peptide for this spectrum")
        return None
    order = np.argsort(mz, kind="stable")
    return Spectrum(
        ref=ref,
        precursor_mz=float(pmz),
        charge=charge,
        mz=mz[order],
        intensity=inten[order],
        scan=rec.get("scan"),
        index=rec.get("index"),
        title=rec.get("title"),
        label=label,
        source=src,
    )


def _peak_problem(mz: np.ndarray, inten: np.ndarray, config: ReaderConfig) -> str | None:
    if mz.size != inten.size:
        return f"malformed: {mz.size} m/z values but {inten.size} intensities"
    if mz.size < config.min_peaks:
        return "empty: no peaks" if mz.size == 0 else f"too few peaks: {mz.size}"
    if not np.all(np.isfinite(inten)):
        return "nan: non-finite intensity"
    if not np.all(np.isfinite(mz)) or np.any(mz <= 0):
        return "nan: non-finite or non-positive m/z"
    if np.any(inten < 0):
        return "negative: negative intensity"
    if not np.any(inten > 0):
        return "empty: all intensities are zero"
    return None


def spectrum_problem(spectrum: Spectrum, config: ReaderConfig = ReaderConfig()) -> str | None:
    """Why a sequencer cannot use ``spectrum`` (no peaks with intensity, precursor out of
    range...), as a skip reason, or None: the readers' own checks, for spectra built by hand."""
    reason = _peak_problem(spectrum.mz, spectrum.intensity, config)
    return reason or _precursor_problem(spectrum.precursor_mz, spectrum.charge, config)


def _precursor_problem(pmz, charge, config: ReaderConfig) -> str | None:
    if pmz is None or not math.isfinite(pmz) or pmz <= 0:
        return f"precursor: missing or invalid precursor m/z {pmz}"
    if charge is None:
        return None  # tried over the configured charge range by the sequencer
    if charge <= 0:
        return f"charge: non-positive charge {charge}"
    if charge > config.max_charge:
        return f"charge: charge {charge} above {config.max_charge}"
    mass = residue_mass_of(pmz, charge)
    if not config.min_precursor_mass <= mass <= config.max_precursor_mass:
        return f"precursor: mass {mass:.2f} Da outside {config.min_precursor_mass:g}-{config.max_precursor_mass:g}"
    return None


def _label(rec: dict, file_labels) -> tuple[str | None, str | None]:
    """ProForma label from the record or the side file; (None, reason) when unreadable."""
    if rec.get("label_problem"):
        return None, rec["label_problem"]
    try:
        if rec.get("tokens") is not None:
            return to_proforma(rec["tokens"]), None
        if rec.get("seq"):
            return to_proforma(parse_peptide(rec["seq"])), None
        if file_labels is not None and rec.get("title") in file_labels:
            seq, mods = file_labels[rec["title"]]
            return to_proforma(apply_mods(seq, mods)), None
    except PeptideError as exc:
        return None, f"label: {exc}"
    return None, None


# ---------------------------------------------------------------- format adapters


def _pyteomics(module: str, what: str):
    """A pyteomics reader module; the optional ``spectra`` extra provides it."""
    try:
        return importlib.import_module(f"pyteomics.{module}")
    except ImportError:
        raise EngineError(f"reading {what} needs pyteomics: pip install 'engine-core[spectra]'") from None


def _charge(value) -> int | None:
    """pyteomics charge objects/lists/strings -> int, None when absent or ambiguous."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        vals = list(value)
        return _charge(vals[0]) if len(vals) == 1 else None
    text = str(value).strip()
    m = re.fullmatch(r"([+-]?\d+)([+-]?)", text)
    if not m:
        return None
    sign = -1 if m.group(2) == "-" else 1
    return sign * int(m.group(1))


def _mgf(path: Path):
    """MGF, one ``BEGIN IONS`` block at a time: a malformed or truncated block is skipped with
    its line number and reason, and every good block of the file is still read."""
    mgf = _pyteomics("mgf", "MGF")
    for i, (line, text, problem) in enumerate(_mgf_blocks(path)):
        if problem is None:
            try:
                with mgf.read(io.StringIO(text), use_index=False, convert_arrays=1, read_charges=False) as reader:
                    yield _mgf_record(i, next(iter(reader)))
                continue
            except Exception as exc:  # pyteomics' own complaint about this block
                problem = f"malformed: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
        yield {"ref": f"index={i}", "index": i, "skip": f"{problem} (block at line {line})"}


def _mgf_blocks(path: Path):
    """``(first line number, block text, problem or None)`` for each ``BEGIN IONS`` block."""
    block: list[str] = []
    start = 0
    problem = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            upper = line.upper()
            if upper == "BEGIN IONS":
                if block:
                    yield start, "", f"truncated: no END IONS before the next BEGIN IONS at line {number}"
                block, start, problem = [line], number, None
            elif upper == "END IONS" and block:
                block.append(line)
                yield start, "\n".join(block) + "\n", problem
                block = []
            elif block:
                problem = problem or _peak_line_problem(line, number)
                block.append(line)
    if block:
        yield start, "", "truncated: the file ends inside this block"


def _peak_line_problem(line: str, number: int) -> str | None:
    if not line or line[0] in "#;!/" or "=" in line:
        return None
    parts = line.split()
    try:
        values = [float(v) for v in parts[:2]]
    except ValueError:
        values = []
    if len(values) < 2 and not (len(parts) == 1 and _is_number(parts[0])):
        return f"malformed: bad peak line {number}: {line[:60]!r}"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _mgf_record(i: int, spec: dict) -> dict:
    p = spec.get("params", {})
    pep = p.get("pepmass")
    pmz = pep[0] if isinstance(pep, (tuple, list)) else pep
    scan = p.get("scans")
    return {
        "ref": f"index={i}",
        "index": i,
        "title": p.get("title"),
        "scan": _int_or_none(str(scan).split(",")[0]) if scan is not None else None,
        "precursor_mz": _float_or_none(pmz),
        "charge": _charge(p.get("charge")),
        "mz": spec.get("m/z array", []),
        "intensity": spec.get("intensity array", []),
        "seq": p.get("seq"),
    }


def _mzml(path: Path):
    mzml = _pyteomics("mzml", "mzML")
    with mzml.read(str(path), use_index=False, decode_binary=True) as reader:
        for i, spec in enumerate(reader):
            if spec.get("ms level") != 2:
                yield OTHER_LEVEL
                continue
            native = spec.get("id", f"index={i}")
            rec = {
                "ref": native,
                "index": i,
                "scan": _scan_of(native),
                "title": native,
                "mz": spec.get("m/z array", []),
                "intensity": spec.get("intensity array", []),
            }
            try:
                ion = spec["precursorList"]["precursor"][0]["selectedIonList"]["selectedIon"][0]
                rec["precursor_mz"] = _float_or_none(ion.get("selected ion m/z"))
                rec["charge"] = _charge(ion.get("charge state", ion.get("possible charge state")))
            except (KeyError, IndexError, TypeError):
                rec["skip"] = "precursor: no selected ion"
            yield rec


def _mzxml(path: Path):
    mzxml = _pyteomics("mzxml", "mzXML")
    with mzxml.read(str(path), use_index=False, decode_binary=True) as reader:
        for i, spec in enumerate(reader):
            if int(spec.get("msLevel", 0)) != 2:
                yield OTHER_LEVEL
                continue
            num = _int_or_none(spec.get("num"))
            rec = {
                "ref": f"scan={num}" if num is not None else f"index={i}",
                "index": i,
                "scan": num,
                "title": spec.get("id"),
                "mz": spec.get("m/z array", []),
                "intensity": spec.get("intensity array", []),
            }
            try:
                prec = spec["precursorMz"][0]
                rec["precursor_mz"] = _float_or_none(prec.get("precursorMz"))
                rec["charge"] = _charge(prec.get("precursorCharge"))
            except (KeyError, IndexError, TypeError):
                rec["skip"] = "precursor: no precursor m/z"
            yield rec


def _msp(path: Path):
    """NIST MSP: Name: PEP/z, Comment: ... Mods=n/pos,aa,name/... Parent=..., peaks."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        index = -1
        head: dict[str, str] = {}
        peaks: list[tuple[float, float]] = []
        remaining = None
        for line in fh:
            line = line.strip()
            if remaining is None:
                if not line:
                    continue
                key, _, val = line.partition(":")
                if key.lower() == "name":
                    index += 1
                    head, peaks = {"name": val.strip()}, []
                elif key.lower() == "num peaks":
                    remaining = int(val)
                    if remaining == 0:
                        yield _msp_record(index, head, peaks)
                        remaining = None
                else:
                    head[key.lower()] = val.strip()
                continue
            parts = line.split()
            peaks.append((float(parts[0]), float(parts[1])))
            remaining -= 1
            if remaining == 0:
                yield _msp_record(index, head, peaks)
                remaining = None
        if remaining:
            raise ValueError(f"spectrum {index} ends after {len(peaks)} peaks")


def _msp_record(index: int, head: dict, peaks: list) -> dict:
    name = head.get("name", "")
    seq, _, z = name.partition("/")
    comment = head.get("comment", "")
    fields = dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", comment))
    pmz = _float_or_none(head.get("precursormz") or fields.get("Parent"))
    arr = np.asarray(peaks, dtype=np.float64).reshape(-1, 2)
    rec = {
        "ref": f"index={index}",
        "index": index,
        "title": name,
        "precursor_mz": pmz,
        "charge": _int_or_none(head.get("charge") or z.split("_")[0]),
        "mz": arr[:, 0],
        "intensity": arr[:, 1],
    }
    try:
        # the Name may repeat mods as M(O); Mods= is the authority
        rec["tokens"] = apply_mods(re.sub(r"\([^)]*\)", "", seq), _msp_mods(fields.get("Mods", "0")))
    except PeptideError as exc:
        rec["label_problem"] = f"label: {exc}"
    return rec


def _msp_mods(text: str) -> dict[int, str]:
    """NIST Mods=2/0,C,Carbamidomethyl/5,M,Oxidation (0-based residue positions)."""
    parts = text.split("/")
    mods: dict[int, str] = {}
    for part in parts[1:]:
        pos, _aa, name = part.split(",", 2)
        mods[int(pos) + 1] = name
    return mods


def read_peprec(path) -> dict[str, tuple[str, dict[int, str]]]:
    """PEPREC (spec_id modifications peptide charge; mods as pos|name|pos|name)."""
    out: dict[str, tuple[str, dict[int, str]]] = {}
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().replace(",", " ").split()
        cols = {name: i for i, name in enumerate(header)}
        for col in ("spec_id", "modifications", "peptide"):
            if col not in cols:
                raise ValueError(f"{path}: PEPREC header lacks {col!r}")
        for line in fh:
            parts = line.replace(",", " ").split()
            if len(parts) < len(header):
                continue
            mods_text = parts[cols["modifications"]]
            mods: dict[int, str] = {}
            if mods_text not in ("-", ""):
                items = mods_text.split("|")
                mods = {int(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
            out[parts[cols["spec_id"]]] = (parts[cols["peptide"]], mods)
    return out


def _peprec_beside(path: Path):
    side = path.with_suffix(".peprec")
    return read_peprec(side) if side.is_file() else None


def _scan_of(native_id: str) -> int | None:
    m = re.search(r"scan=(\d+)", native_id)
    return int(m.group(1)) if m else None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
