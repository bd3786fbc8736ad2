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
that ``engine.load_artifact`` runs with the same results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.host import Engine
from engine.interfaces import (
    BASES,
    Decoder,
    GenerationConfig,
    GenerationResult,
    PeptideHit,
    Sampler,
    SampleResult,
    SamplingConfig,
    Sequencer,
    Spectrum,
)

HEAVY_MODULES = ("torch", "transformers")
DECODER_PROBE = ("Hello", GenerationConfig(max_new_tokens=8))
SAMPLER_PROBE = SamplingConfig(num_samples=2, length=16, steps=4, seed=0)


class ConformanceError(AssertionError):
    """A plugin does not meet the engine's plugin contract."""


def _fail(what: str, message: str) -> ConformanceError:
    return ConformanceError(f"conformance: {what}: {message}")


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
            raise _fail(f"{spec.kind} {spec.name!r}", "has no description")
    return engine


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


def _probe(component: Any, spectra: list[Spectrum] | None) -> Any:
    """Run the kind's main job on the kit's fixed probe input."""
    if isinstance(component, Decoder):
        return component.generate(*DECODER_PROBE)
    if isinstance(component, Sampler):
        return component.sample(SAMPLER_PROBE)
    return list(component.sequence(spectra or []))


def _check_result(what: str, component: Any, result: Any) -> None:
    if isinstance(component, Decoder):
        ok = isinstance(result, GenerationResult) and 0 < len(result.tokens) <= DECODER_PROBE[1].max_new_tokens
    elif isinstance(component, Sampler):
        ok = isinstance(result, SampleResult) and len(result.texts) == SAMPLER_PROBE.num_samples
        ok = ok and all(len(t) == SAMPLER_PROBE.length for t in result.tokens)
    else:
        ok = all(isinstance(hit, PeptideHit) for hit in result)
    if not ok:
        raise _fail(what, f"probe returned {result!r:.300}, not a valid {component.kind} result")


def _check_bad_input(what: str, component: Any) -> None:
    bad_calls = {
        Decoder: lambda: component.generate(12345, DECODER_PROBE[1]),
        Sampler: lambda: component.sample({"steps": 0}),
        Sequencer: lambda: list(component.sequence(["not a spectrum"])),
    }
    call = next(fn for base, fn in bad_calls.items() if isinstance(component, base))
    try:
        call()
    except (TypeError, ValueError) as exc:
        message = str(exc).strip()
        if not message or "\n" in message:
            raise _fail(what, f"bad input raised {type(exc).__name__} without a one-line message: {message!r}") from exc
        return
    except Exception as exc:
        raise _fail(what, f"bad input raised {type(exc).__name__} ({exc}); expected TypeError or ValueError") from exc
    raise _fail(what, "accepted bad input silently; expected TypeError or ValueError")


def _same(component: Any, a: Any, b: Any) -> bool:
    if isinstance(component, Decoder):
        return a.tokens == b.tokens
    if isinstance(component, Sampler):
        exact = "exact-parity" in getattr(component, "capabilities", ())
        return a.tokens == b.tokens if exact else len(a.tokens) == len(b.tokens)
    return [h.peptide for h in a] == [h.peptide for h in b]


def check_onnx_parity(engine: Engine, spec: Any, component: Any, result: Any, workdir: Path, spectra: Any) -> None:
    """Export, reload through ``load_artifact`` on the CPU, and compare the probe."""
    what = f"{spec.kind} {spec.name!r}"
    path = Path(component.export_onnx(workdir / f"{spec.name}-artifact"))
    runtime = engine.load_artifact(path, provider="cpu")
    if not isinstance(runtime, BASES[spec.kind]):
        raise _fail(what, f"artifact loader returned {type(runtime).__name__}, not a {BASES[spec.kind].__name__}")
    ort_result = _probe(runtime, spectra)
    _check_result(f"{what} (onnxruntime)", runtime, ort_result)
    if not _same(component, result, ort_result):
        raise _fail(what, f"onnxruntime result differs from torch: {ort_result!r:.300} vs {result!r:.300}")


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
    tests, say); ``spectra`` feeds sequencers. Returns the engine used.
    """
    engine = check_registration(plugin)
    if lazy_import and isinstance(getattr(plugin, "__name__", None), str) and hasattr(plugin, "__file__"):
        check_lazy_import(plugin.__name__)
    spectra = list(spectra or [])
    workdir = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="engine-conformance-"))
    for spec in engine.components():
        what = f"{spec.kind} {spec.name!r}"
        component = spec.create(**dict((options or {}).get(spec.name, {})))
        result = _probe(component, spectra)
        _check_result(what, component, result)
        _check_bad_input(what, component)
        if onnx and "onnx-export" in spec.capabilities:
            if spec.artifact_loader is None:
                raise _fail(what, "declares onnx-export but registers no artifact_loader")
            check_onnx_parity(engine, spec, component, result, workdir, spectra)
    return engine


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
