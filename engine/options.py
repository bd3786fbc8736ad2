"""Options a component declares once, turned into validated CLI flags by the core.

A component's options are an attrs class whose fields are made with :func:`option`::

    @attrs.frozen
    class SEDDOptions:
        dtype: str = option("fp32", "network precision on torch", choices=("fp32", "bf16"), paths=("torch",))

The core adds ``--dtype`` to every verb that builds the component, shows it in
``engine VERB NAME --help``, validates the value (a bad one is a one-line usage error),
refuses it when the chosen path (torch, or onnxruntime with ``--artifact``) does not use
it, and passes the options to the factory or the artifact loader as keyword arguments.
Kind-level configs (``GenerationConfig``, ``SamplingConfig``) are declared the same way.
"""

from __future__ import annotations

import argparse
import builtins
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from engine.errors import PluginError, UsageError

PATHS = ("torch", "onnxruntime")
_KEY = "engine"


@attrs.frozen
class OptionInfo:
    """What the CLI needs to know about one option field."""

    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    paths: tuple[str, ...] = PATHS
    flag: str | None = None
    metavar: str | None = None
    repeat: bool = False
    cli: bool = True
    #: the value of the flag given bare (``--ar`` alone), making the value optional
    const: Any = None


def option(
    default: Any,
    help: str,  # noqa: A002 - the word every CLI library uses
    *,
    type: Callable[[str], Any] | None = None,  # noqa: A002
    choices: Iterable[Any] | None = None,
    paths: Iterable[str] = PATHS,
    flag: str | None = None,
    metavar: str | None = None,
    repeat: bool = False,
    cli: bool = True,
    const: Any = None,
    validator: Any = None,
    converter: Any = None,
    **field_kwargs: Any,
) -> Any:
    """An attrs field with CLI metadata.

    ``type`` parses the flag's text (inferred from the default when that is an int,
    float or str); ``paths`` are the run paths that read it; ``repeat`` makes a
    repeatable flag collecting a tuple; ``cli=False`` keeps it out of the CLI.
    """
    choices = tuple(choices) if choices is not None else None
    validators = [validator] if validator is not None and not isinstance(validator, list) else list(validator or [])
    if choices is not None:  # a None default means "not given", never one of the choices
        check = attrs.validators.in_(choices)
        validators.append(attrs.validators.optional(check) if default is None else check)
    info = OptionInfo(help, type, choices, tuple(paths), flag, metavar, repeat, cli, const)
    if not set(info.paths) <= set(PATHS):
        raise ValueError(f"option paths must be among {PATHS}, got {info.paths}")
    return attrs.field(
        default=default, validator=validators or None, converter=converter, metadata={_KEY: info}, **field_kwargs
    )


def comma_list(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """A flag type for ``2,3,4``: a tuple of ``item``."""

    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(item(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__} values, got {text!r}") from None

    parse.__name__ = f"comma-separated {item.__name__}"
    return parse


def fields(cls: type | None) -> list[tuple[attrs.Attribute, OptionInfo]]:
    """The CLI options of ``cls`` (an attrs class), in declaration order."""
    if cls is None:
        return []
    if not attrs.has(cls):
        raise PluginError(f"options class {cls!r} is not an attrs class")
    found = []
    for field in attrs.fields(cls):
        info = field.metadata.get(_KEY)
        if info is not None and info.cli:
            found.append((field, info))
    return found


def flag_of(field: attrs.Attribute, info: OptionInfo) -> str:
    return info.flag or "--" + field.name.replace("_", "-")


def _parse_type(field: attrs.Attribute, info: OptionInfo) -> Callable[[str], Any]:
    if info.type is not None:
        return info.type
    default = field.default
    return builtins.type(default) if isinstance(default, (int, float, str)) else str


def add_flags(parser: argparse.ArgumentParser, cls: type | None, title: str, taken: set[str]) -> None:
    """Add one flag per option of ``cls``; ``taken`` holds flags already in use."""
    items = fields(cls)
    if not items:
        return
    group = parser.add_argument_group(title)
    for field, info in items:
        flag = flag_of(field, info)
        if flag in taken:
            raise PluginError(f"option {field.name!r} of {cls.__name__} clashes with flag {flag}")
        taken.add(flag)
        default = field.default
        text = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = f" (default: {text})" if default not in (None, (), "") else ""
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS, "help": info.help + shown}
        if isinstance(field.default, bool) and info.type is None:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=_parse_type(field, info), metavar=info.metavar)
            if info.choices is not None:
                kwargs["choices"] = info.choices
            if info.repeat:
                kwargs["action"] = "append"
            if info.const is not None:
                kwargs.update(nargs="?", const=info.const)
        group.add_argument(flag, **kwargs)


def given(args: argparse.Namespace, cls: type | None) -> dict[str, Any]:
    """The options of ``cls`` set on the command line (unset ones are absent)."""
    values = {}
    for field, info in fields(cls):
        if hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if info.repeat else value
    return values


def build(cls: type | None, values: Mapping[str, Any]) -> Any:
    """``cls(**values)``, a validation failure becoming a one-line usage error."""
    if cls is None:
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(_first_line(exc)) from exc


def check_paths(cls: type | None, values: Mapping[str, Any], path: str, hint: str) -> None:
    """Refuse an option given on the command line that ``path`` does not read."""
    for field, info in fields(cls):
        if field.name in values and path not in info.paths:
            raise UsageError(f"{flag_of(field, info)} does not apply to the {path} path ({hint})")


def as_kwargs(instance: Any, path: str | None = None, only: Iterable[str] | None = None) -> dict[str, Any]:
    """The options as keyword arguments: those ``path`` reads (all when None), and only the
    names in ``only`` when given (the ones set on the command line: unset ones keep the
    factory's or the artifact's own defaults)."""
    if instance is None:
        return {}
    wanted = None if only is None else set(only)
    out = {}
    for field in attrs.fields(type(instance)):
        info = field.metadata.get(_KEY)
        if wanted is not None and field.name not in wanted:
            continue
        if path is None or info is None or path in info.paths:
            out[field.name] = getattr(instance, field.name)
    return out


def _first_line(exc: BaseException) -> str:
    # attrs validators raise ValueError(message, attribute, ...): the message is args[0]
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__
