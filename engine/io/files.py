"""Atomic output files and the checks that keep outputs from overwriting inputs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from engine.errors import UsageError

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    # os.umask can only be read by setting it: restore it at once
    old = os.umask(0)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a plain ``open()`` gives a new file under the current umask."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder under the current umask."""
    return 0o777 & ~_umask()


def temp_prefix(path: Path) -> str:
    """Temporaries for ``path`` are ``.NAME.<random>.tmp`` beside it: recognisable, so that
    the next write removes what a killed run left."""
    return f".{path.name}."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporaries an interrupted write to ``path`` left behind; returns them."""
    stale = [p for p in path.parent.glob(f"{temp_prefix(path)}*{TEMP_SUFFIX}") if p.name != path.name]
    for p in stale:
        if p.is_dir():
            import shutil

            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def check_writable(path, *, folder: bool = False) -> None:
    """UsageError (one line) when nothing can be written at ``path`` (a file, or a folder with
    ``folder``): checked before the work starts, not after it, by creating and removing a
    temporary in the nearest folder that exists (permissions alone miss read-only mounts)."""
    path = Path(path)
    if path.is_dir() and not folder:
        raise UsageError(f"cannot write {path}: it is a folder, give a file name")
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"cannot write {path}: it is a file, give a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: {parent} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=parent)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: no new file can be made in {parent} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder: readers see the old
    file or the new one, never half of one; the temp file goes on any exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes 0600: give what open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    """``atomic_write_bytes`` of UTF-8 text, newlines written as given."""
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonl(rows) -> str:
    """JSON lines: one object per row, UTF-8 kept as is."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def check_outputs(inputs, outputs) -> None:
    """UsageError (one line) when an output would overwrite an input or another output."""
    seen: list[Path] = [Path(p) for p in inputs]
    n_inputs = len(seen)
    for out in map(Path, outputs):
        for i, other in enumerate(seen):
            if _same(out, other):
                what = "input" if i < n_inputs else "output"
                raise UsageError(f"output {out} is the same file as the {what} {other}")
        seen.append(out)


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False
