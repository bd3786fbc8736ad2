"""onnxruntime sessions with honest provider selection.

``auto`` uses CUDA only when a session really runs on it; ``cuda`` and ``tensorrt``
fail with :class:`ProviderError` instead of silently running on the CPU. This module
imports onnxruntime on first use, never torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from engine.errors import ProviderError, UsageError

log = logging.getLogger("engine.runtime")

PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")
#: The one thread setting of every component, torch and onnxruntime alike.
THREADS_ENV = "ENGINE_THREADS"
_CHAINS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_REQUIRED = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def installed_runtimes() -> list[str]:
    """onnxruntime distributions installed (they share one package folder)."""
    found = []
    for dist in _ORT_DISTRIBUTIONS:
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def runtime_conflict() -> str | None:
    """A warning when several onnxruntime builds are installed together, else None."""
    found = installed_runtimes()
    if len(found) < 2:
        return None
    return (
        f"several onnxruntime builds are installed together ({', '.join(found)}); they overwrite "
        "each other's files, so the one installed last wins: uninstall all but one"
    )


@cache
def _onnxruntime() -> Any:
    conflict = runtime_conflict()
    if conflict:
        warnings.warn(conflict, RuntimeWarning, stacklevel=3)
    try:
        import onnxruntime
    except ImportError as exc:
        raise ProviderError("onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from exc
    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers (not proof that they work)."""
    return list(_onnxruntime().get_available_providers())


def resolve_threads(threads: int | None = None) -> int | None:
    """The thread count to use: ``threads`` when given, else ``$ENGINE_THREADS``, else None
    (the library's own default: one thread per core)."""
    source = "threads"
    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if not raw:
            return None
        source, threads = THREADS_ENV, raw
    try:
        value = int(threads)
    except (TypeError, ValueError):
        raise UsageError(f"{source} must be a positive integer, got {threads!r}") from None
    if value < 1 or isinstance(threads, bool):
        raise UsageError(f"{source} must be a positive integer, got {threads!r}")
    return value


def use_torch_threads(threads: int | None = None) -> int | None:
    """Apply the thread policy to torch (intra-op threads); returns the count set, or None."""
    value = resolve_threads(threads)
    if value is not None:
        import torch

        torch.set_num_threads(value)
    return value


def _check_provider(provider: str) -> str:
    provider = (provider or "auto").lower()
    if provider not in PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    return provider


def create_session(
    model: str | Path | bytes,
    provider: str = "auto",
    *,
    threads: int | None = None,
    options: Any = None,
) -> Any:
    """An ``InferenceSession`` for ``model`` on ``provider``; check ``active_providers``.

    ``auto`` tries CUDA when the build offers it and keeps whatever really loaded;
    ``cuda``/``tensorrt`` raise :class:`ProviderError` unless the session runs on it.
    """
    provider = _check_provider(provider)
    ort = _onnxruntime()
    available = set(ort.get_available_providers())
    if provider in _REQUIRED and _REQUIRED[provider] not in available:
        raise ProviderError(
            f"provider {provider!r} was requested but this onnxruntime build offers only "
            f"{', '.join(sorted(available))}; install onnxruntime-gpu with a working CUDA, or use --provider cpu"
        )
    chain = (
        _CHAINS["cuda"]
        if provider == "auto" and "CUDAExecutionProvider" in available
        else _CHAINS.get(provider, _CHAINS["cpu"])
    )
    session = _new_session(ort, model, chain, resolve_threads(threads), options, quiet=provider == "auto")
    used = session.get_providers()
    if provider in _REQUIRED and _REQUIRED[provider] not in used:
        raise ProviderError(
            f"provider {provider!r} was requested but onnxruntime could not start it "
            f"(session runs on {', '.join(used)}); check the CUDA/cuDNN libraries, or use --provider cpu"
        )
    log.info("onnxruntime session on %s", ", ".join(used))
    return session


def _new_session(ort: Any, model: Any, chain: list[str], threads: int | None, options: Any, quiet: bool) -> Any:
    opts = options or ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if quiet:  # auto probing CUDA on a machine without it logs errors that mean nothing here
        opts.log_severity_level = 3
    source = os.fspath(model) if isinstance(model, (str, Path)) else model
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=chain)
    except Exception as exc:
        if chain[0] != "CPUExecutionProvider" and quiet:
            log.info("CUDA session failed (%s); using the CPU", exc)
            return ort.InferenceSession(source, sess_options=opts, providers=_CHAINS["cpu"])
        raise ProviderError(f"onnxruntime could not create a session on {chain[0]}: {exc}") from exc


def active_providers(session: Any) -> list[str]:
    """Providers the session actually runs on, best first."""
    return list(session.get_providers())


def device_of(session: Any) -> str:
    """``"cuda"`` when the session runs on a GPU provider, else ``"cpu"``."""
    return "cpu" if active_providers(session)[0] == "CPUExecutionProvider" else "cuda"
