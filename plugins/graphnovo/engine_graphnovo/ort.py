"""GraphNovo on onnxruntime alone (numpy + onnxruntime; never imports torch)."""

from __future__ import annotations

import numpy as np

from .component import _PipelineSequencer, pipeline_from_meta
from .export_names import ENCODE_INPUTS, PS_STEP_INPUTS, SF_STEP_INPUTS


class OrtBackend:
    def __init__(self, artifact, provider: str = "auto", threads: int | None = None):
        extra = {"threads": threads} if threads else {}
        self.sessions = {
            name: artifact.session(name, provider, **extra) for name in ("ps_encode", "ps_step", "sf_encode", "sf_step")
        }

    def providers(self) -> list[str]:
        return self.sessions["ps_encode"].get_providers()

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


class OrtSequencer(_PipelineSequencer):
    name = "graphnovo"
    capabilities = ("onnx-export",)

    def __init__(self, artifact, provider: str = "auto", threads: int | None = None):
        super().__init__()
        self.backend = OrtBackend(artifact, provider, threads)
        self.meta = artifact.config["meta"]
        self.pipeline = pipeline_from_meta(self.meta, self.backend)


def load_artifact(artifact, provider: str = "auto") -> OrtSequencer:
    return OrtSequencer(artifact, provider)
