"""The conformance kit passes good plugins and explains what is wrong with bad ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import good_plugin

import engine.testing
from engine.artifacts import read_artifact
from engine.testing import ConformanceError

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-plugin"


def test_good_plugin_passes(make_module, tmp_path):
    mod = make_module("kit_good", good_plugin("echo", "kit_good"))
    engine.testing.check_plugin(mod, tmp_path=tmp_path)


def test_plugin_that_registers_nothing(make_module):
    mod = make_module("kit_empty", "plugin_api_version = 1\n")
    with pytest.raises(ConformanceError, match="registers no component"):
        engine.testing.check_plugin(mod)


def test_plugin_that_imports_torch_eagerly(make_module):
    source = "import torch  # the mistake: imported at discovery\n" + good_plugin("eager", "kit_eager")
    mod = make_module("kit_eager", source)
    with pytest.raises(ConformanceError, match="imports torch at registration; register lazy factories"):
        engine.testing.check_plugin(mod)


def test_wrong_result_type(make_module):
    source = good_plugin("liar", "kit_liar") + "\nEcho.generate = lambda self, prompt, config=None: prompt\n"
    mod = make_module("kit_liar", source)
    with pytest.raises(
        ConformanceError, match="decoder 'liar' of plugin 'kit_liar': generate returned str, not a GenerationResult"
    ):
        engine.testing.check_plugin(mod, lazy_import=False)


def test_silent_bad_input(make_module):
    source = good_plugin("lax", "kit_lax") + (
        "\n_generate = Echo.generate\n"
        "Echo.generate = lambda self, prompt, config=None: _generate(self, str(prompt), config)\n"
    )
    mod = make_module("kit_lax", source)
    with pytest.raises(ConformanceError, match="accepted bad input silently"):
        engine.testing.check_plugin(mod, lazy_import=False)


def test_onnx_capability_without_loader(make_module):
    source = good_plugin("noload", "kit_noload").replace(
        'description="echo decoder"', 'description="d", capabilities=("onnx-export",)'
    )
    mod = make_module("kit_noload", source)
    with pytest.raises(ConformanceError, match="declares onnx-export but registers no artifact_loader"):
        engine.testing.check_plugin(mod, lazy_import=False)


def test_third_party_example_installs_and_passes_its_own_tests(tmp_path):
    """Install docs/example-plugin as a user would, then run its test suite and CLI."""
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        cwd=tmp_path,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("ENGINE_PLUGINS", None)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "engine", "list", "samplers"], capture_output=True, text=True, env=env
    )
    assert "bigram" in listed.stdout, listed.stderr
    sampled = subprocess.run(
        [sys.executable, "-m", "engine", "sample", "bigram", "--length", "12", "--seed", "3"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert sampled.returncode == 0 and len(sampled.stdout.strip("\n")) == 12, sampled.stderr


SEQUENCER = """
from engine import hookimpl
from engine.interfaces import PeptideHit, Sequencer

plugin_api_version = 2


class Liar(Sequencer):
    def sequence(self, spectra):
        for s in spectra:
            if not hasattr(s, "precursor_mz"):
                raise TypeError("expected Spectrum")
            yield @HIT@


@hookimpl
def register_sequencers(registry):
    registry.add("liar", "@MODULE@:Liar", description="a sequencer under test")
"""


@pytest.mark.parametrize(
    ("hit", "problem"),
    [
        ("s.ref", "sequence yielded str, not PeptideHit"),
        ("PeptideHit('index=99', None, 'PEPTIDE', 1.0, [], 0.0, 2, 500.0)", "which was not in the input"),
    ],
)
def test_kit_feeds_sequencers_bundled_spectra(make_module, hit, problem):
    """No spectra passed by the author: the kit's own probe spectra still catch a wrong answer."""
    mod = make_module("kit_seq_liar", SEQUENCER.replace("@HIT@", hit).replace("@MODULE@", "kit_seq_liar"))
    with pytest.raises(ConformanceError, match=f"sequencer 'liar' of plugin 'kit_seq_liar': .*{problem}"):
        engine.testing.check_plugin(mod, lazy_import=False)


def test_kit_holds_hits_to_the_declared_residues(make_module):
    """A sequencer that declares its vocabulary (the mzTab header reports its modifications) must
    not write a token outside it."""
    hit = "PeptideHit(s.ref, None, 'PEPM[Oxidation]K', 1.0, [0.5] * 5, 0.0, 2, 500.0)"
    source = SEQUENCER.replace("@HIT@", hit).replace(
        "class Liar(Sequencer):\n", "class Liar(Sequencer):\n    residues = ('P', 'E', 'M', 'K')\n"
    )
    mod = make_module("kit_seq_vocab", source.replace("@MODULE@", "kit_seq_vocab"))
    with pytest.raises(ConformanceError, match="yielded 'M\\[Oxidation\\]', which is not in its declared residues"):
        engine.testing.check_plugin(mod, lazy_import=False)


