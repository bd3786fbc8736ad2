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


EXAMPLE_PLUGIN = DOCS / "example-plugin"


def _python_blocks(doc: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / doc).read_text(), re.M | re.S)


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md") if _python_blocks(p.name)))
def test_python_examples_run(doc, tmp_path, monkeypatch):
    """Every ```python block of a guide runs, in order, in one namespace; test_* functions it defines run too."""
    if doc == "embedding.md":
        pytest.importorskip("engine_sedd")
        pytest.importorskip("engine_graphnovo")
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{doc}"}
    for number, block in enumerate(_python_blocks(doc), 1):
        exec(compile(block, f"{doc} example {number}", "exec"), namespace)  # noqa: S102 - the docs' own code
    for name, fn in list(namespace.items()):
        if name.startswith("test_") and callable(fn):
            fn(tmp_path / name)


def test_cli_reference_names_every_command():
    from engine.cli import OTHER_COMMANDS
    from engine.registry import VERBS

    text = (DOCS / "cli.md").read_text()
    for command in (*VERBS, *OTHER_COMMANDS):
        assert f"`engine {command}" in text, command


def test_list_json_fields_are_documented():
    from engine.registry import ComponentSpec

    documented = re.search(r"`--json`: ([a-z_, ]+)\)", (DOCS / "cli.md").read_text()).group(1).split(", ")
    spec = ComponentSpec(kind="sampler", name="x", factory="m:f", plugin="p")
    assert documented == list(spec.to_dict())


def test_reserved_verbs_are_documented():
    from engine.host import RESERVED_VERBS

    section = (DOCS / "plugin-authoring.md").read_text().split("### `register_commands(commands)`")[1]
    named = set(re.findall(r"`([a-z]+)`", section.split("###")[0]))
    assert RESERVED_VERBS <= named


def test_common_flags_table_matches_the_parser():
    from engine.flags import COMMON_FLAGS

    text = (DOCS / "cli.md").read_text()
    for names, _ in COMMON_FLAGS.values():
        assert names[-1] in text, names
