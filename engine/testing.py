"""Conformance kit for plugin authors.

Call :func:`check_plugin` from your plugin's own pytest suite::

    import engine.testing
    import my_plugin.plugin

    def test_conformance(tmp_path):
        engine.testing.check_plugin(my_plugin.plugin, tmp_path=tmp_path,
                                    options={"mine": {"model": "tiny"}})

Each check raises ``AssertionError`` with a message that names the component and
what it got wrong. The checks: the plugin registers cleanly in strict mode;
importing and registering it loads no torch or transformers; every component builds
into its kind's interface and returns the right result type; bad input fails with a
clear one-line error; and components declaring ``onnx-export`` export an artifact
that ``engine.load_artifact`` runs with the same results, whose ONNX files declare an
IR version every supported onnxruntime reads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.host import Engine
from engine.interfaces import Spectrum
from engine.kinds import KINDS_BY_NAME, probe_spectra
from engine.registry import ComponentSpec

HEAVY_MODULES = ("torch", "transformers")
#: The newest ONNX IR version that onnxruntime 1.18, the oldest the core supports, reads. onnx
#: stamps its own newest on hand-built graphs (14 with onnx 1.23), which onnxruntime 1.30 refuses.
MAX_IR_VERSION = 10


class ConformanceError(AssertionError):
    """A plugin does not meet the engine's plugin contract."""


def _fail(what: str, message: str) -> ConformanceError:
    return ConformanceError(f"conformance: {what}: {message}")


def _what(spec: ComponentSpec) -> str:
    return f"{spec.kind} {spec.name!r} of plugin {spec.plugin!r}"


def engine_with(*plugins: Any) -> Engine:
    """A strict engine with only ``plugins`` loaded (no entry points, no env lists)."""
    return Engine(plugins=plugins, autoload=False, strict=True, env={})


def check_registration(plugin: Any) -> Engine:
    """The plugin loads in strict mode and registers at least one described component."""
    name = getattr(plugin, "__name__", type(plugin).__name__)
    try:
        engine = engine_with(plugin)
    except Exception as exc:
        raise _fail(f"plugin {name}", f"does not register cleanly: {exc}") from exc
    specs = engine.components()
    if not specs:
        raise _fail(f"plugin {name}", "registers no component")
    for spec in specs:
        if not spec.description:
            raise _fail(_what(spec), "has no description")
        _check_options(spec)
    return engine


def _check_options(spec: ComponentSpec) -> None:
    """Declared options classes resolve and their flags build (no clash with the core's)."""
    from engine.flags import verb_parser

    try:
        for verb in spec.verbs:
            verb_parser(spec, verb)
    except Exception as exc:
        raise _fail(_what(spec), f"its options do not make a command line: {exc}") from exc