def test_kit_rejects_an_empty_result_for_spectra(make_module):
    source = SEQUENCER.replace("            yield @HIT@", "            pass\n        return iter(())")
    mod = make_module("kit_seq_empty", source.replace("@MODULE@", "kit_seq_empty"))
    with pytest.raises(ConformanceError, match="yielded no hit for 3 spectra"):
        engine.testing.check_plugin(mod, lazy_import=False)


# ------------------------------------------------------------------ messages, ONNX parity, helpers

EXPORTER = """
import json

from engine import hookimpl
from engine.artifacts import write_component_artifact
from engine.interfaces import Decoder, GenerationResult, GenerationStats

plugin_api_version = 1
RUNTIME_SHIFT = @SHIFT@  # what the loaded artifact adds to every token: 0 is a faithful export


class Echo(Decoder):
    def __init__(self, shift=0):
        self.shift = shift

    def generate(self, prompt, config=None):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be str, got {type(prompt).__name__}")
        text = prompt[: (config.max_new_tokens if config else 128)]
        tokens = [ord(c) + self.shift for c in text]
        return GenerationResult(tokens=tokens, text=text, stats=GenerationStats(1, len(text), 0.0))

    def export_onnx(self, dest):
        return write_component_artifact(self, dest, files={"shift.json": json.dumps(RUNTIME_SHIFT).encode()}, models={})


def load(artifact, provider, **options):
    return Echo(shift=json.loads(artifact.file("shift.json").read_text()))


@hookimpl
def register_decoders(registry):
    registry.add("echo", "@MODULE@:Echo", description="exporting echo", capabilities=("onnx-export",),
                 artifact_loader="@MODULE@:load")
"""


def exporter(make_module, name, shift=0):
    return make_module(name, EXPORTER.replace("@MODULE@", name).replace("@SHIFT@", str(shift)))


def test_onnx_parity_exports_reloads_and_compares(make_module, tmp_path):
    engine.testing.check_plugin(exporter(make_module, "kit_export"), tmp_path=tmp_path, lazy_import=False)
    art = read_artifact(tmp_path / "echo-artifact")
    assert art.manifest["plugin"]["name"] == "kit_export" and art.component == "echo" and art.kind == "decoder"


def test_onnx_parity_failure_names_both_results(make_module, tmp_path):
    mod = exporter(make_module, "kit_drift", shift=1)
    with pytest.raises(
        ConformanceError,
        match=r"^conformance: decoder 'echo' of plugin 'kit_drift': onnxruntime result differs from torch: "
        r"GenerationResult\(tokens=\(73, 102, .* vs GenerationResult\(tokens=\(72, 101, ",
    ):
        engine.testing.check_plugin(mod, tmp_path=tmp_path, lazy_import=False)


def test_artifact_files_must_declare_an_ir_version_older_runtimes_read(tmp_path):
    """onnx stamps its newest IR version on hand-built graphs; onnxruntime 1.30 refuses 14."""
    import onnx
    from onnx_models import add_one_model

    model = onnx.load_from_string(add_one_model())
    onnx.save(model, tmp_path / "a.onnx")
    engine.testing.check_ir_versions("decoder 'x'", tmp_path)  # IR 8: fine
    model.ir_version = engine.testing.MAX_IR_VERSION + 1
    onnx.save(model, tmp_path / "b.onnx")
    with pytest.raises(ConformanceError, match=r"decoder 'x': b.onnx declares ONNX IR version 11; onnxruntime 1.18"):
        engine.testing.check_ir_versions("decoder 'x'", tmp_path)


