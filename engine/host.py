"""The :class:`Engine`: isolated plugin loading and the registry a host talks to."""

from __future__ import annotations

import difflib
import functools
import logging
import os
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

import attrs
import pluggy

from engine import hookspecs
from engine.errors import IncompatiblePluginError, PluginError, UnknownComponentError
from engine.kinds import KINDS, KINDS_BY_NAME
from engine.progress import Emit, Progress, ProgressEvent
from engine.registry import VERBS, CommandRegistry, CommandSpec, ComponentSpec, KindRegistry

log = logging.getLogger("engine")

#: The plugin contract this engine implements; plugins declare ``plugin_api_version``.
PLUGIN_API_VERSION = 2
#: Plugin API versions this engine accepts (1: components bring their own CLI commands).
SUPPORTED_API_VERSIONS = (1, 2)
ENTRY_POINT_GROUP = "engine"
REGISTER_HOOKS = {name: kind.hook for name, kind in KINDS_BY_NAME.items()}
#: Distributions built from this repository: they win a name clash with any other plugin.
BUNDLED_DISTRIBUTIONS = frozenset({"engine-medusa", "engine-sedd", "engine-graphnovo"})
#: Top-level CLI verbs a plugin command may not take.
RESERVED_VERBS = frozenset({*VERBS, "plugins", "list", "doctor", "help", "version"})


@attrs.define
class PluginInfo:
    """One plugin as loaded (or not): what ``engine plugins`` shows."""

    name: str
    distribution: str | None = None
    version: str | None = None
    source: str = "explicit"
    components: list[str] = attrs.field(factory=list)
    commands: list[str] = attrs.field(factory=list)
    error: str | None = None
    #: names this plugin registered that another plugin holds (only those were dropped)
    clashes: list[str] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def problem(self) -> str | None:
        """The load error, else the clashes, as one line; None when all is well."""
        return self.error or ("; ".join(self.clashes) if self.clashes else None)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _env_list(env: Mapping[str, str], key: str) -> frozenset[str] | None:
    raw = env.get(key, "").strip()
    return frozenset(p.strip() for p in raw.split(",") if p.strip()) if raw else None


def _env_flag(env: Mapping[str, str], key: str) -> bool:
    return env.get(key, "").strip().lower() in {"1", "true", "yes", "on"}


def spec_of(component: Any) -> ComponentSpec:
    """The registration of a component built directly (not through an Engine): the spec of
    its kind whose factory or artifact loader lives in the component's module."""
    module = type(component).__module__
    for spec in _installed().components(getattr(component, "kind", None)):
        targets = (spec.factory, spec.artifact_loader)
        if any(isinstance(t, str) and t.partition(":")[0] == module for t in targets):
            return spec
    raise PluginError(f"{type(component).__name__} is not registered by any installed plugin")


@functools.cache
def _installed() -> Engine:
    return Engine()


def _plugin_name(plugin: Any) -> str:
    name = getattr(plugin, "plugin_name", None) or getattr(plugin, "__name__", None)
    return str(name or type(plugin).__name__)


