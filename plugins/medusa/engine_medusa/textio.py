"""Tokenizer and prompt formatting shared by the torch and onnxruntime paths (no torch here).

Both paths tokenize with the `tokenizers` library from the same tokenizer.json, and wrap
a prompt in the chat template as `prefix + prompt + suffix` (rendered once with a
placeholder), so the two paths always see identical token ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import UsageError

_PLACEHOLDER = "\u0000PROMPT\u0000"


class PromptError(UsageError, ValueError):
    """An unusable prompt (a usage error on the CLI, a ValueError for the Python API)."""


def check_prompt(prompt) -> None:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise PromptError("empty prompt: give some text to continue")


class TextCodec:
    """tokenizers.Tokenizer + chat wrapping + EOS ids."""

    def __init__(
        self,
        tokenizer_json: str,
        *,
        chat_prefix: str | None = None,
        chat_suffix: str | None = None,
        eos_ids=(),
        add_special: bool = True,
    ):
        from tokenizers import Tokenizer

        self.tokenizer_json = tokenizer_json
        self.tok = Tokenizer.from_str(tokenizer_json)
        self.chat_prefix, self.chat_suffix = chat_prefix, chat_suffix
        self.eos_ids = tuple(int(e) for e in eos_ids)
        self.add_special = add_special

    @property
    def chat(self) -> bool:
        return self.chat_prefix is not None

    def encode_prompt(self, prompt: str, chat: bool | None = None) -> list[int]:
        check_prompt(prompt)
        use_chat = self.chat if chat is None else (chat and self.chat)
        if use_chat:
            text = self.chat_prefix + prompt + self.chat_suffix
            return self.tok.encode(text, add_special_tokens=False).ids
        return self.tok.encode(prompt, add_special_tokens=self.add_special).ids

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def to_config(self) -> dict:
        return {
            "chat_prefix": self.chat_prefix,
            "chat_suffix": self.chat_suffix,
            "eos_ids": list(self.eos_ids),
            "add_special": self.add_special,
        }

    def save(self, folder: Path) -> dict[str, Path]:
        """Write tokenizer.json + text.json into folder; returns {name: path}."""
        folder = Path(folder)
        (folder / "tokenizer.json").write_text(self.tokenizer_json, encoding="utf-8")
        (folder / "text.json").write_text(json.dumps(self.to_config()), encoding="utf-8")
        return {"tokenizer.json": folder / "tokenizer.json", "text.json": folder / "text.json"}

    @classmethod
    def load(cls, tokenizer_path: Path, text_path: Path) -> TextCodec:
        cfg = json.loads(Path(text_path).read_text(encoding="utf-8"))
        return cls(Path(tokenizer_path).read_text(encoding="utf-8"), **cfg)

    @classmethod
    def from_hf(cls, hf_tokenizer, eos_ids) -> TextCodec:
        """Build from a transformers fast tokenizer (torch side only)."""
        prefix = suffix = None
        if getattr(hf_tokenizer, "chat_template", None):
            text = hf_tokenizer.apply_chat_template(
                [{"role": "user", "content": _PLACEHOLDER}], add_generation_prompt=True, tokenize=False
            )
            if text.count(_PLACEHOLDER) == 1:
                prefix, suffix = text.split(_PLACEHOLDER)
        return cls(hf_tokenizer.backend_tokenizer.to_str(), chat_prefix=prefix, chat_suffix=suffix, eos_ids=eos_ids)
