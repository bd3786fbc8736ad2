"""The ``engine`` CLI: dispatch, exit codes, JSON, one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import good_plugin

from engine.cli import main


@pytest.fixture
def echo_installed(installed, only):
    installed({"echo-plugin": ("cli_echo_mod", good_plugin("echo", "cli_echo_mod"))})
    only("echo-plugin")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_version(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "decode" in out and "bench" in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("engine ")


def test_no_arguments_is_a_usage_error(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "usage" in out


def test_plugins_json(echo_installed, capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    data = json.loads(out)
    assert code == 0
    (plugin,) = data["plugins"]
    assert plugin["name"] == "echo-plugin" and plugin["distribution"] == "fake-echo-plugin"
    assert plugin["version"] == "1.0" and plugin["components"] == ["decoder:echo"] and plugin["error"] is None


def test_plugins_shows_load_errors(installed, only, capsys):
    installed({"bad": ("cli_bad_mod", "raise ImportError('missing dependency xyz')\n")})
    only("bad")
    code, out, _ = run(capsys, "plugins")
    assert code == 0 and "ERROR" in out and "missing dependency xyz" in out


def test_list(echo_installed, capsys):
    code, out, _ = run(capsys, "list", "decoders")
    assert code == 0 and "echo" in out
    code, out, _ = run(capsys, "list", "--json")
    assert json.loads(out)[0]["commands"] == ["bench", "decode", "demo"]


def test_dispatch_passes_arguments(echo_installed, capsys):
    code, out, _ = run(capsys, "decode", "echo", "hello", "world")
    assert code == 0 and out.strip() == "hello world"


def test_bench_json_is_one_object(echo_installed, capsys):
    code, out, _ = run(capsys, "bench", "echo", "--json")
    assert code == 0 and json.loads(out) == {"argv": [], "tokens_per_s": 12.5}
    code, out, _ = run(capsys, "bench", "echo")
    assert "tokens_per_s: 12.5" in out


def test_unknown_component_suggests(echo_installed, capsys):
    code, _, err = run(capsys, "decode", "ecko", "x")
    assert code == 2 and "did you mean echo" in err and len(err.strip().splitlines()) == 1


def test_unsupported_verb_is_usage_error(echo_installed, capsys):
    code, _, err = run(capsys, "train", "echo")
    assert code == 2 and "echo does not support 'train'" in err


def test_failure_is_one_line_and_exit_1(echo_installed, capsys):
    code, _, err = run(capsys, "bench", "echo", "--fail")
    assert code == 1 and err.strip() == "engine: error: the benchmark broke"


def test_usage_error_from_command_exit_2(echo_installed, capsys):
    code, _, err = run(capsys, "bench", "echo", "--bad")
    assert code == 2 and "unknown option --bad" in err


def test_debug_shows_traceback(echo_installed, capsys):
    code, _, err = run(capsys, "bench", "echo", "--fail", "--debug")
    assert code == 1 and "Traceback" in err


def test_missing_component_name(echo_installed, capsys):
    code, _, err = run(capsys, "decode")
    assert code == 2 and "needs a component name" in err


def test_demo_runs_each_component(echo_installed, capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "== decoder echo" in out and "demo" in out


def test_plugin_command_verb(make_module, installed, only, capsys):
    installed(
        {
            "tools": (
                "cli_tools_mod",
                """
                from engine import hookimpl
                plugin_api_version = 1
                @hookimpl
                def register_commands(commands):
                    commands.add("tools", "cli_tools_mod:run", help="extra tools")
                def run(argv, ctx):
                    print("tools", argv, ctx.prog, ctx.quiet)
                    return 3
                """,
            )
        }
    )
    only("tools")
    code, out, _ = run(capsys, "tools", "tune-tree", "--x", "--quiet")
    assert code == 3 and out.strip() == "tools ['tune-tree', '--x'] engine tools True"


@pytest.mark.parametrize("verb", ["decode", "demo"])
def test_verb_help_lists_components(echo_installed, capsys, verb):
    code, out, _ = run(capsys, verb, "--help")
    assert code == 0 and f"usage: engine {verb}" in out and "echo" in out and "== decoder" not in out


def test_a_library_warning_with_its_own_handler_is_printed_once():
    """huggingface_hub logs through its own stderr handler and propagates to the root logger."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "from engine.cli import main\n"
        "main(['version'])\n"
        "lib = logging.getLogger('lib')\n"
        "lib.addHandler(logging.StreamHandler(sys.stderr))\n"
        "lib.setLevel(logging.WARNING)\n"
        "lib.warning('retrying once')\n"
        "logging.getLogger('other').error('a real error')\n"
    )
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert err.count("retrying once") == 1 and "engine: a real error" in err
