"""graphnovo on onnxruntime alone (numpy + onnxruntime; never imports torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .component import _PipelineSequencer, make_options, pipeline_from_meta
from .export_names import ENCODE_INPUTS, PS_STEP_INPUTS, SF_STEP_INPUTS
from .options import GraphNovoOptions

MODELS = ("ps_encode", "ps_step", "sf_encode", "sf_step")


class OrtBackend:
    """The four exported graphs behind the Backend protocol of the shared beam searches."""

    def __init__(self, artifact, provider: str = "auto", threads: int | None = None):
        self.sessions = {name: artifact.session(name, provider, threads=threads) for name in MODELS}

    def _run(self, name: str, names: list[str], arrays) -> list[np.ndarray]:
        return self.sessions[name].run(None, dict(zip(names, arrays, strict=False)))

    def _encode(self, name, f):
        return tuple(self._run(name, ENCODE_INPUTS, [np.ascontiguousarray(f[k]) for k in ENCODE_INPUTS]))

    def ps_encode(self, feats):
        return self._encode("ps_encode", feats)

    def sf_encode(self, feats):
        return self._encode("sf_encode", feats)

    def ps_step(self, *arrays):
        """(*state, node_mask, last, position, next_mask, rows, past) -> (logp, present)."""
        return tuple(self._run("ps_step", PS_STEP_INPUTS, arrays))

    def sf_step(self, *arrays):
        """(*state, node_mask, node_masses, token, prefix, gap, precursor, rows, past)."""
        return tuple(self._run("sf_step", SF_STEP_INPUTS, arrays))


class OrtGraphNovoSequencer(_PipelineSequencer):
    """An exported graphnovo artifact (a folder or an ``engine.artifacts.Artifact``) on
    onnxruntime; ``options``: the fields of :class:`GraphNovoOptions`."""

    runs_artifact = True

    def __init__(self, artifact: Any, provider: str = "auto", threads: int | None = None, **options: Any) -> None:
        super().__init__()
        if isinstance(artifact, (str, Path)):
            from engine.artifacts import read_artifact

            artifact = read_artifact(artifact)
        self.options = make_options(GraphNovoOptions, "graphnovo", options)
        self.artifact = artifact
        self.meta = artifact.config["meta"]
        self.pipeline = pipeline_from_meta(self.meta, None, self.options)  # refuses a model of other features first
        self.backend = self.pipeline.backend = OrtBackend(artifact, provider, threads)

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers the sessions really run on, best first."""
        return list(self.backend.sessions["ps_encode"].get_providers())


def load_artifact(artifact: Any, *, provider: str = "auto", threads: int | None = None, **options: Any):
    """The artifact loader the plugin registers (``engine.load_artifact``)."""
    return OrtGraphNovoSequencer(artifact, provider, threads, **options)
