import csv
import json

import engine_graphnovo.plugin as plugin
import pytest
from conftest import SPECTRA, need
from engine_graphnovo.component import example_spectra

import engine.testing
from engine.cli import main


def read_psms(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "MTD\tmzTab-version\t1.0.0"
    head = next(x for x in lines if x.startswith("PSH")).split("\t")
    return [dict(zip(head, x.split("\t"), strict=True)) for x in lines if x.startswith("PSM")]


def test_conformance(tiny_weights, tmp_path):
    pytest.importorskip("torch")
    engine.testing.check_plugin(
        plugin, options={"graphnovo": {"weights": str(tiny_weights)}}, spectra=example_spectra(), tmp_path=tmp_path
    )


def test_sequence_dp_writes_mztab_csv_and_skipped(tmp_path, capsys):
    bad = tmp_path / "bad.mgf"
    from engine_graphnovo.component import EXAMPLES

    real = EXAMPLES.read_text().split("END IONS")[0]  # a real spectrum, its charge removed
    nocharge = "\n".join(x for x in real.splitlines() if not x.startswith(("CHARGE", "SEQ"))) + "\nEND IONS\n"
    bad.write_text("BEGIN IONS\nTITLE=z0\nPEPMASS=500\nCHARGE=0\n100 1\nEND IONS\n" + nocharge)
    good = need(SPECTRA / "formats" / "TMT10-Trial-8.mzML")
    out = tmp_path / "out.mztab"
    assert main(["--json", "sequence", "graphnovo-dp", str(good), str(bad), "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["spectra"] == 6 and summary["written"] + summary["skipped"] == 6
    assert summary["skipped_reasons"] == {"charge": 1} and summary["charge_inferred"] == 1
    psms = read_psms(out)
    assert len(psms) == summary["written"] == 5
    assert psms[0]["spectra_ref"] == "ms_run[1]:controllerType=0 controllerNumber=1 scan=501"
    assert psms[-1]["spectra_ref"] == "ms_run[2]:index=1" and psms[-1]["charge"] in ("2", "3", "4")
    assert psms[0]["opt_global_scan"] == "501"
    for p in psms:  # per-residue scores: one per residue of the ProForma peptide
        assert len(p["opt_ms_run[1]_aa_scores"].split(",")) == len(p["sequence"])
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["peptide"] for r in rows] == [p["opt_global_proforma"] for p in psms]
    skipped = (tmp_path / "out.mztab.skipped.tsv").read_text().splitlines()
    assert len(skipped) == 2 and "index=0" in skipped[1] and "charge" in skipped[1]
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_sequence_learned_and_eval(tiny_weights, tmp_path, capsys, massivekb):
    pytest.importorskip("torch")
    from engine_graphnovo.component import EXAMPLES

    out = tmp_path / "o.mztab"
    assert (
        main(
            [
                "--json",
                "sequence",
                "graphnovo",
                str(EXAMPLES),
                "--weights",
                str(tiny_weights),
                "-o",
                str(out),
                "--path-beam",
                "2",
                "--fill-beam",
                "2",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["spectra"] == 3 and summary["written"] + summary["skipped"] == 3
    assert len(read_psms(out)) == summary["written"]
    assert (
        main(
            [
                "--json",
                "eval",
                "graphnovo",
                "--weights",
                str(tiny_weights),
                "--limit",
                "4",
                "--path-beam",
                "2",
                "--fill-beam",
                "2",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    for key in (
        "peptide_recall",
        "aa_precision",
        "aa_recall",
        "baseline_peptide_recall",
        "baseline_aa_precision",
        "baseline_aa_recall",
        "spectra",
        "skipped",
    ):
        assert key in res
    assert res["spectra"] == 4
    assert 0.0 <= res["baseline_aa_recall"] <= 1.0


def test_usage_errors_are_one_line(tmp_path, capsys):
    assert main(["sequence", "graphnovo-dp", str(tmp_path / "x.txt"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown spectrum format" in err and "\n" not in err
    assert main(["sequence", "graphnovo", "--weights", str(tmp_path), str(tmp_path / "a.mgf"), "-o", "x"]) == 2
    assert "no graphnovo weights" in capsys.readouterr().err


def test_bundled_default_model_sequences_right_after_setup(tmp_path, capsys):
    pytest.importorskip("torch")
    from engine_graphnovo.component import DEFAULT_WEIGHTS, EXAMPLES

    if not (DEFAULT_WEIGHTS / "config.json").is_file():
        pytest.skip("no bundled default weights")
    size = sum(f.stat().st_size for f in DEFAULT_WEIGHTS.iterdir())
    assert size <= 25 * 2**20
    meta = json.loads((DEFAULT_WEIGHTS / "config.json").read_text())
    assert meta["training"]["steps"] > 0
    out = tmp_path / "default.mztab"
    assert main(["--json", "sequence", "graphnovo", str(EXAMPLES), "-o", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 3


@pytest.mark.parametrize("name", ["graphnovo", "graphnovo-dp"])
def test_demo_shows_label_and_prediction(name, capsys):
    from engine_graphnovo.component import DEFAULT_WEIGHTS

    if name == "graphnovo":
        pytest.importorskip("torch")
    assert main(["demo", name]) == 0
    out = capsys.readouterr().out
    if name == "graphnovo" and not (DEFAULT_WEIGHTS / "config.json").is_file():
        assert "no default model" in out
        return
    rows = [line for line in out.splitlines() if "label" in line and "predicted" in line]
    assert len(rows) == 3 and "LLPAFLK" in rows[0]


def test_model_with_other_peak_features_is_refused_in_one_line(tiny_weights, tmp_path, capsys):
    """A model saved before local significance (5 peak features, no recorded count) is
    refused by the torch loader, the CLI and the shared pipeline (onnxruntime path)."""
    import shutil

    from engine_graphnovo.component import EXAMPLES, pipeline_from_meta

    old = tmp_path / "old"
    shutil.copytree(tiny_weights, old)
    meta = json.loads((old / "config.json").read_text())
    for key in ("ion_types", "peak_features"):
        del meta["model"][key]
    (old / "config.json").write_text(json.dumps(meta))
    assert main(["sequence", "graphnovo", str(EXAMPLES), "--weights", str(old), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "5 peak features" in err and "retrain" in err and "\n" not in err
    with pytest.raises(ValueError, match="5 peak features"):
        pipeline_from_meta(meta, backend=None)


def test_bench_takes_beam_overrides(tiny_weights, capsys, massivekb):
    pytest.importorskip("torch")
    args = ["--json", "bench", "graphnovo", "--weights", str(tiny_weights), "--limit", "2"]
    assert main([*args, "--path-beam", "3", "--fill-beam", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["path_beam"], res["fill_beam"], res["spectra"]) == (3, 2, 2)
    assert res["ort_torch_same_peptides"] == 1.0
    assert main([*args, "--path-beam", "0"]) == 2
