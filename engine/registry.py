"""What plugins register: components per kind, and extra CLI verbs.

Nothing here imports a plugin's implementation: factories and command targets may
be ``"module:attr"`` strings, resolved on first use.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from engine.errors import PluginError, UsageError
from engine.interfaces import ConfigError
from engine.kinds import BASES, KINDS, MAIN_VERB

#: Verbs of ``engine <verb> <component>``: the kinds' main verbs, then the shared ones.
VERBS = (*MAIN_VERB.values(), "train", "eval", "export", "bench", "demo")
#: Verbs whose work the core does for every component (plugin API 2 and later).
CORE_VERBS = frozenset({*MAIN_VERB.values(), "export"})
#: Verbs a component of plugin API 2 implements itself, as ``fn(ctx)``.
PLUGIN_VERBS = ("train", "eval", "bench", "demo")

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
Target = Callable[..., Any] | str


def resolve(target: Target, what: str) -> Callable[..., Any]:
    """Return the callable behind ``target`` ("module:attr" strings are imported now)."""
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        from engine.deps import missing_optional

        if isinstance(exc, ModuleNotFoundError) and missing_optional(exc):
            raise  # an optional dependency: the caller names the extra that brings it
        raise PluginError(f"cannot load {what} {target!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise PluginError(f"{what} {target!r} is not callable")
    return obj


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Does ``fn`` take keyword ``name``? (callables of plugin API 1 may not)"""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def keyword_parameters(fn: Callable[..., Any]) -> list[str]:
    """The names ``fn`` takes by keyword (a class: its ``__init__``'s, without ``self``)."""
    import inspect

    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): none named
        return []
    return [p.name for p in params if p.kind in kinds]


def _check_target(target: Any, what: str) -> Target:
    if callable(target):
        return target
    if isinstance(target, str) and re.fullmatch(r"[\w.]+:[\w.]+", target):
        return target
    raise PluginError(f"{what} must be a callable or a 'module:attr' string, got {target!r}")


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(f"{what} {name!r} must match {_NAME.pattern}")
    return name


@attrs.frozen
class ComponentSpec:
    """A registered component: enough to list it, create it and run its commands."""

    kind: str
    name: str
    factory: Target = attrs.field(repr=False)
    plugin: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    default_model: str | None = None
    commands: Mapping[str, Target] = attrs.field(factory=dict, repr=False)
    artifact_loader: Target | None = attrs.field(default=None, repr=False)
    options: Target | None = attrs.field(default=None, repr=False)
    verb_options: Mapping[str, Target] = attrs.field(factory=dict, repr=False)
    default_artifact: str | None = None
    api_version: int = 1
    distribution: str | None = None

    def create(self, **options: Any) -> Any:
        """Build the component; it must be an instance of its kind's interface. An option its factory
        does not take is a one-line usage error naming those it does, not the factory's TypeError."""
        unknown = [key for key in options if not self.takes(key)]
        if unknown:
            raise ConfigError(f"{self.name} has no option {unknown[0]!r} (it takes: {', '.join(self.parameters())})")
        return self.stamp(self._factory()(**options), "factory")

    def _factory(self) -> Callable[..., Any]:
        return resolve(self.factory, f"factory of {self.kind} {self.name!r}")

    def parameters(self) -> list[str]:
        """What the factory takes by keyword: its named parameters, then, where it takes ``**options``,
        its options class's fields."""
        factory, cls = self._factory(), self.options_class()
        named = keyword_parameters(factory)
        fields = [a.name for a in attrs.fields(cls)] if cls is not None and attrs.has(cls) else []
        return named + [f for f in fields if f not in named and accepts(factory, f)]

    def takes(self, key: str) -> bool:
        """Does the factory take ``key``? One with ``**options`` passes them to its options class, so
        there the class decides (a factory of plugin API 1 with no options class takes anything)."""
        return key in self.parameters() or (self.options_class() is None and accepts(self._factory(), key))

    def stamp(self, component: Any, what: str) -> Any:
        """Check ``component`` implements the kind and record this spec as its identity."""
        base = BASES[self.kind]
        if not isinstance(component, base):
            raise PluginError(
                f"{what} of {self.kind} {self.name!r} returned {type(component).__name__}, "
                f"not an engine.interfaces.{base.__name__}"
            )
        component.__dict__["_engine_spec"] = self
        return component

    @property
    def plugin_version(self) -> str | None:
        """The version of the distribution that registered the component, when installed."""
        from importlib import metadata

        try:
            return metadata.version(self.distribution) if self.distribution else None
        except metadata.PackageNotFoundError:
            return None

    @property
    def verbs(self) -> list[str]:
        """Every verb ``engine VERB NAME`` accepts for this component."""
        core = {MAIN_VERB[self.kind], "demo"}
        if "onnx-export" in self.capabilities:
            core.add("export")
        return [verb for verb in VERBS if verb in core or verb in self.commands]

    def command(self, verb: str) -> Callable[..., Any]:
        if verb not in self.commands:
            raise UsageError(f"{self.name} does not support '{verb}' (it supports: {', '.join(self.verbs)})")
        return resolve(self.commands[verb], f"'{verb}' command of {self.name!r}")

    def options_class(self, verb: str | None = None) -> type | None:
        """The component's options class, or the options of ``verb`` when given."""
        target = self.options if verb is None else self.verb_options.get(verb)
        return None if target is None else resolve(target, f"options of {self.name!r}")

    def default_artifact_path(self) -> Any:
        """The artifact shipped in the plugin's package, or None."""
        if self.default_artifact is None:
            return None
        from importlib.resources import files

        package, _, inner = self.default_artifact.partition(":")
        return files(package).joinpath(inner)

    def needs(self, extra: str) -> Any:
        """A context turning a missing optional module into one line naming the extra to install."""
        from engine.deps import missing_as_hint

        return missing_as_hint(self.distribution or self.plugin, extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "description": self.description,
            "capabilities": list(self.capabilities),
            "default_model": self.default_model,
            "default_artifact": self.default_artifact,
            "verbs": self.verbs,
            "commands": sorted(self.commands),
        }


