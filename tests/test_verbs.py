"""Plugin API 2: a plugin with components and no CLI code works from every verb of its kind."""

from __future__ import annotations

import io
import json
import sys

import pytest

import engine
from engine.cli import main
from engine.errors import PluginError

TOYS = """
import attrs
import numpy as np
from engine import hookimpl
from engine.interfaces import (Decoder, GenerationConfig, GenerationResult, GenerationStats, PeptideHit, Sampler,
                               SampleResult, SampleStats, SamplingConfig, Sequencer, Spectrum, as_config)
from engine.options import option

plugin_api_version = 2
BUILT = []


@attrs.frozen
class EchoOptions:
    repeat: int = option(1, "how often to repeat the prompt", validator=attrs.validators.ge(1))
    shout: bool = option(False, "upper-case (torch path only)", paths=("torch",))


class Echo(Decoder):
    def __init__(self, model=None, threads=None, repeat=1, shout=False):
        BUILT.append({"model": model, "threads": threads, "repeat": repeat, "shout": shout})
        self.repeat, self.shout = repeat, shout

    def generate(self, prompt, config=None):
        config = as_config(GenerationConfig, config)
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be str, got {type(prompt).__name__}")
        text = prompt * self.repeat
        text = (text.upper() if self.shout else text)[: config.max_new_tokens if config else 128]
        if config is not None and config.stream:
            config.stream(text)
        return GenerationResult(tokens=[ord(c) for c in text], text=text, stats=GenerationStats(1, len(text), 0.0))

    def export_onnx(self, dest, overwrite=False):
        from engine.artifacts import write_component_artifact
        return write_component_artifact(self, dest, files={"echo.txt": b"echo"}, models={},
                                        config={"repeat": self.repeat}, overwrite=overwrite)


class OrtEcho(Echo):
    runs_artifact = True


def load_artifact(artifact, provider="auto", threads=None, repeat=None, shout=False):
    return OrtEcho(repeat=repeat or artifact.config["repeat"])


class Letters(Sampler):
    def __init__(self, model=None):
        pass

    def sample(self, config=None):
        config = as_config(SamplingConfig, config)
        rng = np.random.default_rng(config.seed)
        rows = rng.integers(0, 26, size=(config.num_samples, config.length)).tolist()
        texts = ["".join(chr(97 + i) for i in row) for row in rows]
        return SampleResult(texts=texts, tokens=rows, stats=SampleStats(config.steps, 0.0))


class Constant(Sequencer):
    def __init__(self, model=None, peptide="PEPTIDE"):
        self.peptide = peptide

    def sequence(self, spectra):
        for s in spectra:
            if not isinstance(s, Spectrum):
                raise TypeError(f"expected Spectrum, got {type(s).__name__}")
            yield PeptideHit(s.ref, s.scan, self.peptide, 0.5, [0.5] * len(self.peptide), 1.0,
                             s.charge or 2, s.precursor_mz, s.source)


@attrs.frozen
class ConstantOptions:
    peptide: str = option("PEPTIDE", "the peptide reported for every spectrum")


@hookimpl
def register_decoders(registry):
    registry.add("echo", "toys:Echo", description="echo decoder", capabilities=("onnx-export", "stream"),
                 options="toys:EchoOptions", artifact_loader="toys:load_artifact")


@hookimpl
def register_samplers(registry):
    registry.add("letters", "toys:Letters", description="random letters")


@hookimpl
def register_sequencers(registry):
    registry.add("constant", "toys:Constant", description="always the same peptide", options="toys:ConstantOptions")
"""


@pytest.fixture
def toys(installed, only):
    installed({"toys": ("toys", TOYS)})
    only("toys")
    import toys

    toys.BUILT.clear()
    return toys


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_from_arguments_with_options_and_kind_flags(toys, capsys):
    code, out, _ = run(capsys, "decode", "echo", "ab", "--repeat", "3", "--max-new-tokens", "5", "--threads", "1")
    assert code == 0 and out == "ababa\n"  # streamed, then a newline
    assert toys.BUILT == [{"model": None, "threads": 1, "repeat": 3, "shout": False}]  # shout: factory default


