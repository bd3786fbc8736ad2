"""Tokenisers: character level (the default model) and byte-level BPE trained locally
with the `tokenizers` library. Both serialise to a JSON-able dict stored in the model
config. No torch here: the onnxruntime path uses this module."""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import UsageError


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars) or not chars:
            raise ValueError("character vocabulary must be non-empty and without repeats")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_corpus(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        bad = sorted({c for c in text if c not in self._index})
        if bad:
            raise ValueError(f"characters not in the model's vocabulary: {''.join(bad)!r}")
        return [self._index[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] if 0 <= i < len(self.chars) else "\u2591" for i in ids)

    def num_chars(self, ids) -> int:
        return len(ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


class BPETokenizer:
    """Byte-level BPE (any text encodes); wraps a `tokenizers.Tokenizer`."""

    kind = "bpe"

    def __init__(self, tokenizer_json: str):
        from tokenizers import Tokenizer

        self.json = tokenizer_json
        self.tok = Tokenizer.from_str(tokenizer_json)

    @classmethod
    def train(cls, files, vocab_size: int = 512) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
        tok.train([str(f) for f in files], trainer)
        return cls(tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids) -> str:
        return self.tok.decode([i for i in ids if 0 <= i < self.vocab_size])

    def num_chars(self, ids) -> int:
        return len(self.decode(ids))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json": self.json}


def tokenizer_from_dict(d: dict):
    if d["kind"] == "char":
        return CharTokenizer(d["chars"])
    if d["kind"] == "bpe":
        return BPETokenizer(d["json"])
    raise ValueError(f"unknown tokenizer kind {d['kind']!r}")


def read_corpus(path) -> str:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"corpus not found: {path} (give one with --data FILE)")
    return path.read_text(encoding="utf-8")


def split_corpus(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """First `train_fraction` of the characters for training, the rest for validation."""
    cut = int(len(text) * train_fraction)
    return text[:cut], text[cut:]


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
