"""The ``engine`` command line.

``engine <verb> <component> [args...]`` hands ``args`` to the command the component
registered for that verb. Exit status: 0 success, 2 usage error, 1 failure; errors
are one line on stderr (a traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from engine.errors import EngineError, UsageError
from engine.host import Engine
from engine.interfaces import KINDS
from engine.progress import Progress
from engine.registry import MAIN_VERB, VERBS, resolve

KIND_OF_VERB = {verb: kind for kind, verb in MAIN_VERB.items()}
GLOBAL_FLAGS = {"--json": "json", "--quiet": "quiet", "-q": "quiet", "--debug": "debug"}
VERB_HELP = {
    "decode": "generate text with a decoder",
    "sample": "draw samples with a sampler",
    "sequence": "sequence spectra with a sequencer",
    "train": "train a component's model",
    "eval": "evaluate a component's model",
    "export": "export a component's model to an ONNX artifact",
    "bench": "benchmark a component (JSON with --json)",
    "demo": "show each installed component's main job on its default model",
}


@attrs.define
class CommandContext:
    """What a plugin command receives besides its own ``argv``."""

    prog: str
    engine: Engine
    json: bool = False
    quiet: bool = False
    debug: bool = False

    def progress(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "") -> Progress:
        """A progress bar, silent with ``--quiet`` or off a terminal; it also emits events."""
        return self.engine.progress(iterable, total=total, desc=desc, quiet=self.quiet)

    def echo(self, message: str = "") -> None:
        """Print a human-readable line (to stderr under ``--json``, keeping stdout pure JSON)."""
        print(message, file=sys.stderr if self.json else sys.stdout, flush=True)


def _parser(engine: Engine | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engine",
        description="A plugin-based engine for fast sequence generation.",
        epilog="Global flags (--json, --quiet, --debug) may also follow the component name.",
    )
    parser.add_argument("--version", action="store_true", help="print the engine version and exit")
    parser.add_argument("--json", action="store_true", help="machine-readable output where supported")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("plugins", help="list plugins, their components and load errors")
    lister = sub.add_parser("list", help="list registered components")
    lister.add_argument("kind", nargs="?", choices=[f"{k}s" for k in KINDS], help="only this kind")
    for verb in VERBS:
        cmd = sub.add_parser(verb, help=VERB_HELP[verb], add_help=verb == "demo")
        cmd.add_argument("component", nargs="?", help="component name")
        cmd.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the component's command")
    for spec in engine.commands.values() if engine else ():
        extra = sub.add_parser(spec.verb, help=spec.help or f"commands of plugin {spec.plugin}", add_help=False)
        extra.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _split_globals(argv: Sequence[str]) -> tuple[list[str], dict[str, bool]]:
    """Take the global flags out of a command's arguments; ``--`` ends the search."""
    flags: dict[str, bool] = {}
    rest: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in GLOBAL_FLAGS:
            flags[GLOBAL_FLAGS[arg]] = True
        else:
            rest.append(arg)
    return rest, flags


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("engine: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary turns every error into one line
        if debug:
            traceback.print_exc()
        print(f"engine: error: {_one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(exc, EngineError) and message else f"{type(exc).__name__}: {message}".rstrip(": ")


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.ERROR, format="engine: %(message)s")
    if argv[:1] in ([], ["-h"], ["--help"]) or argv == ["--version"]:
        return _help_or_version(argv)
    engine = Engine()
    parser = _parser(engine)
    args = parser.parse_args(_head(argv))
    if args.version:
        return _help_or_version(["--version"])
    if args.command is None:
        parser.print_help()
        return 2
    rest, late = _split_globals(argv[argv.index(args.command) + 1 :])
    flags = {name: getattr(args, name) or late.get(name, False) for name in ("json", "quiet", "debug")}
    if args.command == "plugins":
        return _plugins(engine, flags["json"])
    if args.command == "list":
        return _list(engine, rest[0] if rest else None, flags["json"])
    _warn_load_errors(engine, flags["quiet"])
    if args.command in engine.commands:
        spec = engine.commands[args.command]
        ctx = CommandContext(prog=f"engine {spec.verb}", engine=engine, **flags)
        return _finish(resolve(spec.target, f"command {spec.verb!r}")(rest, ctx), ctx)
    if rest[:1] in (["-h"], ["--help"]):
        return _verb_help(engine, args.command)
    if args.command == "demo":
        return _demo(engine, rest, flags)
    if not rest or rest[0].startswith("-"):
        raise UsageError(f"engine {args.command} needs a component name (see: engine list)")
    spec = engine.get(KIND_OF_VERB.get(args.command), rest[0])
    ctx = CommandContext(prog=f"engine {args.command} {spec.name}", engine=engine, **flags)
    return _finish(spec.command(args.command)(rest[1:], ctx), ctx)


def _head(argv: list[str]) -> list[str]:
    """Top-level flags and the verb only: the rest belongs to the component's command."""
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            return argv[: i + 1]
    return argv


def _verb_help(engine: Engine, verb: str) -> int:
    specs = [s for s in engine.components(KIND_OF_VERB.get(verb)) if verb in s.commands]
    name = "[NAME...]" if verb == "demo" else "NAME [ARGS...]"
    print(f"usage: engine {verb} {name}\n\n{VERB_HELP[verb]}; components:")
    for spec in specs:
        print(f"  {spec.name:<14} {spec.description}")
    if not specs:
        print("  (none installed)")
    if verb != "demo":
        print(f"\nengine {verb} NAME --help shows the component's own options.")
    return 0


def _help_or_version(argv: list[str]) -> int:
    if argv == ["--version"]:
        from engine import __version__

        print(f"engine {__version__}")
        return 0
    _parser(Engine()).print_help()
    return 0 if argv else 2


def _finish(result: Any, ctx: CommandContext) -> int:
    if isinstance(result, dict):
        _print_mapping(result, ctx.json)
        return 0
    return int(result or 0)


def _print_mapping(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


def _warn_load_errors(engine: Engine, quiet: bool) -> None:
    if quiet:
        return
    for name, error in engine.load_errors.items():
        print(f"engine: warning: plugin {name} skipped: {error} (see: engine plugins)", file=sys.stderr)


def _plugins(engine: Engine, as_json: bool) -> int:
    from engine.runtime import runtime_conflict

    rows = [p.to_dict() for p in engine.plugins]
    conflict = runtime_conflict()
    if as_json:
        print(json.dumps({"plugins": rows, "runtime_warning": conflict}, indent=2))
        return 0
    for p in engine.plugins:
        where = f"{p.distribution} {p.version}" if p.distribution else (p.version or p.source)
        status = f"ERROR: {p.error}" if p.error else ", ".join(p.components + p.commands) or "nothing registered"
        print(f"{p.name:<12} {where:<28} {status}")
    if not engine.plugins:
        print("no plugins installed")
    if conflict:
        print(f"warning: {conflict}", file=sys.stderr)
    return 0


def _list(engine: Engine, kind: str | None, as_json: bool) -> int:
    if kind is not None and kind.rstrip("s") not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; choose one of {', '.join(k + 's' for k in KINDS)}")
    specs = engine.components(kind.rstrip("s") if kind else None)
    if as_json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return 0
    for s in specs:
        print(f"{s.kind:<10} {s.name:<14} {s.description}")
    return 0


def _demo(engine: Engine, rest: list[str], flags: dict[str, bool]) -> int:
    names = [a for a in rest if not a.startswith("-")]
    specs = [engine.get(None, n) for n in names] if names else engine.components()
    if not specs:
        print("no components installed: pip install the plugins (see README)")
        return 1
    failed = 0
    for spec in specs:
        print(f"== {spec.kind} {spec.name}: {spec.description}", flush=True)
        if "demo" not in spec.commands:
            print(f"   {spec.name} has no demo")
            continue
        ctx = CommandContext(prog=f"engine demo {spec.name}", engine=engine, **flags)
        try:
            _finish(spec.command("demo")([], ctx), ctx)
        except Exception as exc:  # noqa: BLE001 - one component's failure must not hide the others
            failed += 1
            print(f"engine: error: {spec.name} demo failed: {_one_line(exc)}", file=sys.stderr)
            if flags["debug"]:
                traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
