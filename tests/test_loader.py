"""Isolated plugin loading: one broken plugin never takes the others down."""

from __future__ import annotations

import sys

import pytest
from conftest import good_plugin

from engine import Engine, hookimpl
from engine.errors import IncompatiblePluginError, PluginError, UnknownComponentError
from engine.progress import ProgressEvent


def test_good_entry_point_is_discovered(installed, only):
    installed({"good": ("good_plugin_mod", good_plugin("echo", "good_plugin_mod"))})
    only("good")
    engine = Engine()
    (info,) = engine.plugins
    assert info.ok and info.distribution == "fake-good" and info.version == "1.0"
    assert info.components == ["decoder:echo"]
    assert engine.decoder("echo", repeat=2).generate("ab").text == "abab"


BROKEN = {
    "import": "raise RuntimeError('cannot import me')\n",
    "hook": "from engine import hookimpl\nplugin_api_version = 1\n"
    "@hookimpl\ndef register_samplers(registry):\n    raise ValueError('boom in hook')\n",
    "validation": "from engine import hookimpl\nplugin_api_version = 1\n"
    "@hookimpl\ndef register_samplers(registry, extra):\n    pass\n",
    "unknown-hook": "from engine import hookimpl\nplugin_api_version = 1\n"
    "@hookimpl\ndef register_widgets(registry):\n    pass\n",
    "version": "from engine import hookimpl\nplugin_api_version = 99\n",
    "no-version": "from engine import hookimpl\n",
    "bad-factory": "from engine import hookimpl\nplugin_api_version = 1\n"
    "@hookimpl\ndef register_samplers(registry):\n    registry.add('x', 'not a target', description='d')\n",
}
EXPECTED = {
    "import": "cannot import me",
    "hook": "register_samplers of plugin 'broken-hook' raised ValueError: boom in hook",
    "validation": "extra",
    "unknown-hook": "unknown hooks: register_widgets",
    "version": "built for plugin API version 99; this engine supports version 1",
    "no-version": "declares no plugin_api_version",
    "bad-factory": "must be a callable or a 'module:attr' string",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_plugin_is_recorded_and_others_work(kind, installed, only):
    module = f"broken_{kind.replace('-', '_')}"
    installed({f"broken-{kind}": (module, BROKEN[kind]), "good": ("good_mod2", good_plugin("echo", "good_mod2"))})
    only(f"broken-{kind}", "good")
    engine = Engine()
    errors = engine.load_errors
    assert list(errors) == [f"broken-{kind}"]
    assert EXPECTED[kind] in errors[f"broken-{kind}"]
    assert engine.decoder("echo").generate("hi").text == "hi"


@pytest.mark.parametrize("via_env", [False, True])
def test_strict_mode_raises(via_env, installed, only, monkeypatch):
    installed({"broken-import": ("broken_strict", BROKEN["import"])})
    only("broken-import")
    if via_env:
        monkeypatch.setenv("ENGINE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="cannot import me"):
        Engine(strict=None if via_env else True)


def test_incompatible_version_in_strict_mode_names_versions(make_module):
    mod = make_module("old_plugin", "plugin_api_version = 0\n")
    with pytest.raises(IncompatiblePluginError, match="version 0; this engine supports version 1"):
        Engine(plugins=[mod], autoload=False, strict=True)


def test_duplicate_component_name_keeps_the_first(installed, only):
    installed({"a-first": ("dup_a", good_plugin("echo", "dup_a")), "b-second": ("dup_b", good_plugin("echo", "dup_b"))})
    only("a-first", "b-second")
    engine = Engine()
    assert engine.get("decoder", "echo").plugin == "a-first"
    assert engine.load_errors["b-second"] == (
        "decoder 'echo' is also registered by fake-a-first (plugin 'a-first'), which keeps it"
    )


TWO = """
from engine import hookimpl
from engine.interfaces import Decoder
plugin_api_version = 2
class D(Decoder):
    def generate(self, prompt, config=None):
        raise NotImplementedError
@hookimpl
def register_decoders(registry):
    registry.add("medusa", "@M@:D", description="an impostor")
    registry.add("@OWN@", "@M@:D", description="its own name")
"""


def test_a_bundled_plugin_wins_a_clash_and_only_the_clashing_name_is_dropped(installed, only, tmp_path):
    installed({"aaa": ("impostor", TWO.replace("@M@", "impostor").replace("@OWN@", "mine"))})
    installed({"zzz": ("bundled_like", TWO.replace("@M@", "bundled_like").replace("@OWN@", "medusa-extra"))})
    # the second one calls itself the bundled engine-medusa distribution
    info = next(tmp_path.glob("fake_zzz-1.0.dist-info"))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: engine-medusa\nVersion: 9.9\n")
    only("aaa", "zzz")
    engine = Engine()
    assert engine.get("decoder", "medusa").plugin == "zzz"  # loaded second, wins as bundled
    assert engine.get("decoder", "mine").plugin == "aaa"  # the impostor keeps its other component
    assert "decoder 'medusa' is also registered by engine-medusa (plugin 'zzz')" in engine.load_errors["aaa"]
    assert [p.components for p in engine.plugins] == [["decoder:mine"], ["decoder:medusa", "decoder:medusa-extra"]]


def test_a_clash_is_an_error_in_strict_mode(make_module):
    first = make_module("strict_a", good_plugin("echo", "strict_a"))
    second = make_module("strict_b", good_plugin("echo", "strict_b"))
    with pytest.raises(PluginError, match="decoder 'echo' is registered by both"):
        Engine(plugins=[first, second], autoload=False, strict=True)


def test_unknown_names_in_the_allow_and_block_lists_are_reported(installed, monkeypatch):
    installed({"real": ("real_mod", good_plugin("real", "real_mod"))})
    monkeypatch.setenv("ENGINE_PLUGINS", "real,nonexistent")
    monkeypatch.setenv("ENGINE_DISABLE_PLUGINS", "ghost")
    engine = Engine()
    assert "ENGINE_PLUGINS names 'nonexistent', which is not an installed plugin" in engine.load_errors["nonexistent"]
    assert "ENGINE_DISABLE_PLUGINS names 'ghost'" in engine.load_errors["ghost"]
    assert engine.get("decoder", "real").plugin == "real"
    with pytest.raises(PluginError, match="nonexistent"):
        Engine(strict=True)


def test_names_are_unique_across_kinds(make_module):
    first = make_module("kinds_a", good_plugin("shared", "kinds_a"))
    second = make_module(
        "kinds_b",
        """
        from engine import hookimpl
        plugin_api_version = 1
        @hookimpl
        def register_samplers(registry):
            registry.add("shared", "kinds_b:x", description="same name, other kind")
        """,
    )
    engine = Engine(plugins=[first, second], autoload=False)
    assert "sampler 'shared' is also registered by plugin 'kinds_a'" in engine.load_errors["kinds_b"]


def test_observer_hook_may_take_no_arguments(make_module):
    mod = make_module(
        "bare_observer",
        """
        from engine import hookimpl
        plugin_api_version = 1
        CALLS = []
        @hookimpl
        def on_progress():
            CALLS.append(1)
        """,
    )
    Engine(plugins=[mod], autoload=False).emit(ProgressEvent("t", 1))
    assert mod.CALLS == [1]


def test_failed_registration_leaves_nothing_behind(make_module):
    mod = make_module(
        "half_plugin",
        """
        from engine import hookimpl
        plugin_api_version = 1
        @hookimpl
        def register_decoders(registry):
            registry.add("half", "x:y", description="registered before the failure")
        @hookimpl
        def register_sequencers(registry):
            raise RuntimeError("late failure")
        OBSERVED = []
        @hookimpl
        def on_progress(event):
            OBSERVED.append(event)  # recorded, not raised: the engine swallows observer errors by design
        """,
    )
    engine = Engine(plugins=[mod], autoload=False)
    assert engine.components() == []
    assert "late failure" in engine.load_errors["half_plugin"]
    engine.emit(ProgressEvent("task", 1))
    assert mod.OBSERVED == []  # a failed plugin does not observe events


def test_allow_and_block_lists_by_env(installed, monkeypatch):
    installed({n: (f"ab_{n}", good_plugin(n, f"ab_{n}")) for n in ("alpha", "beta", "gamma")})
    monkeypatch.setenv("ENGINE_PLUGINS", "alpha,beta")
    monkeypatch.setenv("ENGINE_DISABLE_PLUGINS", "beta")
    assert [p.name for p in Engine().plugins] == ["alpha"]
    assert [p.name for p in Engine(allow=["gamma"], block=[]).plugins] == ["gamma"]


def test_explicit_plugins_without_autoload(make_module, installed, only):
    installed({"auto": ("auto_mod", good_plugin("auto", "auto_mod"))})
    only("auto")
    mod = make_module("explicit_mod", good_plugin("explicit", "explicit_mod"))
    engine = Engine(plugins=[mod], autoload=False)
    assert [s.name for s in engine.components()] == ["explicit"]
    assert {s.name for s in Engine(plugins=[mod]).components()} == {"explicit", "auto"}


def test_two_engines_share_no_state(make_module):
    one = make_module("one_mod", good_plugin("one", "one_mod"))
    two = make_module("two_mod", good_plugin("two", "two_mod"))
    a = Engine(plugins=[one], autoload=False)
    b = Engine(plugins=[two], autoload=False)
    assert [s.name for s in a.components()] == ["one"]
    assert [s.name for s in b.components()] == ["two"]
    a.add_plugin(two)
    assert [s.name for s in b.components()] == ["two"]


def test_plugin_object_instance_is_accepted():
    class Plugin:
        plugin_api_version = 1
        plugin_name = "object-plugin"

        @hookimpl
        def register_decoders(self, registry):
            registry.add("obj", lambda: None, description="built by a lambda")

    engine = Engine(plugins=[Plugin()], autoload=False)
    assert engine.plugins[0].name == "object-plugin"
    with pytest.raises(PluginError, match="returned NoneType, not an engine.interfaces.Decoder"):
        engine.decoder("obj")


def test_factories_are_lazy(make_module):
    mod = make_module(
        "lazy_mod",
        """
        from engine import hookimpl
        plugin_api_version = 1
        @hookimpl
        def register_samplers(registry):
            registry.add("lazy", "lazy_impl_never_written:Factory", description="lazy")
        """,
    )
    engine = Engine(plugins=[mod], autoload=False)
    assert "lazy_impl_never_written" not in sys.modules
    with pytest.raises(PluginError, match="cannot load factory of sampler 'lazy'"):
        engine.sampler("lazy")


def test_unknown_component_suggests_close_matches(make_module):
    mod = make_module("suggest_mod", good_plugin("medusa", "suggest_mod"))
    engine = Engine(plugins=[mod], autoload=False)
    with pytest.raises(UnknownComponentError, match="did you mean medusa"):
        engine.decoder("medsa")


def test_progress_reaches_hooks_and_host_and_survives_bad_observers(make_module):
    seen: list[ProgressEvent] = []
    mod = make_module(
        "observer_mod",
        """
        from engine import hookimpl
        plugin_api_version = 1
        EVENTS = []
        @hookimpl
        def on_progress(event):
            EVENTS.append(event)
        """,
    )

    class Broken:
        plugin_api_version = 1

        @hookimpl
        def on_progress(self, event):
            raise RuntimeError("observer failure")

    engine = Engine(plugins=[mod, Broken()], autoload=False, on_progress=seen.append)
    for _ in engine.progress(range(3), desc="work", quiet=True):
        pass
    assert [e.current for e in seen] == [1, 2, 3, 3] and seen[-1].done and seen[0].total == 3
    assert [e.current for e in mod.EVENTS] == [1, 2, 3, 3]


def test_register_commands_rejects_reserved_verbs(make_module):
    mod = make_module(
        "cmd_mod",
        """
        from engine import hookimpl
        plugin_api_version = 1
        @hookimpl
        def register_commands(commands):
            commands.add("train", "cmd_mod:x")
        """,
    )
    engine = Engine(plugins=[mod], autoload=False)
    assert "command 'train' is reserved" in engine.load_errors["cmd_mod"]
