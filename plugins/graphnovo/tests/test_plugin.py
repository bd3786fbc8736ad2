import csv
import json
from pathlib import Path

import engine_graphnovo.plugin as plugin
import pytest
from conftest import SPECTRA, need, write_mgf

import engine.testing
from engine.cli import main
from engine.interfaces import ConfigError
from engine.kinds import probe_spectra


def read_psms(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "MTD\tmzTab-version\t1.0.0"
    head = next(x for x in lines if x.startswith("PSH")).split("\t")
    return [dict(zip(head, x.split("\t"), strict=True)) for x in lines if x.startswith("PSM")]


def run_json(capsys, *args) -> tuple[dict, str]:
    """``engine --json ARGS`` must succeed: (its JSON result, its stderr)."""
    assert main(["--json", *args]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


SMALL_BEAMS = ["--path-beam", "2", "--fill-beam", "2"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("engine: error:") and "\n" not in err, err
    return err


def test_conformance(tiny_weights, tmp_path):
    pytest.importorskip("torch")
    engine.testing.check_plugin(plugin, options={"graphnovo": {"model": str(tiny_weights)}}, tmp_path=tmp_path)


def test_sequence_dp_writes_mztab_csv_and_skipped(tmp_path, capsys):
    bad = tmp_path / "bad.mgf"
    nocharge = write_mgf(tmp_path / "nocharge.mgf", probe_spectra()[:1], charge=False).read_text()
    nocharge = "\n".join(x for x in nocharge.splitlines() if not x.startswith("SEQ")) + "\n"
    bad.write_text("BEGIN IONS\nTITLE=z0\nPEPMASS=500\nCHARGE=0\n100 1\nEND IONS\n" + nocharge)
    good = need(SPECTRA / "formats" / "TMT10-Trial-8.mzML")
    out = tmp_path / "out.mztab"
    summary, _ = run_json(capsys, "sequence", "graphnovo-dp", str(good), str(bad), "-o", str(out))
    assert summary["spectra"] == 6 and summary["written"] + summary["skipped"] == 6
    assert summary["skipped_reasons"] == {"charge": 1} and summary["charge_inferred"] == 1
    psms = read_psms(out)
    assert len(psms) == summary["written"] == 5
    assert psms[0]["spectra_ref"] == "ms_run[1]:controllerType=0 controllerNumber=1 scan=501"
    assert psms[-1]["spectra_ref"] == "ms_run[2]:index=1" and psms[-1]["charge"] in ("2", "3", "4")
    assert psms[0]["opt_global_scan"] == "501"
    mtd = {line.split("\t")[1]: line.split("\t")[2] for line in out.read_text().splitlines() if line.startswith("MTD")}
    assert mtd["fixed_mod[1]"] == "[UNIMOD, UNIMOD:4, Carbamidomethyl, ]"  # the vocabulary has no plain C
    assert mtd["variable_mod[1]"] == "[UNIMOD, UNIMOD:35, Oxidation, ]" and mtd["variable_mod[1]-site"] == "M"
    for p in psms:  # per-residue scores: one per residue of the ProForma peptide
        assert len(p["opt_ms_run[1]_aa_scores"].split(",")) == len(p["sequence"])
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["peptide"] for r in rows] == [p["opt_global_proforma"] for p in psms]
    skipped = (tmp_path / "out.mztab.skipped.tsv").read_text().splitlines()
    assert len(skipped) == 2 and "index=0" in skipped[1] and "charge" in skipped[1]
    notes = (tmp_path / "out.mztab.notes.tsv").read_text()
    assert "index=1" in notes and "charge: missing" in notes
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_sequence_dp_failures_reach_the_skipped_report(tmp_path, capsys, monkeypatch):
    """A spectrum the pipeline cannot sequence is in component.failures, which the core reports."""
    from engine_graphnovo.inference import Pipeline

    predict = Pipeline.predict_many
    monkeypatch.setattr(Pipeline, "predict_many", lambda self, spectra: [None, *predict(self, spectra[1:])])
    mgf = write_mgf(tmp_path / "p.mgf", probe_spectra())
    out = tmp_path / "o.mztab"
    summary, _ = run_json(capsys, "sequence", "graphnovo-dp", str(mgf), "-o", str(out))
    assert summary["written"] == 2 and summary["skipped_reasons"] == {"no path": 1}
    assert "index=0\tno path" in Path(f"{out}.skipped.tsv").read_text()
    # nothing sequenced at all: exit 1, earlier results untouched
    monkeypatch.setattr(Pipeline, "predict_many", lambda self, spectra: [None] * len(spectra))
    assert main(["sequence", "graphnovo-dp", str(mgf), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no spectrum was sequenced (3 read, 3 skipped: 3 no path; the first: no path: no sequence fills" in err
    assert len(read_psms(out)) == 2


def need_heldout():
    from engine_graphnovo.evaluation import heldout_spectra

    need(SPECTRA / "massivekb" / "massivekb_selected_500.mgf")
    return heldout_spectra()


def dp_scores(spectra) -> dict:
    """AA recall/precision and peptide recall of graphnovo-dp on labelled spectra, counted here."""
    from engine_graphnovo.component import DPSequencer
    from engine_graphnovo.metrics import aa_matches

    from engine.io.peptides import normalize_il, parse_peptide, residue_masses

    hits = {h.spectrum_ref: parse_peptide(h.peptide) for h in DPSequencer().sequence(spectra)}
    matched = predicted = true_total = correct = 0
    for spec in spectra:
        true = parse_peptide(spec.label)
        true_total += residue_masses(true).size
        pred = hits.get(spec.ref)
        if pred is not None:
            predicted += residue_masses(pred).size
            matched += aa_matches(residue_masses(pred), residue_masses(true))
            correct += normalize_il(pred) == normalize_il(true)
    assert predicted > 0
    return {
        "aa_recall": matched / true_total,
        "aa_precision": matched / predicted,
        "peptide_recall": correct / len(spectra),
    }


def test_sequence_learned_and_eval(tiny_weights, tmp_path, capsys, massivekb, probe_mgf):
    pytest.importorskip("torch")
    out = tmp_path / "o.mztab"
    model = ["--model", str(tiny_weights)]
    summary, _ = run_json(capsys, "sequence", "graphnovo", str(probe_mgf), *model, "-o", str(out), *SMALL_BEAMS)
    # the mass-constrained fill always yields a sequence, even from an untrained model
    assert summary["spectra"] == summary["written"] == 3 and summary["skipped"] == 0
    assert len(read_psms(out)) == 3
    res, _ = run_json(capsys, "eval", "graphnovo", *model, "--limit", "4", *SMALL_BEAMS)
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
    assert (res["search"]["path_beam"], res["search"]["prune_nodes"]) == (2, 0)  # the setting measured is reported
    stages = res["prefix_stages"]
    assert sum(stages["counts"].values()) == stages["true_prefixes"] > 0
    # the baseline's numbers, recomputed from the DP sequencer's own output on the same 4 spectra:
    # matched residues over ALL true residues (a spectrum with no prediction counts as 0 matched)
    want = dp_scores(need_heldout()[:4])
    assert res["baseline_aa_recall"] == pytest.approx(want["aa_recall"], rel=1e-12)
    assert res["baseline_aa_precision"] == pytest.approx(want["aa_precision"], rel=1e-12)
    assert res["baseline_peptide_recall"] == pytest.approx(want["peptide_recall"], rel=1e-12)


def test_eval_dp_on_given_files_writes_json(tmp_path, capsys, probe_mgf):
    out = tmp_path / "eval.json"
    res, _ = run_json(capsys, "eval", "graphnovo-dp", "--spectra", str(probe_mgf), "--top-n", "100", "-o", str(out))
    assert res["spectra"] == 3 and "baseline_peptide_recall" in res and "peptide_recall" not in res
    assert json.loads(out.read_text()) == res
    assert main(["eval", "graphnovo-dp", "--labels", str(probe_mgf)]) == 2
    assert "--spectra" in one_line_error(capsys)
    assert main(["eval", "graphnovo-dp", "--spectra", str(tmp_path / "x.txt")]) == 2
    assert "unknown spectrum format" in one_line_error(capsys)
    assert main(["eval", "graphnovo-dp", "--spectra", str(probe_mgf), "--split", "dev"]) == 2
    assert "--split" in one_line_error(capsys)
    assert main(["eval", "graphnovo-dp", "--dev-fold", "1"]) == 2  # a fold without --split dev
    assert "--dev-fold" in one_line_error(capsys)


def test_eval_dp_on_a_dev_fold(capsys, massivekb):
    from engine_graphnovo.evaluation import real_split

    res, _ = run_json(capsys, "eval", "graphnovo-dp", "--split", "dev", "--dev-fold", "1", "--limit", "3")
    assert res["spectra"] == 3
    expected = dp_scores(real_split("dev", fold=1)[:3])["aa_recall"]
    assert res["baseline_aa_recall"] == pytest.approx(expected, rel=1e-12)


def test_usage_errors_are_one_line(tmp_path, capsys):
    assert main(["sequence", "graphnovo-dp", str(tmp_path / "x.txt"), "-o", str(tmp_path / "o")]) == 2
    assert "unknown spectrum format" in one_line_error(capsys)
    assert main(["sequence", "graphnovo", "--model", str(tmp_path), str(tmp_path / "a.mgf"), "-o", "x"]) == 2
    assert "no graphnovo weights" in one_line_error(capsys)
    assert main(["train", "graphnovo", "--init", str(tmp_path), "-o", str(tmp_path / "run")]) == 2
    assert f"no graphnovo weights at {tmp_path} (--init takes a weights folder" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()  # refused before any work
    mgf = str(tmp_path / "a.mgf")  # the CSV would overwrite the input
    assert main(["sequence", "graphnovo-dp", mgf, "-o", str(tmp_path / "o.mztab"), "--csv", mgf]) == 2
    assert "same file as the input" in one_line_error(capsys)


def test_options_are_flags_in_help(capsys):
    assert main(["sequence", "graphnovo", "--help"]) == 0
    text = capsys.readouterr().out
    search = ["--charges", "--isotopes", "--precursor-ppm", "--path-beam", "--fill-beam", "--path-length-bonus"]
    preprocessing = ["--min-mz", "--max-mz", "--top-n", "--min-intensity", "--precursor-window"]
    for flag in (*search, *preprocessing, "--model", "--artifact", "--threads"):
        assert flag in text
    assert main(["sequence", "graphnovo-dp", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in (*search[:3], *preprocessing)) and "--path-beam" not in text
    verbs = {
        "train": ["--minutes", "--steps", "--batch-size", "--lr", "--real-fraction", "--no-real", "--d-model"],
        "eval": ["--spectra", "--labels", "--limit", "--path-beam"],
        "bench": ["--limit", "--path-beam"],
        "export": ["--force", "--output"],
    }
    for verb, flags in verbs.items():
        assert main(["help", verb, "graphnovo"]) == 0
        text = capsys.readouterr().out
        assert all(flag in text for flag in flags), (verb, text)
    assert main(["help", "train", "graphnovo"]) == 0
    assert "--encoder-layers" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--top-n", "0"], "top_n must be a positive integer"),
        (["--charges", "2,x"], "comma-separated int"),
        (["--charges", "0"], "charges must be positive integers"),
        (["--min-mz", "300", "--max-mz", "200"], "max_mz must be above min_mz"),
        (["--min-intensity", "2"], "min_intensity must be a number in [0, 1]"),
        (["--precursor-ppm", "-1"], "precursor_ppm must be a positive number"),
        (["--path-beam", "2"], "unrecognized arguments: --path-beam"),  # the DP has no beams
        (["--threads", "2"], "--threads does not apply to graphnovo-dp"),  # nor threads
        (["--provider", "cpu"], "--provider applies only with --artifact"),
    ],
)
def test_bad_options_are_one_line_usage_errors(flags, message, probe_mgf, tmp_path, capsys):
    assert main(["sequence", "graphnovo-dp", str(probe_mgf), "-o", str(tmp_path / "o.mztab"), *flags]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "o.mztab").exists()


def test_an_option_a_component_does_not_take_names_those_it_does():
    """From the host too: the factory takes **options, so the options class says what they are."""
    host = engine.Engine()
    with pytest.raises(ConfigError, match=r"^graphnovo-dp has no option 'threads' \(it takes: .*precursor_ppm"):
        host.create("sequencer", "graphnovo-dp", threads=1)
    assert host.create("sequencer", "graphnovo-dp", top_n=2).options.top_n == 2


def test_flags_of_the_other_path_are_usage_errors(tiny_weights, probe_mgf, tmp_path, capsys):
    out = ["-o", str(tmp_path / "o.mztab")]
    assert main(["sequence", "graphnovo", str(probe_mgf), *out, "--provider", "cpu"]) == 2
    assert "--provider applies only with --artifact" in one_line_error(capsys)
    artifact = ["--artifact", str(tmp_path / "art")]
    assert main(["sequence", "graphnovo", str(probe_mgf), *out, *artifact, "--device", "cpu"]) == 2
    assert "--device does not apply with --artifact" in one_line_error(capsys)
    assert main(["sequence", "graphnovo", str(probe_mgf), *out, *artifact, "--model", str(tiny_weights)]) == 2
    assert "--model does not apply with --artifact" in one_line_error(capsys)
    assert main(["train", "graphnovo", "--model", str(tiny_weights)]) == 2
    assert "--model does not apply" in one_line_error(capsys)


def test_deprecated_weights_flag_still_works_with_a_warning(tiny_weights, probe_mgf, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "o.mztab"
    weights = ["--weights", str(tiny_weights)]
    summary, err = run_json(capsys, "sequence", "graphnovo", str(probe_mgf), *weights, "-o", str(out), *SMALL_BEAMS)
    assert "--weights is deprecated, use --model" in err
    assert summary["spectra"] == 3 and out.is_file()


def test_python_api_applies_the_same_options(tiny_weights):
    pytest.importorskip("torch")
    from engine_graphnovo.component import DPSequencer, baseline_for
    from engine_graphnovo.torch_path import GraphNovoSequencer

    seq = GraphNovoSequencer(model=tiny_weights, charges=[2, 3], top_n=60, path_beam=3, precursor_window=0.0)
    search, prep = seq.pipeline.search, seq.pipeline.prep
    assert (search.charges, search.path_beam, search.fill_beam) == ((2, 3), 3, 5)  # unset: the model's (none: code's)
    assert (prep.top_n, prep.remove_precursor_tol, prep.min_mz) == (60, 0.0, 50.0)
    dp = DPSequencer(isotopes=(0, 1), min_intensity=0.05)
    assert dp.pipeline.search.isotopes == (0, 1) and dp.pipeline.prep.min_relative_intensity == 0.05
    assert DPSequencer(max_nodes=40).pipeline.builder.config.max_nodes == 40
    small = GraphNovoSequencer(model=tiny_weights, max_nodes=40)
    assert small.pipeline.builder.config.max_nodes == 40
    same = baseline_for(small.options, small)  # eval's baseline searches the learned model's graphs
    assert (same.pipeline.builder, same.pipeline.prep) == (small.pipeline.builder, small.pipeline.prep)
    for bad in ({"top_n": 0}, {"charges": ()}, {"isotopes": [0.5]}, {"path_beam": 2}, {"max_mz": 10.0}):
        with pytest.raises(ConfigError) as info:
            DPSequencer(**bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot run on device"):
        GraphNovoSequencer(model=tiny_weights, device="no-such-device")


def test_default_model_uses_its_tuned_search_and_sequences_right_after_setup(tmp_path, capsys, probe_mgf):
    pytest.importorskip("torch")
    from engine_graphnovo.component import DEFAULT_WEIGHTS
    from engine_graphnovo.torch_path import GraphNovoSequencer

    size = sum(f.stat().st_size for f in DEFAULT_WEIGHTS.iterdir())
    assert size <= 25 * 2**20
    meta = json.loads((DEFAULT_WEIGHTS / "config.json").read_text())
    assert meta["training"]["steps"] > 0
    search = GraphNovoSequencer().pipeline.search
    assert (search.path_beam, search.fill_beam) == (meta["search"]["path_beam"], meta["search"]["fill_beam"])
    out = tmp_path / "default.mztab"
    assert run_json(capsys, "sequence", "graphnovo", str(probe_mgf), "-o", str(out))[0]["written"] == 3


@pytest.mark.parametrize("name", ["graphnovo", "graphnovo-dp"])
def test_demo_shows_label_and_prediction(name, capsys):
    assert main(["demo", name]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "label" in line and "predicted" in line]
    assert len(rows) == 3 and "LLPAFLK" in rows[0]


def test_model_with_other_peak_features_is_refused_in_one_line(tiny_weights, tmp_path, capsys, probe_mgf):
    """A model saved before local significance (5 peak features, no recorded count) is
    refused by the torch loader, the CLI and the shared pipeline (onnxruntime path)."""
    import shutil

    from engine_graphnovo.component import pipeline_from_meta

    old = tmp_path / "old"
    shutil.copytree(tiny_weights, old)
    meta = json.loads((old / "config.json").read_text())
    for key in ("ion_types", "peak_features"):
        del meta["model"][key]
    (old / "config.json").write_text(json.dumps(meta))
    assert main(["sequence", "graphnovo", str(probe_mgf), "--model", str(old), "-o", str(tmp_path / "o")]) == 2
    err = one_line_error(capsys)
    assert "5 peak features" in err and "retrain" in err
    with pytest.raises(ValueError, match="5 peak features"):
        pipeline_from_meta(meta, backend=None)


def test_bench_takes_beam_overrides(tiny_weights, capsys, massivekb):
    pytest.importorskip("torch")
    args = ["bench", "graphnovo", "--model", str(tiny_weights), "--limit", "2"]
    res, _ = run_json(capsys, *args, "--path-beam", "3", "--fill-beam", "2", "--threads", "1")
    assert (res["path_beam"], res["fill_beam"], res["spectra"], res["threads"]) == (3, 2, 2, 1)
    # 1.0 also when nothing is predicted: make sure both spectra do get a peptide
    assert res["ort_torch_same_peptides"] == 1.0
    from engine_graphnovo.torch_path import GraphNovoSequencer

    seq = GraphNovoSequencer(model=tiny_weights, path_beam=3, fill_beam=2, threads=1)
    assert len(list(seq.sequence(need_heldout()[:2]))) == 2
    assert main([*args, "--path-beam", "0"]) == 2
    assert "path_beam must be a positive integer" in one_line_error(capsys)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--d-model", "30"], "d_model must be a positive multiple of 4"),
        (["--real-fraction", "1.5"], "real_fraction must be a number in [0, 1]"),
        (["--steps", "0"], "steps must be a positive integer"),
        (["--device", "cpu"], "--device does not apply"),
        (["--provider", "cpu"], "unrecognized arguments: --provider"),
    ],
)
def test_train_options_are_validated_before_training(flags, message, capsys):
    assert main(["train", "graphnovo", *flags]) == 2
    assert message in one_line_error(capsys)


@pytest.mark.parametrize("name", ["graphnovo", "graphnovo-dp"])
def test_spectra_with_nothing_to_read_are_skipped_and_reported_not_guessed(name):
    from engine import Engine
    from engine.interfaces import Spectrum

    sequencer = Engine().sequencer(name)
    empty = Spectrum(ref="index=0", precursor_mz=500.3, charge=2, mz=[], intensity=[], source="a.mgf")
    silent = Spectrum(ref="index=1", precursor_mz=500.3, charge=2, mz=[100.0], intensity=[0.0], source="a.mgf")
    assert list(sequencer.sequence([empty, silent])) == []
    assert sequencer.failures == [
        ("a.mgf", "index=0", "empty: no peaks"),
        ("a.mgf", "index=1", "empty: all intensities are zero"),
    ]
