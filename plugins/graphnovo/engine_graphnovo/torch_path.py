"""graphnovo on torch: PathSearcher + SeqFiller from fp16 safetensors weights (the factory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.interfaces import ConfigError
from engine.runtime import use_torch_threads

from .component import DEFAULT_WEIGHTS, _PipelineSequencer, make_options, pipeline_from_meta, require_weights
from .options import GraphNovoOptions


class GraphNovoSequencer(_PipelineSequencer):
    """``model``: a weights folder (default: the bundled model); ``device``: a torch device;
    ``options``: the fields of :class:`GraphNovoOptions` (None: the model's setting)."""

    def __init__(
        self, *, model: str | Path | None = None, device: str | None = None, threads: int | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.options = make_options(GraphNovoOptions, "graphnovo", options)
        self.weights = require_weights(model or DEFAULT_WEIGHTS)
        use_torch_threads(threads)
        from .model import TorchBackend
        from .training import load_weights

        self.ps, self.sf, self.meta = load_weights(self.weights)
        try:
            backend = TorchBackend(self.ps, self.sf, device or "cpu")
        except (RuntimeError, AssertionError) as exc:  # a device this torch cannot use (no CUDA build: assert)
            raise ConfigError(f"graphnovo cannot run on device {device!r}: {str(exc).splitlines()[0]}") from None
        self.device = backend.device
        self.pipeline = pipeline_from_meta(self.meta, backend, self.options)

    def export_onnx(self, dest: str | Path, *, overwrite: bool = False) -> Path:
        """Write PathSearcher and SeqFiller (encode + step graphs, fp32) as an engine artifact."""
        from .export import export_artifact

        return export_artifact(self, Path(dest), overwrite=overwrite)
