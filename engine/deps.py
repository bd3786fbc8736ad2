"""Optional dependencies: a missing one is one line naming the extra that brings it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engine.errors import EngineError

#: optional top-level modules -> the engine-core extra that brings it (None: the plugin's extra for the job)
EXTRAS = {
    "torch": None,
    "transformers": None,
    "accelerate": None,
    "gguf": None,
    "onnx": None,
    "onnxscript": None,
    "onnxruntime": "runtime",
    "pyteomics": "spectra",
    "lxml": "spectra",
    "psims": "spectra",
}


def available(module: str) -> bool:
    """Is ``module`` importable? (without importing it; a blocked or broken finder counts as no)"""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_optional(exc: ModuleNotFoundError) -> str | None:
    """The optional top-level module ``exc`` says is missing, or None for any other module."""
    module = (exc.name or "").split(".")[0]
    return module if module in EXTRAS else None


class MissingDependencyError(EngineError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def install_hint(module: str, distribution: str, extra: str) -> str:
    """``pip install 'DIST[EXTRA]'`` for a missing top-level ``module``."""
    core_extra = EXTRAS.get(module)
    return f"pip install 'engine-core[{core_extra}]'" if core_extra else f"pip install '{distribution}[{extra}]'"


@contextlib.contextmanager
def missing_as_hint(distribution: str, extra: str) -> Iterator[None]:
    """Turn a ModuleNotFoundError of an optional dependency into one actionable line."""
    try:
        yield
    except ModuleNotFoundError as exc:
        module = missing_optional(exc)
        if module is None:
            raise
        hint = install_hint(module, distribution, extra)
        raise MissingDependencyError(f"{distribution} needs {module} for this: {hint}") from exc
