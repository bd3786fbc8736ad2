"""Where the project's shared datasets live (corpora, prompts, spectra, proteomes).

Plugins read their default training, benchmark and evaluation data from here, so a
checkout next to ``shared/data`` works as is and any other layout sets one variable.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "ENGINE_DATA_DIR"


def shared_data(*parts: str) -> Path:
    """``$ENGINE_DATA_DIR/parts``, else the first ``shared/data`` found beside or above the
    checkout holding ``engine`` or the working directory (``../shared/data`` from the
    repository root). Nothing is checked for existence: the reader names a missing file."""
    if env := os.environ.get(ENV_VAR):
        return Path(env).joinpath(*parts)
    checkout = Path(__file__).resolve().parents[1]
    for root in (checkout, *checkout.parents, Path.cwd(), *Path.cwd().parents):
        if (root / "shared" / "data").is_dir():
            return root.joinpath("shared", "data", *parts)
    return checkout.parent.joinpath("shared", "data", *parts)