def check_lazy_import(module_name: str) -> None:
    """Importing and registering ``module_name`` in a fresh interpreter loads no torch."""
    code = (
        "import json, sys, importlib, engine\n"
        f"mod = importlib.import_module({module_name!r})\n"
        "engine.Engine(plugins=[mod], autoload=False, strict=True, env={})\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    done = _python(code, timeout=120)
    if done.returncode != 0:
        raise _fail(f"plugin {module_name}", f"import failed in a fresh interpreter: {done.stderr.strip()[-500:]}")
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    if loaded:
        raise _fail(f"plugin {module_name}", f"imports {', '.join(loaded)} at registration; register lazy factories")


def _python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that sees this process's ``sys.path``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def check_probe(spec: ComponentSpec, component: Any, probe: Any = None) -> Any:
    """Run the kind's main job on its probe input (the bundled one unless given); return the result."""
    kind = KINDS_BY_NAME[spec.kind]
    if not isinstance(component, kind.base):
        raise _fail(_what(spec), f"built a {type(component).__name__}, not an engine.interfaces.{kind.base.__name__}")
    probe = kind.probe() if probe is None else probe
    result = _run_probe(spec, kind, kind.call, component, probe, "the probe")
    if kind.call_with_mapping is not None and spec.api_version >= 2:  # one config rule for every kind, since API 2
        _run_probe(spec, kind, kind.call_with_mapping, component, probe, "the probe with its config as a mapping")
    return result


def _run_probe(spec: ComponentSpec, kind: Any, call: Any, component: Any, probe: Any, what: str) -> Any:
    try:
        result = call(component, probe)
    except Exception as exc:
        raise _fail(_what(spec), f"{what} raised {type(exc).__name__}: {exc}") from exc
    problem = kind.problem(component, probe, result)
    if problem:
        raise _fail(_what(spec), problem if what == "the probe" else f"{what}: {problem}")
    return result


def check_bad_input(spec: ComponentSpec, component: Any) -> None:
    """Bad input fails with TypeError or ValueError and a one-line message."""
    what = _what(spec)
    try:
        KINDS_BY_NAME[spec.kind].bad_input(component)
    except (TypeError, ValueError) as exc:
        message = str(exc).strip()
        if not message or "\n" in message:
            raise _fail(what, f"bad input raised {type(exc).__name__} without a one-line message: {message!r}") from exc
        return
    except Exception as exc:
        raise _fail(what, f"bad input raised {type(exc).__name__} ({exc}); expected TypeError or ValueError") from exc
    raise _fail(what, "accepted bad input silently; expected TypeError or ValueError")


def check_onnx_parity(
    engine: Engine, spec: ComponentSpec, component: Any, result: Any, workdir: Path, probe: Any = None
) -> None:
    """Export, reload through ``Engine.load_artifact(threads=1)`` on the CPU, and compare the probe."""
    kind = KINDS_BY_NAME[spec.kind]
    what = _what(spec)
    if spec.artifact_loader is None:
        raise _fail(what, "declares onnx-export but registers no artifact_loader")
    path = Path(component.export_onnx(workdir / f"{spec.name}-artifact"))
    check_ir_versions(what, path)
    runtime = engine.load_artifact(path, provider="cpu", threads=1)
    ort_result = check_probe(spec, runtime, probe)
    if not kind.same(component, result, ort_result):
        raise _fail(what, f"onnxruntime result differs from torch: {ort_result!r:.300} vs {result!r:.300}")


def check_ir_versions(what: str, artifact: Path) -> None:
    """Every ONNX file of ``artifact`` declares an IR version <= :data:`MAX_IR_VERSION`."""
    import onnx

    for file in sorted(Path(artifact).glob("*.onnx")):
        version = onnx.load(file, load_external_data=False).ir_version
        if version > MAX_IR_VERSION:
            raise _fail(
                what,
                f"{file.name} declares ONNX IR version {version}; onnxruntime 1.18 reads up to {MAX_IR_VERSION}, "
                "1.30 up to 13 (set ir_version to the lowest its opsets need)",
            )


def check_plugin(
    plugin: Any,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    onnx: bool = True,
    tmp_path: Path | None = None,
    spectra: Iterable[Spectrum] | None = None,
    lazy_import: bool = True,
) -> Engine:
    """Run every conformance check on ``plugin`` (a module or plugin object).

    ``options`` maps component names to factory keyword arguments (a tiny model for
    tests, say). Every component is fed its kind's bundled probe input; ``spectra``
    feeds sequencers more spectra besides. Returns the engine used.
    """
    engine = check_registration(plugin)
    if lazy_import and isinstance(getattr(plugin, "__name__", None), str) and hasattr(plugin, "__file__"):
        check_lazy_import(plugin.__name__)
    workdir = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="engine-conformance-"))
    for spec in engine.components():
        check_component(engine, spec, (options or {}).get(spec.name, {}), onnx=onnx, workdir=workdir, spectra=spectra)
    return engine


