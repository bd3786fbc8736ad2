"""The conformance kit passes good plugins and explains what is wrong with bad ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import good_plugin

import engine.testing
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


def test_kit_rejects_an_empty_result_for_spectra(make_module):
    source = SEQUENCER.replace("            yield @HIT@", "            pass\n        return iter(())")
    mod = make_module("kit_seq_empty", source.replace("@MODULE@", "kit_seq_empty"))
    with pytest.raises(ConformanceError, match="yielded no hit for 3 spectra"):
        engine.testing.check_plugin(mod, lazy_import=False)
