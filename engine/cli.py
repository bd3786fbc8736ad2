"""The ``engine`` command line.

``engine VERB NAME [flags]``: the core parses every shared verb with the same common
flags for every component, the kind's own flags (its config and I/O), and the options
the component declares. The main verb of each kind and ``export`` are run by the core
(:mod:`engine.jobs`); ``train``, ``eval``, ``bench`` and ``demo`` by the component's
plugin when it has them (a generic demo otherwise). Exit status: 0 success, 2 usage
error, 1 failure; errors are one line on stderr (a traceback only with ``--debug``).
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

from engine import options as opts
from engine.deps import available
from engine.errors import EngineError, UsageError
from engine.flags import (
    BUILDING_VERBS,
    COMMON_FLAGS,
    DEPRECATED_FLAGS,
    GLOBAL_FLAGS,
    VERB_HELP,
    ArgumentParser,
    verb_parser,
)
from engine.host import Engine
from engine.kinds import KIND_OF_VERB, KINDS
from engine.progress import Progress
from engine.registry import CORE_VERBS, VERBS, ComponentSpec, resolve

OTHER_COMMANDS = {
    "plugins": "list plugins, their components and load errors (--check: run the conformance kit)",
    "list": "list registered components",
    "doctor": "versions, CPU, and the onnxruntime providers that really run here",
    "help": "help on a verb or a component: engine help VERB [NAME]",
    "version": "print the engine version",
}


@attrs.define
class CommandContext:
    """What a command receives: the parsed flags, the component's options, helpers.

    Under plugin API 2 a command is ``fn(ctx)``; the common flags are attributes
    (``ctx.model``, ``ctx.threads``, ``ctx.output``...), ``ctx.options`` is the
    component's options, ``ctx.verb_options`` the verb's, and ``ctx.load()`` builds the
    component on the path the flags choose.
    """

    prog: str
    engine: Engine
    json: bool = False
    quiet: bool = False
    debug: bool = False
    spec: ComponentSpec | None = None
    verb: str | None = None
    args: argparse.Namespace = attrs.field(factory=argparse.Namespace)
    options: Any = None
    verb_options: Any = None
    #: the component options set on the command line (only these reach the factory or loader)
    options_given: dict[str, Any] = attrs.field(factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name in COMMON_FLAGS:
            return getattr(self.args, name, None)
        raise AttributeError(name)

    @property
    def path(self) -> str:
        """``onnxruntime`` when an artifact runs (given, or shipped and torch absent), else ``torch``."""
        return "onnxruntime" if self.artifact_to_run() is not None else "torch"

    def artifact_to_run(self) -> Any:
        if self.artifact:
            return self.artifact
        if self.model or self.device or self.spec is None or self.verb in ("export", "train") or available("torch"):
            return None
        return self.spec.default_artifact_path()

    def load(self, path: str | None = None, **overrides: Any) -> Any:
        """The component, on torch or (with ``--artifact``) on onnxruntime, with its options;
        ``path="torch"`` builds the torch side even with ``--artifact`` (a bench comparing both)."""
        spec = _need_spec(self)
        artifact = None if path == "torch" else self.artifact_to_run()
        if artifact is not None:
            if not self.artifact:
                self.note(f"torch is not installed: running {spec.name}'s shipped artifact on onnxruntime")
            kwargs = {**opts.as_kwargs(self.options, "onnxruntime", self.options_given), **overrides}
            return self.engine.load_artifact(artifact, provider=self.provider or "auto", threads=self.threads, **kwargs)
        common = {k: getattr(self, k) for k in ("model", "device", "threads") if getattr(self, k) is not None}
        for key in common:
            if not spec.takes(key):
                raise UsageError(f"--{key} does not apply to {spec.name}")
        if self.threads is not None and available("torch"):
            from engine.runtime import use_torch_threads

            use_torch_threads(self.threads)
        component = spec.create(**common, **opts.as_kwargs(self.options, "torch", self.options_given), **overrides)
        return self.engine.observe(component)

    def progress(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "") -> Progress:
        """A progress bar, silent with ``--quiet`` or off a terminal; it also emits events."""
        return self.engine.progress(iterable, total=total, desc=desc, quiet=self.quiet)

    def echo(self, message: str = "") -> None:
        """Print a human-readable line (to stderr under ``--json``, keeping stdout pure JSON)."""
        print(message, file=sys.stderr if self.json else sys.stdout, flush=True)

    def note(self, message: str) -> None:
        """A remark on stderr (silent with ``--quiet``)."""
        if not self.quiet:
            print(f"engine: {message}", file=sys.stderr, flush=True)


def _need_spec(ctx: CommandContext) -> ComponentSpec:
    if ctx.spec is None:
        raise UsageError(f"{ctx.prog} runs no component")
    return ctx.spec


# --------------------------------------------------------------------------- top level


def _top_parser(engine: Engine | None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="engine",
        description="A plugin-based engine for fast sequence generation.",
        epilog="Global flags (--json, --quiet, --debug) may also follow the component name. "
        "engine VERB NAME --help shows every flag of a component.",
    )
    parser.add_argument("--version", action="store_true", help="print the engine version and exit")
    parser.add_argument("--json", action="store_true", help="machine-readable output where supported")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in VERBS:
        sub.add_parser(verb, help=VERB_HELP[verb], add_help=False)
    for command, text in OTHER_COMMANDS.items():
        sub.add_parser(command, help=text, add_help=False)
    for spec in engine.commands.values() if engine else ():
        sub.add_parser(spec.verb, help=spec.help or f"commands of plugin {spec.plugin}", add_help=False)
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
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
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
    # errors only, and on the handler too: a library with its own handler whose records propagate
    # (huggingface_hub) would otherwise print each warning twice, once with this prefix
    errors_only = logging.StreamHandler()
    errors_only.setLevel(logging.ERROR)
    logging.basicConfig(level=logging.ERROR, format="engine: %(message)s", handlers=[errors_only])
    head = _head(argv)
    if head in ([], ["-h"], ["--help"]) or argv == ["--version"]:
        return _help_or_version(argv)
    if head[-1:] in (["version"], ["doctor"]):  # no plugin loading needed
        rest, late = _split_globals(argv[len(head) :])
        return _version() if head[-1] == "version" else _doctor(rest, "--json" in head or late.get("json", False))
    engine = Engine()
    args = _top_parser(engine).parse_args(head)
    if args.version:
        return _version()
    rest, late = _split_globals(argv[len(head) :])
    flags = {name: getattr(args, name) or late.get(name, False) for name in ("json", "quiet", "debug")}
    command = args.command
    if command == "plugins":
        return _plugins(engine, rest, flags)
    _warn_load_errors(engine, flags["quiet"])
    if command == "list":
        return _list(engine, rest, flags["json"])
    if command == "help":
        return _help(engine, rest)
    if command in engine.commands:
        spec = engine.commands[command]
        ctx = CommandContext(prog=f"engine {spec.verb}", engine=engine, **flags)
        return _finish(resolve(spec.target, f"command {spec.verb!r}")(rest, ctx), ctx)
    if rest[:1] in (["-h"], ["--help"]) or (
        command == "demo" and _demo_names(rest) != 1 and {"-h", "--help"} & set(rest)
    ):
        return _verb_help(engine, command)
    if command == "demo":
        return _demo(engine, rest, flags)
    if not rest or rest[0].startswith("-"):
        raise UsageError(f"engine {command} needs a component name (see: engine list)")
    spec = engine.get(KIND_OF_VERB.get(command), rest[0])
    return run_verb(engine, spec, command, rest[1:], flags)


def _head(argv: list[str]) -> list[str]:
    """Top-level flags and the verb only: the rest belongs to the verb."""
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            return argv[: i + 1]
    return argv


# --------------------------------------------------------------------------- verbs


def run_verb(engine: Engine, spec: ComponentSpec, verb: str, argv: list[str], flags: dict[str, bool]) -> int:
    """``engine VERB NAME argv...``: parse, build the context, run the core job or the plugin's command."""
    prog = f"engine {verb} {spec.name}"
    if spec.api_version < 2 and verb in spec.commands:  # plugin API 1: the command parses its own argv
        ctx = CommandContext(prog=prog, engine=engine, spec=spec, verb=verb, **flags)
        return _finish(spec.command(verb)(argv, ctx), ctx)
    if verb not in spec.verbs:
        raise UsageError(f"{spec.name} does not support '{verb}' (it supports: {', '.join(spec.verbs)})")
    parser = verb_parser(spec, verb)
    args = parser.parse_args(_deprecated_aliases(argv))
    _legacy_destination(args)
    ctx = CommandContext(prog=prog, engine=engine, spec=spec, verb=verb, args=args, **flags)
    _check_common(ctx)
    if verb in BUILDING_VERBS:
        ctx.options, ctx.options_given = _options(spec, None, args, ctx)
    ctx.verb_options = _options(spec, verb, args, ctx)[0]
    with spec.needs("train" if verb in ("export", "train") else "torch"):
        if verb in CORE_VERBS or (verb == "demo" and "demo" not in spec.commands):
            from engine import jobs

            return _finish(jobs.run(ctx), ctx)
        return _finish(spec.command(verb)(ctx), ctx)


