"""Fixtures: fake plugin modules and fake installed distributions with entry points."""

from __future__ import annotations

import importlib
import sys
import textwrap
import types
from pathlib import Path

import pytest

GOOD_PLUGIN = '''
from engine import hookimpl
from engine.interfaces import Decoder, GenerationResult, GenerationStats

plugin_api_version = 1


class Echo(Decoder):
    """Repeats the prompt's characters: enough to exercise the interfaces."""

    def __init__(self, repeat=1):
        self.repeat = repeat

    def generate(self, prompt, config=None):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be str, got {type(prompt).__name__}")
        text = (prompt * self.repeat)[: (config.max_new_tokens if config else 128)]
        return GenerationResult(tokens=[ord(c) for c in text], text=text, stats=GenerationStats(1, len(text), 0.0))


@hookimpl
def register_decoders(registry):
    registry.add("@NAME@", "@MODULE@:Echo", description="echo decoder",
                 commands={"decode": "@MODULE@:decode", "bench": "@MODULE@:bench", "demo": "@MODULE@:decode"})


def decode(argv, ctx):
    print(" ".join(argv) or "demo")
    return 0


def bench(argv, ctx):
    if argv == ["--fail"]:
        from engine.errors import EngineError
        raise EngineError("the benchmark broke\\nsecond line hidden")
    if argv == ["--bad"]:
        from engine.errors import UsageError
        raise UsageError("unknown option --bad")
    return {"tokens_per_s": 12.5, "argv": argv}
'''


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write ``source`` as an importable module ``name`` and return it imported."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str, *, load: bool = True) -> types.ModuleType | None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        sys.modules.pop(name, None)
        return importlib.import_module(name) if load else None

    yield make


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install fake distributions: ``installed({"ep_name": ("module", source)})``.

    Each entry point is put in its own ``*.dist-info`` on ``sys.path``, as pip would.
    """
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(plugins: dict[str, tuple[str, str | None]]) -> list[str]:
        for ep_name, (module, source) in plugins.items():
            if source is not None:
                (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
                sys.modules.pop(module, None)
            info = tmp_path / f"fake_{ep_name.replace('-', '_')}-1.0.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-{ep_name}\nVersion: 1.0\n")
            (info / "entry_points.txt").write_text(f"[engine]\n{ep_name} = {module}\n")
        importlib.invalidate_caches()
        return list(plugins)

    yield install


def good_plugin(name: str, module: str) -> str:
    return GOOD_PLUGIN.replace("@NAME@", name).replace("@MODULE@", module)


@pytest.fixture
def only(monkeypatch):
    """Restrict entry-point loading to the given names (ignore real installed plugins)."""

    def restrict(*names: str) -> None:
        monkeypatch.setenv("ENGINE_PLUGINS", ",".join(names))
        monkeypatch.delenv("ENGINE_DISABLE_PLUGINS", raising=False)
        monkeypatch.delenv("ENGINE_STRICT_PLUGINS", raising=False)

    return restrict


@pytest.fixture
def spectra_file():
    """``spectra_file("formats", "x.mzML")``: a shared spectra file; the test skips when absent."""
    from engine.datasets import shared_data

    def get(*parts: str) -> Path:
        path = shared_data("spectra", *parts)
        if not path.exists():
            pytest.skip(f"{path} is absent")
        return path

    return get


@pytest.fixture
def massivekb(spectra_file):
    """500 labelled MassIVE-KB spectra (MGF with a PEPREC side file)."""
    return spectra_file("massivekb", "massivekb_selected_500.mgf")
