"""Prompt input for decoders: command-line arguments, a JSONL file, or standard input.

Every prompt is checked before any model loads: it must be non-empty, valid UTF-8 text.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import UsageError


def read_prompts(args: Sequence[str] = (), file: str | None = None) -> list[str]:
    """Prompts from ``args``; else from the JSONL ``file`` (``-``: stdin); else stdin's whole text."""
    return [record["prompt"] for record in read_prompt_records(args, file)]


def read_prompt_records(args: Sequence[str] = (), file: str | None = None) -> list[dict]:
    """As :func:`read_prompts`, each prompt a record: a file's lines keep their other fields (an id)."""
    if args and file:
        raise UsageError("give prompts as arguments or with --prompts, not both")
    if file:
        return read_prompt_rows(file)
    if args:
        prompts = list(args)
    elif not sys.stdin.isatty():
        prompts = [_read_text("-")]
    else:
        raise UsageError("give a prompt: as an argument, with --prompts FILE.jsonl, or on standard input")
    return [{"prompt": check_prompt(p, f"prompt {i + 1}")} for i, p in enumerate(prompts)]


def check_prompt(prompt: object, what: str = "prompt") -> str:
    """``prompt`` if it is non-empty, valid text; else a one-line UsageError."""
    if not isinstance(prompt, str):
        raise UsageError(f"{what} must be text, got {type(prompt).__name__}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes on the command line arrive as lone surrogates
        raise UsageError(f"{what} is not valid UTF-8 text") from None
    if not prompt.strip():
        raise UsageError(f"{what} is empty: give some text to continue")
    return prompt


def _read_text(file: str) -> str:
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read prompts from {file}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "standard input" if file == "-" else file
        raise UsageError(f"{where} is not valid UTF-8 (byte {exc.start})") from None


def read_prompt_rows(file: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """The records of a JSONL prompt file (``-``: stdin), each a dict with a checked ``prompt`` string.

    A line may be a bare JSON string (it becomes ``{"prompt": line}``) or an object whose other fields
    (a category, a reference answer) are kept. Reading stops after ``limit`` records: what lies beyond
    is not parsed, so a large file broken further on still serves its head.
    """
    file = os.fspath(file)
    rows = []
    for number, line in enumerate(_read_text(file).split("\n"), 1):  # not splitlines(): JSON may hold U+2028
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{file}:{number}: not valid JSON ({exc.msg})") from None
        row = record if isinstance(record, dict) else {"prompt": record}
        if not isinstance(row.get("prompt"), str):
            raise UsageError(f"{file}:{number}: expected a string or an object with a 'prompt' string")
        check_prompt(row["prompt"], f"{file}:{number}: the prompt")
        rows.append(row)
        if limit and len(rows) == limit:
            break
    if not rows:
        raise UsageError(f"{file} holds no prompts")
    return rows
