"""engine.io.prompts: JSONL prompt files, as the CLI and plugins' benches and trainers read them."""

from __future__ import annotations

import json

import pytest

from engine.errors import UsageError
from engine.io.prompts import read_prompt_rows, read_prompts


def test_rows_split_at_newlines_only_keep_their_fields_and_stop_at_the_limit(tmp_path):
    """ShareGPT text holds raw U+2028 inside JSON strings; lines past the limit are not parsed."""
    lines = [json.dumps({"prompt": "one\u2028two", "category": "chat"}, ensure_ascii=False), '"three"', "{broken"]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_prompt_rows(tmp_path / "p.jsonl", 2)
    assert rows == [{"prompt": "one\u2028two", "category": "chat"}, {"prompt": "three"}]
    with pytest.raises(UsageError, match=r"p\.jsonl:3: not valid JSON"):
        read_prompt_rows(tmp_path / "p.jsonl")
    with pytest.raises(UsageError, match=r"p\.jsonl:3: not valid JSON"):  # the CLI reads the whole file
        read_prompts(file=str(tmp_path / "p.jsonl"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\n  \n", r"p\.jsonl holds no prompts$"),
        ('{"prompt": "  "}\n', r"p\.jsonl:1: the prompt is empty"),
        ('{"text": "x"}\n', r"p\.jsonl:1: expected a string or an object with a 'prompt' string"),
        ("3\n", r"p\.jsonl:1: expected a string"),
    ],
)
def test_bad_prompt_files_are_one_line_usage_errors(tmp_path, text, message):
    (tmp_path / "p.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        read_prompt_rows(tmp_path / "p.jsonl")


def test_a_missing_file_names_itself(tmp_path):
    with pytest.raises(UsageError, match=r"cannot read prompts from .*absent\.jsonl"):
        read_prompt_rows(tmp_path / "absent.jsonl")