def check_component(
    engine: Engine,
    spec: ComponentSpec,
    options: Mapping[str, Any] | None = None,
    *,
    onnx: bool = True,
    workdir: Path,
    spectra: Iterable[Spectrum] | None = None,
) -> None:
    """The probe, bad input and (for ``onnx-export``) parity checks of one component."""
    try:
        component = spec.create(**dict(options or {}))
    except Exception as exc:
        raise _fail(_what(spec), f"cannot be built: {type(exc).__name__}: {exc}") from exc
    probe = [*probe_spectra(), *(spectra or [])] if spec.kind == "sequencer" else None
    result = check_probe(spec, component, probe)
    check_bad_input(spec, component)
    if onnx and "onnx-export" in spec.capabilities:
        check_onnx_parity(engine, spec, component, result, workdir, probe)


def check_installed(engine: Engine, names: Iterable[str] | None = None, onnx: bool = True) -> dict[str, str | None]:
    """``engine plugins --check``: the kit over installed plugins, ``{component: error or None}``."""
    wanted = set(names or ())
    results: dict[str, str | None] = {
        p.name: p.error for p in engine.plugins if p.error and p.name in (wanted or {p.name})
    }
    with tempfile.TemporaryDirectory(prefix="engine-check-") as tmp:
        for spec in engine.components():
            if wanted and spec.plugin not in wanted:
                continue
            try:
                check_component(engine, spec, onnx=onnx, workdir=Path(tmp))
                results[f"{spec.kind}:{spec.name}"] = None
            except Exception as exc:  # noqa: BLE001 - report every component, then fail
                results[f"{spec.kind}:{spec.name}"] = str(exc).splitlines()[0]
    return results


_BLOCKER = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked: the runtime path must not import it")
sys.meta_path.insert(0, _Blocked())
"""


def run_without(code: str, blocked: Iterable[str] = HEAVY_MODULES, timeout: float = 300) -> str:
    """Run ``code`` in a fresh interpreter where ``blocked`` modules cannot be imported.

    Returns its stdout; raises :class:`ConformanceError` with its stderr on failure.
    Use it to prove that an onnxruntime path needs no torch.
    """
    script = _BLOCKER.format(blocked=tuple(blocked)) + code
    done = _python(script, timeout=timeout)
    if done.returncode != 0:
        raise ConformanceError(f"conformance: code failed with {', '.join(blocked)} blocked:\n{done.stderr[-2000:]}")
    return done.stdout


#: A torchrun worker killed by a signal (negative exit code in the launcher's failure report).
_KILLED_BY_SIGNAL = re.compile(r"exitcode\s*:\s*-\d+")
#: The lines of a failed run that say why: the workers' own errors, not the launcher's traceback.
_WHY = re.compile(r"terminate called|what\(\)|Fatal Python error|Error\b|exitcode")


def _why(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if _WHY.search(line)]
    return "\n".join(lines[:20]) + "\n...\n" + stderr[-800:]


def run_torchrun(
    args: Iterable[str], nproc: int = 2, timeout: float = 300, retries: int = 1
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node NPROC ARGS`` (one
    OpenMP thread per worker) and return it once it succeeds.

    ``--standalone`` lets the rendezvous pick a free port, so test runs sharing a host do not
    collide on a fixed one. A gloo worker can die by SIGABRT where the code is right (once in
    this project's CI, in a two-process training test whose script then passed 54 runs here, as did
    70 runs of a bare gloo init/barrier/teardown; gloo's TCP transport aborts on some peer-closed
    races), so a run with a worker killed by a signal is run again up to ``retries`` times, each
    such failure reported as a warning with its cause.
    Any other failure, or a signal on every try, raises ``AssertionError`` with the workers'
    error lines, which the launcher's own report would push out of a plain stderr tail.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(retries + 1):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if done.returncode == 0:
            return done
        if attempt == retries or not _KILLED_BY_SIGNAL.search(done.stderr):
            break
        warnings.warn(f"torchrun: a worker was killed by a signal; running again:\n{_why(done.stderr)}", stacklevel=2)
    raise AssertionError(f"torchrun failed (exit {done.returncode}):\n{_why(done.stderr)}")
