"""A plugin-based engine for fast sequence generation.

``import engine`` is light: it loads pluggy, attrs and the interfaces only; torch,
transformers and onnxruntime load when a component or runtime needs them.
"""

from __future__ import annotations

from typing import Any

from engine.errors import ArtifactError, EngineError, PluginError, ProviderError, UsageError
from engine.hookspecs import hookimpl, hookspec
from engine.host import PLUGIN_API_VERSION, SUPPORTED_API_VERSIONS, Engine, PluginInfo
from engine.interfaces import (
    Decoder,
    GenerationConfig,
    GenerationResult,
    GenerationStats,
    PeptideHit,
    Sampler,
    SampleResult,
    SampleStats,
    SamplingConfig,
    Sequencer,
    Spectrum,
)
from engine.progress import ProgressEvent

__version__ = "0.2.0"

__all__ = [
    "PLUGIN_API_VERSION",
    "SUPPORTED_API_VERSIONS",
    "ArtifactError",
    "Decoder",
    "Engine",
    "EngineError",
    "GenerationConfig",
    "GenerationResult",
    "GenerationStats",
    "PeptideHit",
    "PluginError",
    "PluginInfo",
    "ProgressEvent",
    "ProviderError",
    "SampleResult",
    "SampleStats",
    "Sampler",
    "SamplingConfig",
    "Sequencer",
    "Spectrum",
    "UsageError",
    "hookimpl",
    "hookspec",
    "load_artifact",
]


def load_artifact(
    path: Any, provider: str = "auto", threads: int | None = None, engine: Engine | None = None, **options: Any
) -> Any:
    """Verify the artifact at ``path`` and return the component its plugin builds from it.

    The plugin's loader gets ``provider``, ``threads`` and the other ``options``.
    """
    from engine.artifacts import load_artifact as _load

    return _load(path, provider=provider, engine=engine, threads=threads, **options)
