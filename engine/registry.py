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
from engine.interfaces import BASES, KINDS

#: Verbs of ``engine <verb> <component>`` that a component may implement.
VERBS = ("decode", "sample", "sequence", "train", "eval", "export", "bench", "demo")
#: The verb that a component's kind is the main job of.
MAIN_VERB = {"decoder": "decode", "sampler": "sample", "sequencer": "sequence"}

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
        raise PluginError(f"cannot load {what} {target!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise PluginError(f"{what} {target!r} is not callable")
    return obj


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

    def create(self, **options: Any) -> Any:
        """Build the component; it must be an instance of its kind's interface."""
        component = resolve(self.factory, f"factory of {self.kind} {self.name!r}")(**options)
        base = BASES[self.kind]
        if not isinstance(component, base):
            raise PluginError(
                f"factory of {self.kind} {self.name!r} returned {type(component).__name__}, "
                f"not an engine.interfaces.{base.__name__}"
            )
        return component

    def command(self, verb: str) -> Callable[..., Any]:
        if verb not in self.commands:
            supported = ", ".join(sorted(self.commands)) or "none"
            raise UsageError(f"{self.name} does not support '{verb}' (it supports: {supported})")
        return resolve(self.commands[verb], f"'{verb}' command of {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "description": self.description,
            "capabilities": list(self.capabilities),
            "default_model": self.default_model,
            "commands": sorted(self.commands),
        }


class KindRegistry:
    """Handed to ``register_<kind>s(registry)``; collects one plugin's components."""

    def __init__(self, kind: str, plugin: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}")
        self.kind = kind
        self.plugin = plugin
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
    ) -> ComponentSpec:
        """Register component ``name``, built by ``factory(**options)``.

        ``commands`` maps verbs of :data:`VERBS` to ``fn(argv, ctx)`` targets;
        ``artifact_loader`` is ``fn(artifact, provider=...)`` returning a component
        that runs an exported artifact.
        """
        _check_name(name, f"{self.kind} name")
        if any(spec.name == name for spec in self.added):
            raise PluginError(f"{self.kind} {name!r} registered twice by plugin {self.plugin!r}")
        commands = dict(commands or {})
        unknown = sorted(set(commands) - set(VERBS))
        if unknown:
            raise PluginError(f"{self.kind} {name!r}: unknown verbs {unknown}; known: {list(VERBS)}")
        spec = ComponentSpec(
            kind=self.kind,
            name=name,
            factory=_check_target(factory, f"factory of {name!r}"),
            plugin=self.plugin,
            description=str(description),
            capabilities=tuple(str(c) for c in capabilities),
            default_model=default_model,
            commands={v: _check_target(t, f"'{v}' command of {name!r}") for v, t in commands.items()},
            artifact_loader=None
            if artifact_loader is None
            else _check_target(artifact_loader, f"artifact loader of {name!r}"),
        )
        self.added.append(spec)
        return spec


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