class Engine:
    """Loads plugins one by one and keeps what they register.

    A plugin that fails (import, version, hook validation, a raising register hook,
    a name already taken) is recorded in :attr:`plugins` with its error and skipped,
    unless ``strict`` (or ``ENGINE_STRICT_PLUGINS=1``), which raises instead.
    ``ENGINE_PLUGINS=a,b`` loads only those entry points, ``ENGINE_DISABLE_PLUGINS=c``
    skips some; explicit ``allow``/``block`` arguments take precedence over the env.
    Instances share no state. After construction the registry is read-only, so one
    engine may be read from several threads.
    """

    def __init__(
        self,
        plugins: Iterable[Any] = (),
        *,
        autoload: bool = True,
        strict: bool | None = None,
        allow: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        on_progress: Emit | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.strict = _env_flag(env, "ENGINE_STRICT_PLUGINS") if strict is None else strict
        self._allow = frozenset(allow) if allow is not None else _env_list(env, "ENGINE_PLUGINS")
        self._block = frozenset(block) if block is not None else _env_list(env, "ENGINE_DISABLE_PLUGINS")
        self._on_progress = on_progress
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._components: dict[tuple[str, str], ComponentSpec] = {}
        self._commands: dict[str, CommandSpec] = {}
        self.plugins: list[PluginInfo] = []
        for plugin in plugins:
            self.add_plugin(plugin)
        if autoload:
            self._load_entry_points()

    # ------------------------------------------------------------------ loading

    def _load_entry_points(self) -> None:
        found = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        self._check_env_names({ep.name for ep in found})
        for ep in found:
            if self._allow is not None and ep.name not in self._allow:
                continue
            if self._block and ep.name in self._block:
                continue
            info = PluginInfo(ep.name, source=f"entry point {ep.value}")
            if ep.dist is not None:
                info.distribution, info.version = ep.dist.name, ep.dist.version
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(info, PluginError(f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}"))
                continue
            self._add(plugin, info)

    def _check_env_names(self, installed: set[str]) -> None:
        """A name in the allow or block list that no installed plugin has is a warning (an error if strict)."""
        for names, where in ((self._allow, "ENGINE_PLUGINS"), (self._block, "ENGINE_DISABLE_PLUGINS")):
            for name in sorted((names or frozenset()) - installed):
                known = ", ".join(sorted(installed)) or "none"
                error = PluginError(f"{where} names {name!r}, which is not an installed plugin (installed: {known})")
                self._fail(PluginInfo(name, source=where), error)

    def add_plugin(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register a plugin object (a module or any object with hook implementations)."""
        info = PluginInfo(name or _plugin_name(plugin))
        info.version = getattr(plugin, "__version__", None)
        return self._add(plugin, info)

    def _add(self, plugin: Any, info: PluginInfo) -> PluginInfo:
        try:
            self._check_version(plugin, info.name)
            if any(p.name == info.name and p.ok for p in self.plugins):
                raise PluginError(f"a plugin named {info.name!r} is already loaded")
            self._pm.register(plugin, name=info.name)
        except Exception as exc:
            return self._fail(info, exc)
        try:
            components, commands = self._collect(plugin, info)
            self._commit(components, commands, info)
        except Exception as exc:
            self._pm.unregister(plugin)
            return self._fail(info, exc)
        self.plugins.append(info)
        return info

    @staticmethod
    def _check_version(plugin: Any, name: str) -> None:
        version = getattr(plugin, "plugin_api_version", None)
        supported = ", ".join(map(str, SUPPORTED_API_VERSIONS))
        if version is None:
            raise IncompatiblePluginError(
                f"plugin {name!r} declares no plugin_api_version (this engine supports {supported})"
            )
        if version not in SUPPORTED_API_VERSIONS:
            raise IncompatiblePluginError(
                f"plugin {name!r} is built for plugin API version {version}; this engine supports version {supported}"
            )

    def _collect(self, plugin: Any, info: PluginInfo) -> tuple[list[ComponentSpec], list[CommandSpec]]:
        name = info.name
        unknown = [hc.name for hc in self._pm.get_hookcallers(plugin) or [] if not hc.has_spec()]
        if unknown:
            raise PluginError(f"plugin {name!r} implements unknown hooks: {', '.join(sorted(unknown))}")
        components: list[ComponentSpec] = []
        api_version = plugin.plugin_api_version
        for kind, hook in REGISTER_HOOKS.items():
            registry = KindRegistry(kind, name, api_version, info.distribution)
            self._call_own(plugin, hook, registry=registry)
            components.extend(registry.added)
        commands = CommandRegistry(name, RESERVED_VERBS)
        self._call_own(plugin, "register_commands", commands=commands)
        return components, commands.added

    def _call_own(self, plugin: Any, hook: str, **kwargs: Any) -> None:
        """Call only ``plugin``'s implementation, so one plugin cannot break another."""
        for impl in getattr(self._pm.hook, hook).get_hookimpls():
            if impl.plugin is plugin:
                try:
                    impl.function(**kwargs)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"{hook} of plugin {impl.plugin_name!r} raised {type(exc).__name__}: {exc}"
                    ) from exc

    def _commit(self, components: list[ComponentSpec], commands: list[CommandSpec], info: PluginInfo) -> None:
        """Add what the plugin registered. A clash drops only the clashing name: the bundled
        distributions win over others, else the plugin loaded first keeps it."""
        for spec in components:
            owner = next((s for s in self._components.values() if s.name == spec.name), None)
            if owner is None or self._outranks(spec.distribution, owner.distribution, f"{spec.kind} {spec.name!r}"):
                if owner is not None:
                    del self._components[owner.kind, owner.name]
                    self._record_clash(owner.plugin, f"{owner.kind} {owner.name!r}", spec.plugin, spec.distribution)
                self._components[spec.kind, spec.name] = spec
            else:
                self._record_clash(spec.plugin, f"{spec.kind} {spec.name!r}", owner.plugin, owner.distribution, info)
        for cmd in commands:
            owner_cmd = self._commands.get(cmd.verb)
            if owner_cmd is None:
                self._commands[cmd.verb] = cmd
            else:
                owner_dist = next((p.distribution for p in self.plugins if p.name == owner_cmd.plugin), None)
                self._record_clash(cmd.plugin, f"command {cmd.verb!r}", owner_cmd.plugin, owner_dist, info)
        info.components = [f"{s.kind}:{s.name}" for s in components if self._components.get((s.kind, s.name)) is s]
        info.commands = [c.verb for c in commands if self._commands.get(c.verb) is c]

    def _outranks(self, newcomer: str | None, holder: str | None, what: str) -> bool:
        if self.strict:
            raise PluginError(f"{what} is registered by both {newcomer or 'a plugin'} and {holder or 'a plugin'}")
        return newcomer in BUNDLED_DISTRIBUTIONS and holder not in BUNDLED_DISTRIBUTIONS

    def _record_clash(
        self, loser: str, what: str, winner: str, winner_dist: str | None, info: PluginInfo | None = None
    ) -> None:
        if self.strict:
            raise PluginError(f"{what} of plugin {loser!r} is already taken by plugin {winner!r}")
        target = info or next(p for p in self.plugins if p.name == loser)
        by = f"{winner_dist} (plugin {winner!r})" if winner_dist else f"plugin {winner!r}"
        message = f"{what} is also registered by {by}, which keeps it"
        target.clashes.append(message)
        if info is None:  # the loser loaded earlier: take the name off its list
            target.components = [c for c in target.components if c.split(":", 1)[1] != what.split("'")[1]]
        log.warning("plugin %s: %s", loser, message)

    def _fail(self, info: PluginInfo, exc: BaseException) -> PluginInfo:
        if self.strict:
            if isinstance(exc, PluginError):
                raise exc
            raise PluginError(f"plugin {info.name!r}: {type(exc).__name__}: {exc}") from exc
        info.error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
        log.warning("plugin %s skipped: %s", info.name, info.error)
        self.plugins.append(info)
        return info

    # ------------------------------------------------------------------ lookups

    @property
    def load_errors(self) -> dict[str, str]:
        """Plugins that were skipped, or lost a name clash, with the reason (one line)."""
        return {p.name: p.problem for p in self.plugins if p.problem is not None}

    def components(self, kind: str | None = None) -> list[ComponentSpec]:
        if kind is not None and kind not in KINDS:
            raise UnknownComponentError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
        return sorted((s for s in self._components.values() if kind in (None, s.kind)), key=lambda s: (s.kind, s.name))

    def get(self, kind: str | None, name: str) -> ComponentSpec:
        """The component ``name`` (of ``kind``, or of any kind when None)."""
        candidates = self.components(kind)
        for spec in candidates:
            if spec.name == name:
                return spec
        what = kind or "component"
        close = difflib.get_close_matches(name, [s.name for s in candidates], n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        known = ", ".join(s.name for s in candidates) or "none installed"
        raise UnknownComponentError(f"unknown {what} {name!r}{hint} (available: {known})")

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Build component ``name`` of ``kind`` with its factory's ``options``."""
        spec = self.get(kind, name)
        with spec.needs("torch"):
            return self.observe(spec.create(**options))

    def observe(self, component: Any) -> Any:
        """Route ``component``'s progress steps to this engine's observers; returns it."""
        component.__dict__["_engine_emit"] = self.emit
        return component

    def decoder(self, name: str, **options: Any) -> Any:
        return self.create("decoder", name, **options)

    def sampler(self, name: str, **options: Any) -> Any:
        return self.create("sampler", name, **options)

    def sequencer(self, name: str, **options: Any) -> Any:
        return self.create("sequencer", name, **options)

    @property
    def commands(self) -> dict[str, CommandSpec]:
        return dict(self._commands)

    def load_artifact(self, path: Any, provider: str = "auto", threads: int | None = None, **options: Any) -> Any:
        """Verify an exported artifact and return the component its plugin's loader builds.

        The loader is called as ``loader(artifact, provider=..., threads=..., **options)``;
        ``threads`` follows :func:`engine.runtime.resolve_threads`.
        """
        from engine.artifacts import load_artifact

        return load_artifact(path, provider=provider, engine=self, threads=threads, **options)

    # ------------------------------------------------------------------ progress

    def emit(self, event: ProgressEvent) -> None:
        """Send a progress event to ``on_progress`` hooks and the host's callback."""
        calls = [
            (impl.function, {"event": event} if "event" in impl.argnames else {})
            for impl in self._pm.hook.on_progress.get_hookimpls()
        ]
        for observer, kwargs in calls:
            self._notify(observer, **kwargs)
        if self._on_progress is not None:
            self._notify(self._on_progress, event)

    @staticmethod
    def _notify(observer: Any, *args: Any, **kwargs: Any) -> None:
        try:
            observer(*args, **kwargs)
        except Exception:  # an observer never stops the work it observes
            log.exception("progress observer %r failed", observer)

    def progress(
        self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", quiet: bool = False
    ) -> Progress:
        """A :class:`Progress` bar whose updates reach this engine's observers."""
        return Progress(iterable, total=total, desc=desc, quiet=quiet, emit=self.emit)
