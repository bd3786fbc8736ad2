"""Sample output for samplers: JSONL (``.jsonl``/``.json``) or plain text, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.io.files import atomic_write_text, jsonl


def as_plain_text(texts: Sequence[str]) -> str:
    """The texts as ``engine sample`` prints them: several each under a ``--- sample I`` line (samples hold
    blank lines of their own, so a blank line cannot tell where one ends)."""
    if len(texts) == 1:
        return f"{texts[0]}\n"
    return "".join(f"--- sample {i}\n{text}\n" for i, text in enumerate(texts))


def write_samples(path: str | Path, texts: Sequence[str]) -> Path:
    """One JSON object per sample for ``.jsonl``/``.json``; else the texts as :func:`as_plain_text` lays them out."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        body = jsonl({"index": i, "text": t} for i, t in enumerate(texts))
    else:
        body = as_plain_text(texts)
    atomic_write_text(path, body)
    return path
