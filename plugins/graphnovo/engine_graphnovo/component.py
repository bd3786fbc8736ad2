"""Sequencer components: the learned GraphNovo (torch) and the DP baseline (numpy)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from engine.interfaces import PeptideHit, Sequencer, Spectrum

from .graph import GraphBuilder, GraphConfig, check_features
from .inference import Pipeline, SearchConfig
from .masses import ResidueTable
from .preprocess import PreprocessConfig

PACKAGE = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = PACKAGE / "weights" / "default"
EXAMPLES = PACKAGE / "examples" / "massivekb_examples.mgf"


def example_spectra() -> list[Spectrum]:
    """Three bundled labelled MassIVE-KB spectra (compomics/ms2pip test data, Apache-2.0)."""
    from .readers import read_spectra

    return list(read_spectra([EXAMPLES]))


def _search(options: dict, defaults: dict | None = None) -> SearchConfig:
    """User options over the model's tuned defaults (meta["search"]) over SearchConfig."""
    keys = SearchConfig.__dataclass_fields__
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise TypeError(f"unknown graphnovo options: {', '.join(unknown)}")
    merged = {k: v for k, v in (defaults or {}).items() if k in keys}
    merged.update(options)
    for key in ("isotopes", "charges"):
        if key in merged:
            merged[key] = tuple(merged[key])
    return SearchConfig(**merged)


class _PipelineSequencer(Sequencer):
    """Validates inputs and turns Pipeline predictions into PeptideHits."""

    pipeline: Pipeline

    def __init__(self) -> None:
        self.failures: list[tuple[str, str, str]] = []

    def sequence(self, spectra: Iterable[Spectrum]) -> Iterator[PeptideHit]:
        return self.pipeline.hits(_checked(spectra), self.failures)

    def example_spectra(self) -> list[Spectrum]:
        return example_spectra()


def _checked(spectra: Iterable[Spectrum]) -> Iterator[Spectrum]:
    for spec in spectra:
        if not isinstance(spec, Spectrum):
            raise TypeError(f"graphnovo sequences engine.interfaces.Spectrum, got {type(spec).__name__}")
        yield spec


class DPSequencer(_PipelineSequencer):
    """graphnovo-dp: dynamic-programming path + knapsack fill over the same graph."""

    name = "graphnovo-dp"
    capabilities = ()

    def __init__(self, **options) -> None:
        super().__init__()
        self.pipeline = Pipeline(GraphBuilder(ResidueTable(), GraphConfig()), None, _search(options))


class GraphNovoSequencer(_PipelineSequencer):
    """graphnovo: PathSearcher + SeqFiller on torch, from fp16 safetensors weights."""

    name = "graphnovo"
    capabilities = ("onnx-export",)

    def __init__(self, weights: str | Path | None = None, **options) -> None:
        super().__init__()
        from .model import TorchBackend
        from .training import load_weights

        self.weights = Path(weights) if weights else DEFAULT_WEIGHTS
        if not (self.weights / "config.json").is_file():
            raise ValueError(f"no graphnovo weights at {self.weights} (train them: engine train graphnovo)")
        self.ps, self.sf, self.meta = load_weights(self.weights)
        self.pipeline = pipeline_from_meta(self.meta, TorchBackend(self.ps, self.sf), options)

    def export_onnx(self, dest) -> Path:
        from .export import export_artifact

        return export_artifact(self, Path(dest))


def pipeline_from_meta(meta: dict, backend, options: dict | None = None) -> Pipeline:
    """Rebuild the exact graph/preprocess settings a model was trained with; search
    settings: ``options`` over the model's tuned defaults. A model trained on other
    input features than this code builds is refused (ValueError, one line)."""
    check_features(meta["model"])
    table = ResidueTable(tuple(meta["residues"]))
    builder = GraphBuilder(table, GraphConfig(**meta["graph"]))
    search = _search(dict(options or {}), meta.get("search"))
    m = meta["model"]
    cache = (m["decoder_layers"], 2, m["heads"], m["d_model"] // m["heads"])
    return Pipeline(builder, backend, search, PreprocessConfig(**meta["preprocess"]), bos=m["vocab"], cache=cache)
