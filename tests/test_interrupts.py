"""SIGINT and SIGKILL in the middle of writing: earlier outputs stay intact, SIGINT leaves no
temporary, and what a SIGKILL leaves is recognisable and removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from test_verbs import TOYS

SLOW = """
import os, signal, sys, time
import engine.artifacts, engine.io.files
# a process started in the background inherits SIGINT ignored: take Ctrl-C as a terminal would
signal.signal(signal.SIGINT, signal.default_int_handler)
READY = {ready!r}
def pause():  # the write has begun: let the test interrupt it
    open(READY, "w").close()
    time.sleep(60)
real_copy, real_fsync = engine.artifacts._copy_in, os.fsync
def slow_copy(*args):
    out = real_copy(*args)
    pause()
    return out
def slow_fsync(fd):
    real_fsync(fd)
    pause()
engine.artifacts._copy_in = slow_copy
engine.io.files.os.fsync = slow_fsync
from engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def toy_env(installed, tmp_path):
    installed({"toys": ("toys", TOYS)})
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "ENGINE_PLUGINS": "toys"}


def interrupted(env, tmp_path, sig, *argv) -> int:
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    code = SLOW.format(ready=str(ready))
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.wait(timeout=60)


def leftovers(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def run(env, *argv) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *argv], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_export_keeps_the_previous_artifact(toy_env, tmp_path, sig):
    dest = tmp_path / "art"
    assert run(toy_env, "export", "echo", "-o", str(dest)).returncode == 0
    before = (dest / "manifest.json").read_text()
    code = interrupted(toy_env, tmp_path, sig, "export", "echo", "-o", str(dest), "--force", "--repeat", "3")
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    assert (dest / "manifest.json").read_text() == before
    left = leftovers(tmp_path, "art")
    assert left == [] if sig == signal.SIGINT else left and all(n.endswith(".tmp") for n in left)
    assert run(toy_env, "export", "echo", "-o", str(dest), "--force").returncode == 0
    assert leftovers(tmp_path, "art") == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_sequence_run_keeps_the_previous_results(toy_env, tmp_path, sig):
    mgf = tmp_path / "in.mgf"
    mgf.write_text("BEGIN IONS\nPEPMASS=500.3\nCHARGE=2+\n100.0 10\n200.0 5\nEND IONS\n")
    out = tmp_path / "out.mztab"
    assert run(toy_env, "sequence", "constant", str(mgf), "-o", str(out)).returncode == 0
    before = out.read_text()
    code = interrupted(toy_env, tmp_path, sig, "sequence", "constant", str(mgf), "-o", str(out), "--peptide", "AAAK")
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    assert out.read_text() == before
    left = leftovers(tmp_path, "out.mztab")
    assert left == [] if sig == signal.SIGINT else left and all(n.endswith(".tmp") for n in left)
    assert run(toy_env, "sequence", "constant", str(mgf), "-o", str(out)).returncode == 0
    assert leftovers(tmp_path, "out.mztab") == []
