"""``import engine``, ``engine --help`` and ``engine plugins`` stay light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "onnxruntime")
SNIPPETS = {
    "import": "import engine",
    "help": "from engine.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "plugins": "from engine.cli import main\nmain(['plugins'])",
    "list": "from engine.cli import main\nmain(['list'])",
}


@pytest.mark.parametrize("what", sorted(SNIPPETS))
def test_no_heavy_imports(what):
    code = SNIPPETS[what] + f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "engine", "plugins", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "plugins" in json.loads(done.stdout)
