"""The engine artifact: a directory of ONNX models and run-time files with a manifest.

``manifest.json`` records the schema version, the plugin and component that made
the artifact, each file's sha256 and size, each model's input and output names, the
opset, the versions that produced it, and the plugin's run-time ``config``. Artifacts
are written to a temporary directory and renamed into place, so a reader never sees
half of one; loading verifies every file before any model is opened.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from engine.errors import ArtifactError
from engine.io.files import TEMP_SUFFIX, check_writable, dir_mode, remove_stale_temporaries, temp_prefix

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_RECORDED_VERSIONS = (
    "engine-core",
    "torch",
    "transformers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "tokenizers",
)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _producer_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _RECORDED_VERSIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _safe_name(name: str) -> str:
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or name == MANIFEST:
        raise ArtifactError(f"invalid artifact file name {name!r}")
    return name


@attrs.frozen
class Artifact:
    """A verified artifact directory."""

    path: Path
    manifest: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def kind(self) -> str:
        return self.manifest["component"]["kind"]

    @property
    def component(self) -> str:
        return self.manifest["component"]["name"]

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise ArtifactError(f"artifact {self.path} has no file {name!r}")
        return self.path / name

    def model(self, name: str) -> dict[str, Any]:
        try:
            return self.manifest["models"][name]
        except KeyError:
            raise ArtifactError(f"artifact {self.path} has no model {name!r}") from None

    def session(self, name: str, provider: str = "auto", **kwargs: Any) -> Any:
        """An onnxruntime session for model ``name`` (see :func:`engine.runtime.create_session`)."""
        from engine.runtime import create_session

        return create_session(self.file(self.model(name)["file"]), provider, **kwargs)


def write_artifact(
    dest: str | os.PathLike[str],
    *,
    plugin: str,
    kind: str,
    component: str,
    files: Mapping[str, str | os.PathLike[str] | bytes],
    models: Mapping[str, Mapping[str, Any]],
    opset: int | None = None,
    config: Mapping[str, Any] | None = None,
    plugin_version: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an artifact at ``dest`` atomically and return its path.

    ``files`` maps names inside the artifact to source paths or bytes; ``models`` maps
    a model name to ``{"file": ..., "inputs": [...], "outputs": [...]}``.
    """
    dest = Path(dest)
    check_destination(dest, overwrite)
    for name, model in models.items():
        if model.get("file") not in files:
            raise ArtifactError(f"model {name!r} names file {model.get('file')!r}, which is not among the files")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest), suffix=TEMP_SUFFIX, dir=dest.parent))
    os.chmod(tmp, dir_mode())  # mkdtemp makes 0700: give what mkdir would
    try:
        entries = {name: _copy_in(tmp, _safe_name(name), src) for name, src in files.items()}
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "plugin": {"name": plugin, "version": plugin_version},
            "component": {"kind": kind, "name": component},
            "files": entries,
            "models": {name: dict(model) for name, model in models.items()},
            "opset": opset,
            "producer": _producer_versions(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "config": dict(config or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Around ``torch.onnx.export``: its progress lines go to stderr (stdout may be carrying --json
    output), and its warnings and log records about operators the model does not use are dropped;
    errors still raise. Pass ``verbose=False`` to the exporter too."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def write_component_artifact(component: Any, dest: str | os.PathLike[str], **kwargs: Any) -> Path:
    """:func:`write_artifact` with the plugin, kind, name and version of ``component``'s registration."""
    spec = component.spec
    return write_artifact(
        dest, plugin=spec.plugin, kind=spec.kind, component=spec.name, plugin_version=spec.plugin_version, **kwargs
    )


def write_derived_artifact(
    art: Artifact,
    dest: str | os.PathLike[str],
    *,
    files: Mapping[str, str | os.PathLike[str] | bytes],
    config: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """:func:`write_artifact` for an artifact made from ``art`` (a quantized copy, say): the same
    plugin, component, models and opset, with ``files`` and ``config`` of its own."""
    manifest = art.manifest
    return write_artifact(
        dest,
        plugin=manifest["plugin"]["name"],
        kind=art.kind,
        component=art.component,
        plugin_version=manifest["plugin"].get("version"),
        files=files,
        models=manifest["models"],
        opset=manifest.get("opset"),
        config=config,
        overwrite=overwrite,
    )


def check_destination(dest: Path, overwrite: bool) -> None:
    """Refuse a destination that exists, unless it is an artifact and ``overwrite`` is set:
    export never deletes what it did not write. A destination nothing can be written to is
    refused too, before the export's work rather than after it."""
    if os.path.lexists(dest):
        if not (dest.is_dir() and (dest / MANIFEST).is_file()):
            raise ArtifactError(f"{dest} exists and is not an engine artifact; choose another destination")
        if not overwrite:
            raise ArtifactError(f"artifact {dest} already exists (use --force, or overwrite=True, to replace it)")
    check_writable(dest, folder=True)


def _copy_in(root: Path, name: str, src: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(src, bytes):
        target.write_bytes(src)
    else:
        shutil.copyfile(src, target)
    return {"sha256": sha256_file(target), "size": target.stat().st_size}


def _replace_dir(tmp: Path, dest: Path) -> None:
    if not dest.exists():
        os.replace(tmp, dest)
        return
    # a folder cannot be swapped in one rename: move the old one aside under a temporary
    # name (removed at once, or by the next export if this one is killed in between)
    old = dest.with_name(f"{temp_prefix(dest)}old{TEMP_SUFFIX}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def read_artifact(path: str | os.PathLike[str]) -> Artifact:
    """Read and verify an artifact: schema, every file's presence, size and sha256."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.exists():
        raise ArtifactError(f"{root} does not exist: give an artifact folder (engine export NAME -o DIR writes one)")
    if not manifest_path.is_file():
        raise ArtifactError(f"{root} is not an engine artifact: no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{manifest_path} is unreadable: {exc}") from exc
    _check_manifest(root, manifest)
    for name, entry in manifest["files"].items():
        _verify_file(root, _safe_name(name), entry)
    return Artifact(root, manifest)


def _check_manifest(root: Path, manifest: Any) -> None:
    """Every field the engine reads, with its type: a malformed manifest is one ArtifactError line."""
    where = f"{root}/{MANIFEST}"
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{where} is not a JSON object")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(f"{where} has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise ArtifactError(
            f"{root} uses artifact schema {version}, newer than this engine reads "
            f"({SCHEMA_VERSION}); upgrade engine-core"
        )
    for key in ("plugin", "component", "files", "models"):
        if not isinstance(manifest.get(key), dict):
            raise ArtifactError(f"{where} lacks the {key!r} section")
    for key in ("kind", "name"):
        if not isinstance(manifest["component"].get(key), str):
            raise ArtifactError(f"{where}: component.{key} must be a string")
    if not isinstance(manifest.get("config", {}), dict):
        raise ArtifactError(f"{where}: config must be an object")
    for name, entry in manifest["files"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and _is_size(entry.get("size"))):
            raise ArtifactError(f"{where}: files[{name!r}] must be {{'sha256': str, 'size': int}}")
    for name, model in manifest["models"].items():
        if not (isinstance(model, dict) and model.get("file") in manifest["files"]):
            raise ArtifactError(f"{where}: models[{name!r}] must name one of the artifact's files")


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _verify_file(root: Path, name: str, entry: Mapping[str, Any]) -> None:
    target = root / name
    if not target.is_file():
        raise ArtifactError(f"artifact {root} is missing file {name}")
    size = target.stat().st_size
    if size != entry.get("size"):
        raise ArtifactError(
            f"artifact file {target} has {size} bytes, the manifest says {entry.get('size')} (truncated or replaced)"
        )
    if sha256_file(target) != entry.get("sha256"):
        raise ArtifactError(f"artifact file {target} fails its sha256 check (modified after export)")


def load_artifact(
    path: str | os.PathLike[str], provider: str = "auto", engine: Any = None, threads: int | None = None, **options: Any
) -> Any:
    """Verify the artifact and return the component its plugin's loader builds.

    The loader is called as ``loader(artifact, provider=..., threads=..., **options)``.
    """
    from engine.registry import accepts, resolve
    from engine.runtime import resolve_threads

    artifact = read_artifact(path)
    if engine is None:
        from engine.host import Engine

        engine = Engine()
    spec = engine.get(artifact.kind, artifact.component)
    if spec.artifact_loader is None:
        raise ArtifactError(f"{artifact.kind} {artifact.component!r} (plugin {spec.plugin}) cannot load artifacts")
    loader = resolve(spec.artifact_loader, f"artifact loader of {spec.name!r}")
    if accepts(loader, "threads"):
        options["threads"] = resolve_threads(threads)
    with spec.needs("torch"):
        return engine.observe(spec.stamp(loader(artifact, provider=provider, **options), "artifact loader"))
