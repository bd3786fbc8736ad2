"""Prompt input for decoders: command-line arguments, a JSONL file, or standard input.

Every prompt is checked before any model loads: it must be non-empty, valid UTF-8 text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import UsageError


def read_prompts(args: Sequence[str] = (), file: str | None = None) -> list[str]:
    """Prompts from ``args``; else from the JSONL ``file`` (``-``: stdin); else stdin's whole text."""
    if args and file:
        raise UsageError("give prompts as arguments or with --prompts, not both")
    if args:
        prompts = list(args)
    elif file:
        prompts = _jsonl(_read_text(file), file)
    elif not sys.stdin.isatty():
        prompts = [_read_text("-")]
    else:
        raise UsageError("give a prompt: as an argument, with --prompts FILE.jsonl, or on standard input")
    return [check_prompt(p, f"prompt {i + 1}") for i, p in enumerate(prompts)]


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


def _jsonl(text: str, file: str) -> list[str]:
    prompts = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON text may hold U+2028
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{file}:{number}: not JSON ({exc.msg})") from None
        prompt = record.get("prompt") if isinstance(record, dict) else record
        if not isinstance(prompt, str):
            raise UsageError(f"{file}:{number}: expected a string or an object with a 'prompt' string")
        prompts.append(prompt)
    if not prompts:
        raise UsageError(f"{file} holds no prompts")
    return prompts
