"""Optional dependencies: a missing one is one line naming the extra that brings it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engine.errors import EngineError

#: top-level module -> (distribution that provides the extra, extra)
EXTRAS = {
    "torch": (None, "torch"),
    "transformers": (None, "torch"),
    "accelerate": (None, "torch"),
    "gguf": (None, "torch"),
    "onnx": (None, "train"),
    "onnxscript": (None, "train"),
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
    owner, known_extra = EXTRAS.get(module, (None, extra))
    return f"pip install '{owner or distribution}[{known_extra}]'"


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
