"""The onnxruntime back end: numpy + onnxruntime (+ tokenizers for BPE), never torch.
It runs the exported score network and shares every other step with the torch sampler."""

from __future__ import annotations

import numpy as np

from .component import SEDDSamplerBase


class OrtSEDDSampler(SEDDSamplerBase):
    """The sampler on an exported artifact (see ``engine export sedd``)."""

    runs_artifact = True

    def __init__(
        self,
        artifact,
        *,
        provider: str = "auto",
        threads: int | None = None,
        cache: bool = True,
        remask: float | None = None,
        remask_start: float | None = None,
    ):
        super().__init__(artifact.config, cache=cache, remask=remask, remask_start=remask_start)
        self.artifact = artifact
        self.session = artifact.session("score_net", provider, threads=threads)
        # a time-independent (RADD) network may export without its unused sigma_bar input
        self.inputs = {i.name for i in self.session.get_inputs()}

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers the score network really runs on, best first."""
        return list(self.session.get_providers())

    def raw_output(self, x, sigma_bar):
        if "rows" not in self.inputs:
            return self._run(x, sigma_bar)
        return self._run(x, sigma_bar, np.broadcast_to(np.arange(x.shape[1]), x.shape))

    def raw_output_at(self, x, sigma_bar, rows):
        if "rows" not in self.inputs:  # exported before output rows: the whole output, gathered
            return super().raw_output_at(x, sigma_bar, rows)
        return self._run(x, sigma_bar, rows)

    def _run(self, x, sigma_bar, rows=None):
        feeds = {
            "tokens": np.ascontiguousarray(x, dtype=np.int64),
            "sigma_bar": np.asarray(sigma_bar, dtype=np.float32).reshape(-1),
            "rows": None if rows is None else np.ascontiguousarray(rows, dtype=np.int64),
        }
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]


#: the artifact loader the plugin registers: the sampler itself (its keywords are the loader's)
load_artifact = OrtSEDDSampler
