"""Exceptions of the engine. Every message is one line a user can act on."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a failure the CLI reports as one line and exit status 1."""


class UsageError(EngineError):
    """Bad arguments or configuration: exit status 2."""


class PluginError(EngineError):
    """A plugin failed to import, validate or register."""


class IncompatiblePluginError(PluginError):
    """A plugin declares a plugin API version this engine does not support."""


class UnknownComponentError(UsageError, LookupError):
    """No component of that kind and name is registered."""


class ArtifactError(EngineError):
    """An artifact directory is missing, tampered with, or of an unsupported schema."""


class ProviderError(EngineError):
    """The requested onnxruntime execution provider is not usable here."""


class Cancelled(EngineError):
    """Long work stopped at a step because the host cancelled it (or its deadline passed)."""


class ConcurrentUseError(EngineError):
    """A component that is not thread-safe was entered by a second thread while busy."""
