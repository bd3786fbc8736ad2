"""Training checkpoints: written atomically, read without running pickled code.

``torch.load(..., weights_only=False)`` runs whatever a crafted checkpoint holds; these
helpers store only tensors and plain data (numpy values are converted when saved) and
load with ``weights_only=True``, so anything else is refused in one line.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.io.files import TEMP_SUFFIX, file_mode, remove_stale_temporaries, temp_prefix


class CheckpointError(EngineError):
    """A checkpoint that cannot be read safely."""


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and tensors."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` (tensors and plain data) to ``path`` atomically."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f"{temp_prefix(path)}{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(plain(state), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: one holding other objects is refused."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused, it holds objects other than tensors and plain data ({first[:160]})"
        ) from exc
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
