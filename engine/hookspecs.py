"""Hook specifications of the ``engine`` plugin API.

Every hook is called with keyword arguments only. A plugin module declares the
integer ``plugin_api_version`` it was written for and implements any of these hooks
with ``@engine.hookimpl``. Registration must stay cheap: name factories as
``"module:attr"`` strings so that torch and model code load only when used.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "engine"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_decoders(registry):
    """Register decoders (accelerated token generation).

    :param registry: a :class:`engine.registry.KindRegistry` for kind ``"decoder"``;
        call ``registry.add(name, factory, **metadata)`` once per component.
    :returns: nothing.
    """


@hookspec
def register_samplers(registry):
    """Register samplers (generative samplers).

    :param registry: a :class:`engine.registry.KindRegistry` for kind ``"sampler"``.
    :returns: nothing.
    """


@hookspec
def register_sequencers(registry):
    """Register sequencers (spectrum to peptide).

    :param registry: a :class:`engine.registry.KindRegistry` for kind ``"sequencer"``.
    :returns: nothing.
    """


@hookspec
def register_commands(commands):
    """Add top-level CLI verbs, such as ``engine medusa tune-tree``.

    :param commands: a :class:`engine.registry.CommandRegistry`; call
        ``commands.add(verb, target, help="...")`` where ``target`` is a callable or
        ``"module:attr"`` taking ``(argv: list[str], ctx: engine.cli.CommandContext)``.
    :returns: nothing.
    """


@hookspec
def on_progress(event):
    """Observe progress of long work (training, export, benchmarks, batches).

    Called for every :class:`engine.progress.ProgressEvent` emitted through an
    :class:`engine.Engine`. Must be fast and must not raise: an exception here is
    logged and ignored so that an observer can never stop the work it observes.

    :param event: an :class:`engine.progress.ProgressEvent`.
    :returns: nothing.
    """
