"""Sample output for samplers: JSONL (``.jsonl``/``.json``) or plain text, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.io.files import atomic_write_text, jsonl


def write_samples(path: str | Path, texts: Sequence[str]) -> Path:
    """One JSON object per sample for ``.jsonl``/``.json``; else the texts, each followed by a blank line."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        body = jsonl({"index": i, "text": t} for i, t in enumerate(texts))
    else:
        body = "".join(f"{text}\n\n" for text in texts)
    atomic_write_text(path, body)
    return path
