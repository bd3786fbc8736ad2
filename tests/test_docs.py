"""Every hook is documented with its exact signature; docs link to what exists."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from engine import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"
HOOKS = [name for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "engine_spec")]


def test_hooks_are_found():
    assert set(HOOKS) >= {"register_decoders", "register_samplers", "register_sequencers"}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_with_exact_signature(hook):
    signature = f"{hook}{inspect.signature(getattr(hookspecs, hook))}"
    assert f"### `{signature}`" in (DOCS / "plugin-authoring.md").read_text(), f"document {signature}"


def test_documented_hooks_exist():
    documented = re.findall(r"^### `(\w+)\(", (DOCS / "plugin-authoring.md").read_text(), re.M)
    assert sorted(documented) == sorted(HOOKS)


def test_index_links_resolve():
    for link in re.findall(r"\]\(([^)#]+)\)", (DOCS / "index.md").read_text()):
        assert (DOCS / link).exists(), link
