"""The command line of each verb and component: the global flags, the common flags every
component gets, and :func:`verb_parser`, which adds the kind's flags and the options the
component declares. Shared by the CLI, which parses with it, and the conformance kit, which
checks that every component's options make a valid command line.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine import options as opts
from engine.errors import UsageError
from engine.kinds import KIND_OF_VERB, KINDS_BY_NAME
from engine.registry import ComponentSpec

GLOBAL_FLAGS = {"--json": "json", "--quiet": "quiet", "-q": "quiet", "--debug": "debug"}
VERB_HELP = {
    **{kind.verb: kind.help for kind in KINDS_BY_NAME.values()},
    "train": "train a component's model",
    "eval": "evaluate a component's model",
    "export": "export a component's model to an ONNX artifact",
    "bench": "benchmark a component (JSON with --json)",
    "demo": "show each installed component's main job on its default model",
}

#: The common flags: (flags, dest, argparse keywords).
COMMON_FLAGS = {
    "model": (("--model",), {"help": "weights folder or model id the component loads (default: its own)"}),
    "artifact": (("--artifact",), {"help": "run this exported artifact on onnxruntime instead of torch"}),
    "provider": (
        ("--provider",),
        {"choices": ("auto", "cpu", "cuda", "tensorrt"), "help": "onnxruntime provider, with --artifact"},
    ),
    "device": (("--device",), {"help": "torch device (cpu, cuda, cuda:1), without --artifact"}),
    "threads": (("--threads",), {"type": int, "help": "threads for torch and onnxruntime (default: $ENGINE_THREADS)"}),
    "output": (("-o", "--output"), {"help": "where to write the result"}),
    "seed": (("--seed",), {"type": int, "help": "random seed"}),
    "force": (("--force",), {"action": "store_true", "help": "replace an existing artifact"}),
    "quantize": (
        ("--quantize",),
        {
            "choices": ("int8", "int4", "int4-b128"),
            "help": "quantize the exported weights (int4-b128: 4-bit blocks of 128, faster and less accurate)",
        },
    ),
}
_RUNS = ("model", "artifact", "provider", "device", "threads")
VERB_FLAGS = {
    **{kind.verb: (*_RUNS, "output", "seed") for kind in KINDS_BY_NAME.values()},
    "export": ("model", "device", "threads", "output", "force", "quantize"),
    "eval": (*_RUNS, "output", "seed"),
    "bench": (*_RUNS, "output", "seed"),
    "train": ("model", "device", "threads", "output", "seed"),
    "demo": _RUNS,
}
#: Verbs that build the component, so its options apply.
BUILDING_VERBS = frozenset({*KIND_OF_VERB, "export", "eval", "bench", "demo"})
#: Old spellings kept for one release (see CHANGELOG.md): old flag -> new flag.
DEPRECATED_FLAGS = {"--onnx": "--artifact", "--weights": "--model", "--out": "--output"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one-line usage errors instead of an exit."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message} (see: {self.prog} --help)")


def verb_parser(spec: ComponentSpec, verb: str) -> argparse.ArgumentParser:
    """Every flag of ``engine VERB NAME``: common, the kind's, the component's, the verb's."""
    parser = ArgumentParser(
        prog=f"engine {verb} {spec.name}", description=f"{VERB_HELP[verb]}: {spec.description}", allow_abbrev=False
    )
    common = parser.add_argument_group("common flags")
    taken = {"-h", "--help", *GLOBAL_FLAGS}
    for key in VERB_FLAGS[verb]:
        names, kwargs = COMMON_FLAGS[key]
        common.add_argument(*names, dest=key, **kwargs)
        taken.update(names)
    if verb == "export":  # the old positional destination, kept one release
        parser.add_argument("legacy_destination", nargs="?", help=argparse.SUPPRESS)
    kind = KINDS_BY_NAME[spec.kind]
    if verb == kind.verb:
        from engine import jobs

        jobs.add_io_flags(kind, parser, taken)
        opts.add_flags(parser, kind.config, f"{spec.kind} flags", taken)
    if verb in BUILDING_VERBS:
        opts.add_flags(parser, spec.options_class(), f"{spec.name} options", taken)
    opts.add_flags(parser, spec.options_class(verb), f"{spec.name} {verb} options", taken)
    return parser
