"""Settings tuned on the machine at hand, cached per device in the user's cache directory.

A setting that depends on speed (a Medusa tree's size, a thread count, a beam width) is
measured where it runs: what one CPU model does fastest is wrong on another. Such settings
are stored outside the artifact (which stays read-only and keeps passing its sha256 check),
keyed by what they were tuned for (the artifact's manifest digest) and by the device::

    ~/.cache/engine/tuned/<plugin>/<subject digest>/<device id>.json

``$ENGINE_CACHE`` replaces ``~/.cache/engine`` (``$XDG_CACHE_HOME/engine`` when that is set).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from engine.io.files import atomic_write_text

CACHE_ENV = "ENGINE_CACHE"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "engine"


def digest_of(path: str | os.PathLike[str]) -> str:
    """The digest that names a subject: of an artifact's manifest (which holds every file's
    sha256), or of a file; first 16 hex digits of sha256."""
    path = Path(path)
    target = path / "manifest.json" if path.is_dir() else path
    return hashlib.sha256(target.read_bytes()).hexdigest()[:16]


def cpu_model(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU's model name and its vector instructions (``AMD EPYC avx512vnni``): two machines
    sold under one name may not run the same tree fastest."""
    from engine.doctor import _cpu, vector_tag

    info = _cpu(cpuinfo)
    tag = vector_tag(info["features"])
    model = info["model"] or "unknown-cpu"
    return f"{model} {tag}" if tag else model


def device_id(where: str, threads: int | None = None, device: str | None = None) -> str:
    """A file-name-safe id of what ran the measurement: the back end ('torch', 'onnxruntime'),
    the device (a GPU's name, else the CPU model) and, on a CPU, the thread count."""
    device = device or cpu_model()
    parts = [where, device] + ([f"{threads}threads"] if threads and not device.startswith("cuda") else [])
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join(parts)).strip("_")


def tuned_path(plugin: str, subject: str, device: str) -> Path:
    return cache_root() / "tuned" / plugin / subject / f"{device}.json"


def load_tuned(plugin: str, subject: str, device: str) -> tuple[dict[str, Any], Path] | None:
    """The stored setting and its file, or None (nothing stored, or an unreadable file)."""
    path = tuned_path(plugin, subject, device)
    try:
        return json.loads(path.read_text()), path
    except (OSError, ValueError):
        return None


def store_tuned(plugin: str, subject: str, device: str, payload: dict[str, Any]) -> Path:
    path = tuned_path(plugin, subject, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    return path