def test_without_tmp_path_the_kit_exports_into_a_named_temporary_folder(make_module, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    engine.testing.check_plugin(exporter(make_module, "kit_tmp"), lazy_import=False)
    made = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert len(made) == 1 and made[0].name.startswith("engine-conformance-")
    assert (made[0] / "echo-artifact" / "manifest.json").is_file()


def test_check_installed_skips_the_parity_check_when_told(make_module):
    eng = engine.testing.engine_with(exporter(make_module, "kit_installed", shift=1))
    assert engine.testing.check_installed(eng, onnx=False) == {"decoder:echo": None}
    (problem,) = engine.testing.check_installed(eng).values()
    assert "onnxruntime result differs from torch" in problem


def test_a_component_that_cannot_be_built_is_named_with_the_error(make_module):
    mod = make_module("kit_unbuildable", good_plugin("echo", "kit_unbuildable"))
    with pytest.raises(
        ConformanceError,
        match=r"^conformance: decoder 'echo' of plugin 'kit_unbuildable': cannot be built: "
        r"ConfigError: echo has no option 'nonsense' \(it takes: repeat\)$",
    ):
        engine.testing.check_plugin(mod, options={"echo": {"nonsense": 1}}, lazy_import=False)


@pytest.mark.parametrize("message", ["", "first line\nsecond line"])
def test_bad_input_needs_a_one_line_message(make_module, message):
    source = good_plugin("mumble", "kit_mumble") + (
        f"\n_generate = Echo.generate\n"
        f"def _strict(self, prompt, config=None):\n"
        f"    if not isinstance(prompt, str):\n"
        f"        raise ValueError({message!r})\n"
        f"    return _generate(self, prompt, config)\n"
        f"Echo.generate = _strict\n"
    )
    mod = make_module("kit_mumble", source)
    want = f"bad input raised ValueError without a one-line message: {message.strip()!r}"
    with pytest.raises(
        ConformanceError, match="^" + re.escape("conformance: decoder 'mumble' of plugin 'kit_mumble': " + want)
    ):
        engine.testing.check_plugin(mod, lazy_import=False)


def test_registration_failures_name_the_plugin_module(make_module):
    mod = make_module("kit_nothing", "plugin_api_version = 1\n")
    with pytest.raises(ConformanceError, match=r"^conformance: plugin kit_nothing: registers no component$"):
        engine.testing.check_registration(mod)
    source = good_plugin("blank", "kit_blank").replace('description="echo decoder"', 'description=""')
    with pytest.raises(
        ConformanceError, match=r"^conformance: decoder 'blank' of plugin 'kit_blank': has no description$"
    ):
        engine.testing.check_registration(make_module("kit_blank", source))


def test_the_kit_engine_is_strict(make_module):
    """A hook that raises is an error at once, not a plugin recorded as failed."""
    mod = make_module(
        "kit_broken",
        "from engine import hookimpl\nplugin_api_version = 1\n"
        "@hookimpl\ndef register_decoders(registry):\n    raise RuntimeError('boom')\n",
    )
    with pytest.raises(ConformanceError, match=r"^conformance: plugin kit_broken: does not register cleanly: .*boom"):
        engine.testing.check_registration(mod)


def test_run_without_returns_text_and_reports_what_was_blocked():
    assert engine.testing.run_without("print('ok')") == "ok\n"
    with pytest.raises(ConformanceError, match=r"^conformance: code failed with torch, transformers blocked:\n"):
        engine.testing.run_without("import torch")
    with pytest.raises(ConformanceError, match="json is blocked"):
        engine.testing.run_without("import json", blocked=("json",))


# Each worker appends its rank to a log; rank 1 fails the way FAIL says on the first try only,
# once rank 0 has written (the launcher stops the other workers when one fails: without the wait
# a slow-starting rank 0 could be stopped before its entry, and the log would say one try too few).
_WORKER = """
import os, sys, time
from pathlib import Path
log = Path(sys.argv[1]); rank = os.environ["RANK"]
first = not log.exists() or "1" not in log.read_text()
with log.open("a") as f:
    f.write(rank)
if rank == "1" and (first or "{fail}" == "exit"):
    deadline = time.monotonic() + 60
    while log.read_text().count("0") < log.read_text().count("1") and time.monotonic() < deadline:
        time.sleep(0.05)
    if "{fail}" == "abort":
        os.abort()
    sys.exit("rank 1: ValueError: a worker's own error")
# one write: the workers share the launcher's stdout, and print's pieces of two workers interleave
sys.stdout.write(f"world {{os.environ['WORLD_SIZE']}} threads {{os.environ['OMP_NUM_THREADS']}}\\n")
"""


def _torchrun(tmp_path, fail):
    pytest.importorskip("torch")
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(fail=fail))
    return engine.testing.run_torchrun([str(script), str(tmp_path / "log")], timeout=120), tmp_path / "log"


def test_run_torchrun_runs_again_when_a_worker_is_killed_by_a_signal(tmp_path):
    with pytest.warns(UserWarning, match=r"killed by a signal(.|\n)*exitcode\s*:\s*-6"):
        done, log = _torchrun(tmp_path, "abort")
    assert sorted(log.read_text()) == ["0", "0", "1", "1"]  # two tries of two workers
    assert "world 2 threads 1" in done.stdout


def test_run_torchrun_reports_a_worker_error_without_running_again(tmp_path):
    with pytest.raises(AssertionError, match=r"torchrun failed \(exit 1\):\n(.|\n)*rank 1: ValueError: a worker's own"):
        _torchrun(tmp_path, "exit")
    assert sorted((tmp_path / "log").read_text()) == ["0", "1"]
