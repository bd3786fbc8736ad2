"""Optional dependencies: a missing one is one line naming the extra that brings it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engine.errors import EngineError

#: top-level module -> (the core's extra that brings it, or None: the plugin's extra for the job)
EXTRAS = {
    "torch": (None, None),
    "transformers": (None, None),
    "accelerate": (None, None),
    "gguf": (None, None),
    "onnx": (None, None),
    "onnxscript": (None, None),
    "onnxruntime": ("engine-core", "runtime"),
    "pyteomics": ("engine-core", "spectra"),
    "lxml": ("engine-core", "spectra"),
    "psims": ("engine-core", "spectra"),
}


def available(module: str) -> bool:
    """Is ``module`` importable? (without importing it; a blocked or broken finder counts as no)"""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class MissingDependencyError(EngineError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def install_hint(module: str, distribution: str, extra: str) -> str:
    """``pip install 'DIST[EXTRA]'`` for a missing top-level ``module``."""
    owner, core_extra = EXTRAS.get(module, (None, extra))
    # the core's modules come with a core extra; the others with the plugin's extra for the job
    return f"pip install '{owner}[{core_extra}]'" if owner else f"pip install '{distribution}[{extra}]'"


@contextlib.contextmanager
def missing_as_hint(distribution: str, extra: str) -> Iterator[None]:
    """Turn a ModuleNotFoundError of an optional dependency into one actionable line."""
    try:
        yield
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        if module not in EXTRAS:
            raise
        hint = install_hint(module, distribution, extra)
        raise MissingDependencyError(f"{distribution} needs {module} for this: {hint}") from exc