def _deprecated_aliases(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        old, eq, value = arg.partition("=")
        if old in DEPRECATED_FLAGS:
            new = DEPRECATED_FLAGS[old]
            print(f"engine: warning: {old} is deprecated, use {new} (see CHANGELOG.md)", file=sys.stderr)
            arg = new + eq + value
        out.append(arg)
    return out


def _legacy_destination(args: argparse.Namespace) -> None:
    legacy = getattr(args, "legacy_destination", None)
    if legacy is None:
        return
    if args.output is not None:
        raise UsageError(f"give the destination once: -o {args.output} or {legacy}, not both")
    print("engine: warning: a positional export destination is deprecated, use -o DEST", file=sys.stderr)
    args.output = legacy


def _check_common(ctx: CommandContext) -> None:
    """Flags that do not apply to the chosen path are usage errors, never dropped."""
    if ctx.artifact:
        for key in ("model", "device"):
            if getattr(ctx, key) is not None:
                raise UsageError(f"--{key} does not apply with --artifact (the artifact holds the model)")
    elif ctx.provider is not None:
        raise UsageError("--provider applies only with --artifact (torch runs on --device)")
    if ctx.threads is not None and ctx.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {ctx.threads}")
    if ctx.seed is not None and ctx.seed < 0:  # numpy's generators take none; say so before any work
        raise UsageError(f"--seed must be at least 0, got {ctx.seed}")
    if ctx.verb == "export" and not ctx.output:
        raise UsageError(f"{ctx.prog} needs -o DEST, the artifact folder to write")
    if ctx.output:
        from engine.io.files import check_writable

        check_writable(ctx.output, folder=ctx.verb in ("export", "train"))


def _options(
    spec: ComponentSpec, verb: str | None, args: argparse.Namespace, ctx: CommandContext
) -> tuple[Any, dict[str, Any]]:
    """The validated options instance and the values given on the command line."""
    cls = spec.options_class(verb)
    values = opts.given(args, cls)
    if verb is None:
        opts.check_paths(cls, values, ctx.path, _path_hint(ctx))
    return opts.build(cls, values), values


def _path_hint(ctx: CommandContext) -> str:
    if ctx.artifact:
        return "drop it, or run without --artifact"
    if ctx.path == "onnxruntime":  # torch is absent, so the shipped artifact runs
        from engine.deps import install_hint

        return f"torch is not installed, so the shipped artifact runs; {install_hint('torch', _dist(ctx), 'torch')}"
    return "it is read with --artifact"


def _dist(ctx: CommandContext) -> str:
    spec = _need_spec(ctx)
    return spec.distribution or spec.plugin


def _finish(result: Any, ctx: CommandContext) -> int:
    if isinstance(result, dict):
        if ctx.output and ctx.verb in ("eval", "bench"):
            from engine.io.files import atomic_write_text

            atomic_write_text(ctx.output, json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
        _print_mapping(result, ctx.json)
        return 0
    return int(result or 0)


def _print_mapping(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


# --------------------------------------------------------------------------- other commands


def _verb_help(engine: Engine, verb: str) -> int:
    specs = [s for s in engine.components(KIND_OF_VERB.get(verb)) if verb in s.verbs]
    name = "[NAME...] [--threads N] [--device DEV]" if verb == "demo" else "NAME [FLAGS...]"
    print(f"usage: engine {verb} {name}\n\n{VERB_HELP[verb]}; components:")
    for spec in specs:
        print(f"  {spec.name:<14} {spec.description}")
    if not specs:
        print("  (none installed)")
    print(f"\nengine {verb} NAME --help shows every flag of a component" + ("'s demo." if verb == "demo" else "."))
    return 0


def _help(engine: Engine, rest: list[str]) -> int:
    if not rest:
        _top_parser(engine).print_help()
        return 0
    verb = rest[0]
    if verb not in VERBS:
        raise UsageError(f"no help on {verb!r}: name a verb ({', '.join(VERBS)})")
    if len(rest) == 1:
        return _verb_help(engine, verb)
    spec = engine.get(KIND_OF_VERB.get(verb), rest[1])
    if spec.api_version < 2 and verb in spec.commands:
        return run_verb(engine, spec, verb, ["--help"], {})
    verb_parser(spec, verb).print_help()
    return 0


def _help_or_version(argv: list[str]) -> int:
    if argv == ["--version"]:
        return _version()
    _top_parser(Engine()).print_help()
    return 0 if argv else 2


def _version() -> int:
    from engine import __version__

    print(f"engine {__version__}")
    return 0


def _doctor(rest: list[str], as_json: bool) -> int:
    if rest:
        raise UsageError(f"engine doctor takes no arguments besides --json, got {rest[0]!r}")
    from engine.doctor import format_report, report

    data = report()
    print(json.dumps(data, indent=2, default=str) if as_json else format_report(data))
    return 0


def _warn_load_errors(engine: Engine, quiet: bool) -> None:
    if quiet:
        return
    for info in engine.plugins:
        if info.error:
            print(f"engine: warning: plugin {info.name} skipped: {info.error} (see: engine plugins)", file=sys.stderr)
        for clash in info.clashes:
            print(f"engine: warning: plugin {info.name}: {clash} (see: engine plugins)", file=sys.stderr)


def _plugins(engine: Engine, rest: list[str], flags: dict[str, bool]) -> int:
    parser = ArgumentParser(prog="engine plugins", allow_abbrev=False)
    parser.add_argument("--check", action="store_true", help="run the conformance kit over the installed plugins")
    parser.add_argument("--no-onnx", action="store_true", help="with --check: skip the export parity check")
    parser.add_argument("names", nargs="*", help="with --check: only these plugins")
    args = parser.parse_args(rest)
    if args.check:
        return _check_plugins(engine, args, flags)
    from engine.runtime import runtime_conflict

    conflict = runtime_conflict()
    if flags["json"]:
        print(json.dumps({"plugins": [p.to_dict() for p in engine.plugins], "runtime_warning": conflict}, indent=2))
        return 0
    for p in engine.plugins:
        where = f"{p.distribution} {p.version}" if p.distribution else (p.version or p.source)
        status = f"ERROR: {p.error}" if p.error else ", ".join(p.components + p.commands) or "nothing registered"
        clashes = "".join(f"; CLASH: {c}" for c in p.clashes)
        print(f"{p.name:<12} {where:<28} {status}{clashes}")
    if not engine.plugins:
        print("no plugins installed")
    if conflict:
        print(f"warning: {conflict}", file=sys.stderr)
    return 0


def _check_plugins(engine: Engine, args: argparse.Namespace, flags: dict[str, bool]) -> int:
    from engine.testing import check_installed

    results = check_installed(engine, names=args.names or None, onnx=not args.no_onnx)
    if flags["json"]:
        print(json.dumps(results, indent=2))
    else:
        for name, error in results.items():
            print(f"{name:<12} {'ok' if error is None else 'FAILED: ' + error}")
    return 0 if results and all(error is None for error in results.values()) else 1


def _list(engine: Engine, rest: list[str], as_json: bool) -> int:
    kind = rest[0] if rest else None
    if kind is not None and kind.removesuffix("s") not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; choose one of {', '.join(k + 's' for k in KINDS)}")
    specs = engine.components(kind.removesuffix("s") if kind else None)
    if as_json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return 0
    for s in specs:
        print(f"{s.kind:<10} {s.name:<14} {s.description}")
    return 0


#: Common flags that mean the same for every component, so a demo of several takes them.
_DEMO_SHARED_FLAGS = ("threads", "device")


def _demo_names(rest: list[str]) -> int:
    """How many component names open ``engine demo``'s arguments (the flags follow them)."""
    return next((i for i, a in enumerate(rest) if a.startswith("-")), len(rest))


def _demo_shared_flags(argv: list[str]) -> dict[str, Any]:
    """The shared flags of a demo of several components; any other flag is a usage error."""
    parser = ArgumentParser(prog="engine demo", add_help=False, allow_abbrev=False)
    for key in _DEMO_SHARED_FLAGS:
        parser.add_argument(*COMMON_FLAGS[key][0], dest=key, **COMMON_FLAGS[key][1])
    given, unknown = parser.parse_known_args(argv)
    if unknown:
        raise UsageError(
            f"a demo of several components takes --threads and --device only, got {unknown[0]!r} "
            "(one component takes its own flags: engine demo NAME FLAGS...)"
        )
    return {key: value for key, value in vars(given).items() if value is not None}


def _demo_argv(spec: ComponentSpec, shared: dict[str, Any]) -> list[str]:
    """The shared flags this component's factory takes; the others are named, not dropped silently."""
    argv = []
    for key, value in shared.items():
        if spec.takes(key):
            argv += [f"--{key}", str(value)]
        else:
            print(f"engine: {spec.name} takes no --{key}; its demo runs without it", file=sys.stderr)
    return argv


def _demo(engine: Engine, rest: list[str], flags: dict[str, bool]) -> int:
    """``engine demo [NAME...] [FLAGS...]``: one component takes all its demo flags, several the shared ones."""
    split = _demo_names(rest)
    names, argv = rest[:split], rest[split:]
    shared = _demo_shared_flags(argv) if len(names) != 1 else None
    specs = [engine.get(None, n) for n in names] if names else engine.components()
    if shared is None and {"-h", "--help"} & set(argv):  # one component's demo flags, no header
        return run_verb(engine, specs[0], "demo", argv, flags)
    if not specs:
        print("no components installed: pip install the plugins (see README)")
        return 1
    failed = 0
    for spec in specs:
        header = sys.stderr if flags["json"] else sys.stdout  # --json: stdout holds only the JSON
        print(f"== {spec.kind} {spec.name}: {spec.description}", file=header, flush=True)
        try:
            run_verb(engine, spec, "demo", argv if shared is None else _demo_argv(spec, shared), flags)
        except Exception as exc:  # noqa: BLE001 - one component's failure must not hide the others
            failed += 1
            print(f"engine: error: {spec.name} demo failed: {_one_line(exc)}", file=sys.stderr)
            if flags["debug"]:
                traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
