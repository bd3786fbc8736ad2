"""engine.io.spectra: MGF, mzML, mzXML and MSP readers; bad spectra reported, not raised."""

import sys

import numpy as np
import pytest

from engine.errors import EngineError
from engine.io.spectra import ReaderConfig, SkipReport, read_peprec, read_spectra


def _read(path, **kw):
    report = SkipReport()
    return list(read_spectra([path], report, **kw)), report


def test_mgf_with_peprec_side_file(massivekb):
    spectra, report = _read(massivekb)
    assert len(spectra) == 500 and len(report) == 0
    assert spectra[0].ref == "index=0" and spectra[499].ref == "index=499"
    assert all(s.label for s in spectra)
    assert spectra[0].title == "massive_hcd_167" and spectra[0].charge == 4
    assert np.all(np.diff(spectra[0].mz) >= 0)


def test_peprec_parsing(massivekb):
    labels = read_peprec(massivekb.with_suffix(".peprec"))
    assert labels["massive_hcd_930799"] == ("LIHDGCLLWK", {6: "Carbamidomethyl"})
    assert labels["massive_hcd_1575035"] == ("LHTFESHK", {0: "Carbamyl"})


def test_mzml_and_mzxml_are_ms2_only_with_scan_refs(spectra_file):
    mzml, rep = _read(spectra_file("formats", "TMT10-Trial-8.mzML"))
    mzxml, _ = _read(spectra_file("formats", "TMT10-Trial-8.mzXML"))
    assert len(mzml) == 4 and len(mzxml) == 4 and len(rep) == 0
    assert mzml[0].ref == "controllerType=0 controllerNumber=1 scan=501" and mzml[0].scan == 501
    assert mzxml[0].ref == "scan=501" and mzxml[0].scan == 501
    assert [s.scan for s in mzml] == [s.scan for s in mzxml]
    assert mzml[0].charge == 3  # 'possible charge state' is read too


def test_a_file_of_ms1_spectra_only_says_so(spectra_file):
    """An MS1-only mzML is not an empty file: the report names the spectra it passed over."""
    path = spectra_file("formats", "pyteomics_test.mzML")
    spectra, report = _read(path)
    assert spectra == [] and report.read == 0
    assert report.skipped == [
        (str(path), "file", f"empty: {path} holds no MS2 spectra (2 spectra of other MS levels, not sequenced)")
    ]


def test_msp_library_labels_and_mods(spectra_file):
    spectra, report = _read(spectra_file("nist", "nist-bsa_consensus.msp"))
    assert len(spectra) == 725 and len(report) == 0
    assert spectra[0].label == "AADDKEAC[Carbamidomethyl]FAVEGPK" and spectra[0].charge == 3
    assert sum(s.label is not None for s in spectra) == 725


BAD_MGF = """BEGIN IONS
TITLE=good
PEPMASS=500.3
CHARGE=2+
SEQ=PEPTIDEK
100.1 10
200.2 20
END IONS
BEGIN IONS
TITLE=zero-charge
PEPMASS=500.3
CHARGE=0
100.1 10
END IONS
BEGIN IONS
TITLE=empty
PEPMASS=500.3
CHARGE=2+
END IONS
BEGIN IONS
TITLE=nan
PEPMASS=500.3
CHARGE=2+
100.1 nan
END IONS
BEGIN IONS
TITLE=heavy
PEPMASS=9000.0
CHARGE=3+
100.1 5
END IONS
BEGIN IONS
TITLE=unknown-mod
PEPMASS=500.3
CHARGE=2+
SEQ=PEPC[Frobnication]K
100.1 5
END IONS
BEGIN IONS
TITLE=no-charge
PEPMASS=500.3
100.1 5
END IONS
BEGIN IONS
TITLE=truncated
PEPMASS=500.3
CHARGE=2+
100.1 5
"""


def test_bad_spectra_are_counted_with_reasons(tmp_path):
    path = tmp_path / "bad.mgf"
    path.write_text(BAD_MGF)
    spectra, report = _read(path)
    assert [s.title for s in spectra] == ["good", "unknown-mod", "no-charge"]
    assert spectra[0].label == "PEPTIDEK" and spectra[1].label is None and spectra[2].charge is None
    reasons = {ref: r.split(":")[0] for _, ref, r in report.skipped}
    assert reasons == {
        "index=1": "charge",
        "index=2": "empty",
        "index=3": "nan",
        "index=4": "precursor",
        "index=7": "truncated",  # the file ends inside the block: that spectrum only
    }
    assert report.notes[0][1] == "index=5" and "Frobnication" in report.notes[0][2]
    # eval needs labels: the unreadable label skips the spectrum instead
    strict, rep2 = _read(path, config=ReaderConfig(require_label=True))
    assert [s.title for s in strict] == ["good"]
    assert any("Frobnication" in r for _, _, r in rep2.skipped)


def test_garbage_file_is_reported_not_raised(tmp_path):
    path = tmp_path / "junk.mzML"
    path.write_bytes(b"\x00\x01 not xml at all")
    spectra, report = _read(path)
    assert spectra == [] and report.skipped[0][1] == "file"
    with pytest.raises(ValueError, match="unknown spectrum format"):
        list(read_spectra([tmp_path / "x.txt"]))


@pytest.mark.parametrize(
    "name, module, what", [("a.mgf", "mgf", "MGF"), ("a.mzML", "mzml", "mzML"), ("a.mzXML", "mzxml", "mzXML")]
)
def test_missing_pyteomics_names_the_extra_in_one_line(tmp_path, monkeypatch, name, module, what):
    path = tmp_path / name
    path.write_text("")
    monkeypatch.setitem(sys.modules, f"pyteomics.{module}", None)  # import now raises ImportError
    with pytest.raises(EngineError) as info:
        list(read_spectra([path]))
    assert str(info.value) == f"reading {what} needs pyteomics: pip install 'engine-core[spectra]'"


def test_msp_reads_without_pyteomics(spectra_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyteomics", None)
    spectra, _ = _read(spectra_file("nist", "nist-bsa_consensus.msp"))
    assert len(spectra) == 725


def test_one_malformed_block_loses_only_its_own_spectrum(tmp_path):
    """A bad peak line or a block cut short is skipped with its line; the good spectra around it are read."""
    good = "BEGIN IONS\nTITLE={t}\nPEPMASS=500.3\nCHARGE=2+\n100.0 10\n200.0 20\nEND IONS\n"
    path = tmp_path / "mixed.mgf"
    path.write_text(
        good.format(t="first")
        + "BEGIN IONS\nTITLE=bad\nPEPMASS=500.3\nCHARGE=2+\n100.0 10\nabc def\nEND IONS\n"
        + "BEGIN IONS\nTITLE=cut\nPEPMASS=500.3\n100.0 10\n"
        + good.format(t="last")
    )
    spectra, report = _read(path)
    assert [s.title for s in spectra] == ["first", "last"] and [s.ref for s in spectra] == ["index=0", "index=3"]
    assert report.skipped == [
        (str(path), "index=1", "malformed: bad peak line 13: 'abc def' (block at line 8)"),
        (str(path), "index=2", "truncated: no END IONS before the next BEGIN IONS at line 19 (block at line 15)"),
    ]