class KindRegistry:
    """Handed to ``register_<kind>s(registry)``; collects one plugin's components."""

    def __init__(self, kind: str, plugin: str, api_version: int = 1, distribution: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        self.kind = kind
        self.plugin = plugin
        self.api_version = api_version
        self.distribution = distribution
        self.added: list[ComponentSpec] = []

    def add(
        self,
        name: str,
        factory: Target,
        *,
        description: str = "",
        capabilities: Iterable[str] = (),
        default_model: str | None = None,
        commands: Mapping[str, Target] | None = None,
        artifact_loader: Target | None = None,
        options: Target | None = None,
        verb_options: Mapping[str, Target] | None = None,
        default_artifact: str | None = None,
    ) -> ComponentSpec:
        """Register component ``name``, built by ``factory(**options)``.

        ``options`` is the component's attrs options class (its fields become CLI flags);
        ``commands`` maps verbs to targets: under plugin API 2, ``fn(ctx)`` for the verbs of
        :data:`PLUGIN_VERBS` (the core runs the main verb and export); under API 1,
        ``fn(argv, ctx)`` for any verb. ``verb_options`` maps a verb to its options class;
        ``artifact_loader`` is ``fn(artifact, *, provider, threads=None, **options)``;
        ``default_artifact`` is ``"package:path"`` of an artifact shipped in the package.
        """
        _check_name(name, f"{self.kind} name")
        if any(spec.name == name for spec in self.added):
            raise PluginError(f"{self.kind} {name!r} registered twice by plugin {self.plugin!r}")
        commands = dict(commands or {})
        allowed = VERBS if self.api_version < 2 else PLUGIN_VERBS
        unknown = sorted(set(commands) - set(allowed))
        if unknown:
            raise PluginError(
                f"{self.kind} {name!r}: verbs {unknown} are not the plugin's to run; it may add: {list(allowed)}"
            )
        verb_options = dict(verb_options or {})
        if set(verb_options) - set(commands):
            raise PluginError(f"{self.kind} {name!r}: options for verbs it has no command for: {sorted(verb_options)}")
        if default_artifact is not None and not re.fullmatch(r"[\w.]+:[\w./-]+", str(default_artifact)):
            raise PluginError(f"default_artifact of {name!r} must be 'package:path', got {default_artifact!r}")
        spec = ComponentSpec(
            kind=self.kind,
            name=name,
            factory=_check_target(factory, f"factory of {name!r}"),
            plugin=self.plugin,
            description=str(description),
            capabilities=tuple(str(c) for c in capabilities),
            default_model=default_model,
            commands={v: _check_target(t, f"'{v}' command of {name!r}") for v, t in commands.items()},
            artifact_loader=_optional_target(artifact_loader, f"artifact loader of {name!r}"),
            options=_optional_target(options, f"options of {name!r}"),
            verb_options={v: _check_target(t, f"'{v}' options of {name!r}") for v, t in verb_options.items()},
            default_artifact=default_artifact,
            api_version=self.api_version,
            distribution=self.distribution,
        )
        self.added.append(spec)
        return spec


def _optional_target(target: Any, what: str) -> Target | None:
    return None if target is None else _check_target(target, what)


@attrs.frozen
class CommandSpec:
    verb: str
    target: Target = attrs.field(repr=False)
    plugin: str
    help: str = ""


class CommandRegistry:
    """Handed to ``register_commands(commands)``; collects one plugin's extra verbs."""

    def __init__(self, plugin: str, reserved: Iterable[str]) -> None:
        self.plugin = plugin
        self.reserved = frozenset(reserved)
        self.added: list[CommandSpec] = []

    def add(self, verb: str, target: Target, *, help: str = "") -> CommandSpec:  # noqa: A002
        """Add ``engine <verb> ...`` running ``target(argv, ctx)``."""
        _check_name(verb, "command")
        if verb in self.reserved:
            raise PluginError(f"command {verb!r} is reserved by the engine")
        spec = CommandSpec(verb, _check_target(target, f"command {verb!r}"), self.plugin, str(help))
        self.added.append(spec)
        return spec