def test_decode_json_batch_from_a_jsonl_file(toys, capsys, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "xy", "id": "q1", "text": "theirs"}\n"z"\n')
    code, out, _ = run(capsys, "decode", "echo", "--prompts", str(prompts), "--json")
    rows = json.loads(out)["results"]
    assert code == 0 and [r["text"] for r in rows] == ["xy", "z"] and rows[0]["tokens"] == [120, 121]
    assert rows[0]["input"] == {"id": "q1", "text": "theirs"} and "input" not in rows[1]  # a line's own fields


def test_decode_reads_standard_input(toys, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    code, out, _ = run(capsys, "decode", "echo", "--no-stream")
    assert code == 0 and out == "from stdin\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decode", "echo", "--repeat", "0", "x"], "repeat"),
        (["decode", "echo", "--repeat", "two", "x"], "invalid int value"),
        (["decode", "echo", "--provider", "cpu", "x"], "--provider applies only with --artifact"),
        (["decode", "echo", "--artifact", "a", "--device", "cpu", "x"], "--device does not apply with --artifact"),
        (["decode", "echo", "--artifact", "a", "--shout", "x"], "--shout does not apply to the onnxruntime path"),
        (["decode", "echo", "   "], "prompt 1 is empty"),
        (["decode", "echo", "\udcff"], "not valid UTF-8"),
        (["decode", "echo", "--no-such-flag", "x"], "unrecognized arguments: --no-such-flag"),
        (["sample", "letters", "--steps", "0"], "steps must be >= 1"),
        (["export", "echo"], "needs -o DEST"),
        (["train", "echo"], "echo does not support 'train'"),
    ],
)
def test_bad_flags_are_one_line_usage_errors_before_any_model_loads(toys, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert toys.BUILT == []


def test_invalid_utf8_prompt_file_is_a_usage_error(toys, capsys, tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_bytes(b'{"prompt": "\xff"}\n')
    code, _, err = run(capsys, "decode", "echo", "--prompts", str(bad))
    assert code == 2 and "not valid UTF-8" in err


def test_help_shows_common_kind_and_component_flags(toys, capsys):
    code, out, _ = run(capsys, "decode", "echo", "--help")
    assert code == 0
    for flag in ("--model", "--artifact", "--provider", "--threads", "--max-new-tokens", "--repeat", "--shout"):
        assert flag in out, flag
    code, out, _ = run(capsys, "help", "sequence", "constant")
    assert code == 0 and "--peptide" in out and "--csv" in out


def test_sample_writes_jsonl(toys, capsys, tmp_path):
    out_file = tmp_path / "s.jsonl"
    code, out, _ = run(
        capsys, "sample", "letters", "--num-samples", "2", "--length", "8", "--seed", "1", "-o", str(out_file)
    )
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert code == 0 and out == "" and len(rows) == 2 and all(len(r["text"]) == 8 for r in rows)


def test_a_draw_without_seed_names_the_seed_that_repeats_it(toys, capsys):
    code, out, err = run(capsys, "sample", "letters", "--length", "12")
    seed = int(err.split("[seed ", 1)[1].split(":", 1)[0])
    assert code == 0 and f"--seed {seed} draws the same again" in err
    again = run(capsys, "sample", "letters", "--length", "12", "--seed", str(seed))
    assert again[0] == 0 and again[1] == out and "[seed" not in again[2]
    code, out, _ = run(capsys, "sample", "letters", "--length", "12", "--json")
    drawn = json.loads(out)
    repeated = json.loads(run(capsys, "sample", "letters", "--length", "12", "--json", "--seed", str(drawn["seed"]))[1])
    assert code == 0 and repeated == drawn
    code, out, err = run(capsys, "decode", "echo", "ab", "--json")  # greedy: nothing drawn, no seed
    assert code == 0 and "seed" not in json.loads(out) and "[seed" not in err


def test_sample_text_file_marks_where_each_sample_begins_as_stdout_does(toys, capsys, tmp_path):
    from engine.io.samples import as_plain_text

    assert as_plain_text(["a\n\nb", "c"]) == "--- sample 0\na\n\nb\n--- sample 1\nc\n"
    assert as_plain_text(["only\n\none"]) == "only\n\none\n"
    argv = ("sample", "letters", "--num-samples", "2", "--length", "4", "--seed", "1")
    code, printed, _ = run(capsys, *argv)
    code_file, _, _ = run(capsys, *argv, "-o", str(tmp_path / "s.txt"))
    assert code == code_file == 0 and (tmp_path / "s.txt").read_text() == printed
    assert printed.startswith("--- sample 0\n") and "\n--- sample 1\n" in printed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--fix", "3="), "argument --fix: expected POSITION=TEXT with some text, got '3='"),
        (("--fix", "3"), "argument --fix: expected POSITION=TEXT with some text, got '3'"),
        (("--prefix", "ABCDEFGHIJ"), "prefix and suffix hold 10 characters, more than the sample length 8"),
        (("--seed", "-3"), "--seed must be at least 0, got -3"),
        (("--threads", "0"), "--threads must be at least 1, got 0"),
        (("--fix", "0=x", "--fix", "0=y"), "position 0 is fixed twice: to 'x' and to 'y'"),
    ],
)
def test_sampling_flags_out_of_range_or_holding_nothing_are_usage_errors(toys, capsys, flags, message):
    code, out, err = run(capsys, "sample", "letters", "--length", "8", *flags)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_sequence_reads_spectra_and_writes_mztab_and_csv(toys, capsys, tmp_path):
    mgf = tmp_path / "in.mgf"
    mgf.write_text("BEGIN IONS\nTITLE=a\nPEPMASS=500.3\nCHARGE=2+\n100.0 10\n200.0 20\n300.0 5\nEND IONS\n")
    out = tmp_path / "out.mztab"
    code, stdout, _ = run(capsys, "sequence", "constant", str(mgf), "-o", str(out), "--peptide", "PEPTIDEK", "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["written"] == 1 and summary["spectra"] == 1
    psm = [line for line in out.read_text().splitlines() if line.startswith("PSM\t")]
    assert len(psm) == 1 and psm[0].split("\t")[1] == "PEPTIDEK"
    assert "PEPTIDEK" in out.with_suffix(".csv").read_text()


def test_sequence_refuses_to_overwrite_its_input(toys, capsys, tmp_path):
    mgf = tmp_path / "in.mgf"
    mgf.write_text("BEGIN IONS\nPEPMASS=500.3\nCHARGE=2+\n100.0 10\nEND IONS\n")
    code, _, err = run(capsys, "sequence", "constant", str(mgf), "-o", str(mgf))
    assert code == 2 and "in.mgf" in err and "BEGIN IONS" in mgf.read_text()


def test_export_then_run_the_artifact(toys, capsys, tmp_path):
    dest = tmp_path / "art"
    code, out, _ = run(capsys, "export", "echo", "-o", str(dest), "--repeat", "2", "--json")
    assert code == 0 and json.loads(out)["artifact"] == str(dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["component"] == {"kind": "decoder", "name": "echo"} and manifest["plugin"]["name"] == "toys"
    code, out, _ = run(capsys, "decode", "echo", "--artifact", str(dest), "--provider", "cpu", "ab", "--no-stream")
    assert code == 0 and out == "abab\n"
    code, _, err = run(capsys, "export", "echo", "-o", str(dest))
    assert code == 1 and "already exists" in err and "--force" in err
    assert run(capsys, "export", "echo", "-o", str(dest), "--force")[0] == 0


def test_an_output_that_cannot_be_written_is_refused_before_any_work(toys, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for argv in (
        ("decode", "echo", "ab", "-o", str(blocker / "out.jsonl")),
        ("export", "echo", "-o", str(blocker / "art")),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "cannot write" in err and "a-file is not a folder" in err, argv
        assert len(err.strip().splitlines()) == 1
    assert toys.BUILT == []  # refused before the component was built


def test_export_never_replaces_what_it_did_not_write(toys, capsys, tmp_path):
    dest = tmp_path / "thesis"
    dest.mkdir()
    (dest / "thesis.txt").write_text("years of work")
    code, _, err = run(capsys, "export", "echo", "-o", str(dest), "--force")
    assert code == 1 and "is not an engine artifact" in err
    assert (dest / "thesis.txt").read_text() == "years of work"


def test_quantize_is_refused_by_a_component_that_cannot(toys, capsys, tmp_path):
    code, _, err = run(capsys, "export", "echo", "-o", str(tmp_path / "q"), "--quantize", "int8")
    assert code == 2 and "echo does not support --quantize" in err


def test_deprecated_spellings_still_work_with_a_warning(toys, capsys, tmp_path):
    dest = tmp_path / "old"
    code, _, err = run(capsys, "export", "echo", str(dest))
    assert code == 0 and (dest / "manifest.json").is_file() and "deprecated" in err
    code, out, err = run(capsys, "decode", "echo", "--onnx", str(dest), "hi", "--no-stream")
    assert code == 0 and out == "hi\n" and "--onnx is deprecated, use --artifact" in err


def test_generic_demo_runs_every_kind(toys, capsys):
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    assert "== decoder echo" in out and "== sampler letters" in out and "== sequencer constant" in out
    assert "label LLPAFLK" in out  # the bundled probe spectra, with their labels


def test_demo_takes_the_common_flags(toys, capsys):
    """One component takes all its demo flags; several take the shared ones, each where its factory does."""
    code, _, err = run(capsys, "demo", "echo", "--threads", "2", "--repeat", "3")
    assert code == 0, err
    assert toys.BUILT[-1] | {"model": None} == {"model": None, "threads": 2, "repeat": 3, "shout": False}
    code, out, err = run(capsys, "demo", "--threads", "1")
    assert code == 0, err
    assert toys.BUILT[-1]["threads"] == 1 and "== sampler letters" in out
    assert "letters takes no --threads; its demo runs without it" in err
    code, _, err = run(capsys, "demo", "echo", "letters", "--repeat", "2")
    assert code == 2 and "a demo of several components takes --threads and --device only, got '--repeat'" in err
    code, out, _ = run(capsys, "demo", "echo", "--help")
    assert code == 0 and "--repeat" in out and "--threads" in out


def test_list_and_verbs_agree(toys, capsys):
    code, out, _ = run(capsys, "list", "--json")
    verbs = {row["name"]: row["verbs"] for row in json.loads(out)}
    assert verbs == {
        "echo": ["decode", "export", "demo"],
        "letters": ["sample", "demo"],
        "constant": ["sequence", "demo"],
    }


def test_plugins_check_runs_the_kit(toys, capsys):
    code, out, _ = run(capsys, "plugins", "--check", "--json")
    assert code == 0 and json.loads(out) == {"decoder:echo": None, "sampler:letters": None, "sequencer:constant": None}


def test_plugins_check_fails_on_a_broken_component(installed, only, capsys):
    broken = TOYS.replace("yield PeptideHit(", "yield ('not a hit', ").replace("toys:", "broken_toys:")
    installed({"broken": ("broken_toys", broken)})
    only("broken")
    code, out, _ = run(capsys, "plugins", "--check")
    assert code == 1 and "sequencer:constant" in out and "yielded tuple, not PeptideHit" in out


def test_api2_plugins_cannot_take_over_core_verbs(make_module):
    mod = make_module(
        "toys_takeover",
        TOYS.replace('description="random letters")', 'description="r", commands={"sample": "toys:Letters"})'),
    )
    with pytest.raises(PluginError, match=r"verbs \['sample'\] are not the plugin's to run"):
        engine.Engine(plugins=[mod], autoload=False, strict=True, env={})


def test_a_missing_optional_dependency_names_the_extra(installed, only, capsys):
    source = TOYS.replace(
        "    def __init__(self, model=None):\n        pass",
        "    def __init__(self, model=None):\n        raise ModuleNotFoundError('no torch', name='torch')",
    )
    installed({"needy": ("needy_toys", source.replace("toys:", "needy_toys:"))})
    only("needy")
    code, _, err = run(capsys, "sample", "letters")
    assert code == 1 and "pip install 'fake-needy[torch]'" in err and err.count("\n") == 1


def test_thread_policy(monkeypatch):
    from engine.errors import UsageError
    from engine.runtime import resolve_threads

    monkeypatch.delenv("ENGINE_THREADS", raising=False)
    assert resolve_threads(None) is None and resolve_threads(3) == 3
    monkeypatch.setenv("ENGINE_THREADS", "2")
    assert resolve_threads(None) == 2 and resolve_threads(1) == 1
    monkeypatch.setenv("ENGINE_THREADS", "many")
    with pytest.raises(UsageError, match="ENGINE_THREADS must be a positive integer"):
        resolve_threads(None)


def test_component_identity_comes_from_registration(toys):
    host = engine.Engine()
    echo = host.create("decoder", "echo")
    assert echo.name == "echo" and echo.capabilities == ("onnx-export", "stream")
    assert echo.spec.plugin == "toys" and echo.spec.distribution == "fake-toys"


def test_doctor_and_version_commands(capsys):
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert code == 0 and report["providers"]["CPUExecutionProvider"]["runs"] is True
    code, out, _ = run(capsys, "version")
    assert code == 0 and out == f"engine {engine.__version__}\n"


def test_sequence_with_no_readable_input_fails_and_keeps_earlier_results(toys, capsys, tmp_path):
    out = tmp_path / "out.mztab"
    out.write_text("earlier results")
    empty = tmp_path / "empty.mgf"
    empty.write_text("")
    folder = tmp_path / "folder.mgf"
    folder.mkdir()
    code, _, err = run(
        capsys, "sequence", "constant", str(tmp_path / "missing.mgf"), str(empty), str(folder), "-o", str(out)
    )
    assert code == 1 and "no spectra could be read" in err
    assert (
        "missing.mgf does not exist" in err
        and "folder.mgf is a directory" in err
        and "empty.mgf holds no spectra" in err
    )
    assert out.read_text() == "earlier results"


def test_a_missing_labels_file_is_refused_before_any_work(toys, capsys, tmp_path):
    mgf = tmp_path / "one.mgf"
    mgf.write_text("BEGIN IONS\nPEPMASS=500.3\nCHARGE=2+\n100.1 5\nEND IONS\n")
    out = tmp_path / "out.mztab"
    code, _, err = run(capsys, "sequence", "constant", str(mgf), "-o", str(out), "--labels", str(tmp_path / "no.tsv"))
    assert code == 2 and f"labels file not found: {tmp_path / 'no.tsv'}" in err and not out.exists()


def test_a_run_that_sequences_nothing_fails_and_keeps_earlier_results(toys, capsys, tmp_path):
    mgf = tmp_path / "empty_peaks.mgf"
    mgf.write_text("BEGIN IONS\nPEPMASS=500.3\nCHARGE=2+\nEND IONS\n")
    out = tmp_path / "out.mztab"
    out.write_text("earlier results")
    code, _, err = run(capsys, "sequence", "constant", str(mgf), "-o", str(out))
    assert code == 1 and "no spectrum was sequenced (1 read, 1 skipped: 1 empty; the first: empty: no peaks)" in err
    assert out.read_text() == "earlier results" and not out.with_suffix(".csv").exists()


def test_components_built_by_an_engine_report_to_its_observers_and_stop_when_cancelled():
    pytest.importorskip("engine_graphnovo")
    from engine.errors import Cancelled
    from engine.kinds import probe_spectra
    from engine.progress import CancelToken, cancellation

    events = []
    host = engine.Engine(on_progress=events.append)
    sequencer = host.sequencer("graphnovo-dp")
    hits = list(sequencer.sequence(probe_spectra()))
    assert len(hits) == 3 and [e.current for e in events if e.task == "sequence" and not e.done] == [1, 2, 3]
    assert events[-1].done
    with cancellation(CancelToken(deadline=0)), pytest.raises(Cancelled, match="sequence stopped"):
        list(sequencer.sequence(probe_spectra()))


def test_an_option_with_choices_and_no_default_accepts_none_and_refuses_others():
    import attrs

    from engine.options import option

    @attrs.frozen
    class Opts:
        scheme: str | None = option(None, "a scheme, when given", choices=("int8",))

    assert Opts().scheme is None and Opts("int8").scheme == "int8"
    with pytest.raises(ValueError):
        Opts("int4")
