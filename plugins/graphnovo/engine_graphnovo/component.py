"""The part of both GraphNovo paths that needs no torch: spectra -> PeptideHits through the
shared Pipeline, the model's settings under the user's options, and the DP baseline
(graphnovo-dp, numpy only). The torch class is in ``torch_path``, the onnxruntime class
in ``ort_path``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from engine.interfaces import ConfigError, PeptideHit, Sequencer, Spectrum
from engine.io.peptides import ResidueTable
from engine.io.spectra import spectrum_problem

from .graph import GraphBuilder, GraphConfig, check_features
from .inference import Pipeline, SearchConfig
from .options import GraphNovoOptions, SearchOptions
from .preprocess import PreprocessConfig

PACKAGE = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = PACKAGE / "weights" / "default"
DEFAULT_ARTIFACT = PACKAGE / "artifacts" / "default"


def require_weights(folder: str | Path, use: str = "train them: engine train graphnovo") -> Path:
    """``folder`` as a Path if it holds GraphNovo weights (its config.json), else a one-line ConfigError."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"no graphnovo weights at {folder} ({use})")
    return folder


def make_options(cls: type, name: str, options: dict[str, Any]) -> Any:
    """``cls(**options)``; an option the component does not take is a one-line ConfigError."""
    known = {a.name for a in attrs.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"{name} has no option {', '.join(map(repr, unknown))} (it takes: {', '.join(sorted(known))})"
        )
    return cls(**options)


def search_config(options: SearchOptions, defaults: dict | None = None) -> SearchConfig:
    """The options given over the model's tuned defaults (meta["search"]) over SearchConfig."""
    keys = {f.name for f in dataclasses.fields(SearchConfig)}
    merged = {k: v for k, v in (defaults or {}).items() if k in keys}
    given = options.search_settings()
    if "prune_nodes" in given and "prune_per_residue" not in given:
        merged.pop("prune_per_residue", None)  # a fixed K asked for over a stored per-residue budget
    merged.update(given)
    for key in ("isotopes", "charges"):
        if key in merged:
            merged[key] = tuple(merged[key])
    return SearchConfig(**merged)


def graph_builder(options: SearchOptions, table: ResidueTable, base: GraphConfig) -> GraphBuilder:
    """The model's graph settings with the options given."""
    return GraphBuilder(table, dataclasses.replace(base, **options.graph_settings()))


def preprocess_config(options: SearchOptions, base: PreprocessConfig) -> PreprocessConfig:
    """The model's peak preprocessing with the options given."""
    changed = dataclasses.replace(base, **options.preprocess_settings())
    if changed.max_mz <= changed.min_mz:
        raise ConfigError(f"max_mz ({changed.max_mz}) must be above min_mz ({changed.min_mz})")
    return changed


class _PipelineSequencer(Sequencer):
    """Validates inputs and turns Pipeline predictions into PeptideHits; spectra with no
    prediction go to ``failures`` (source, ref, reason), which the core's sequence job
    adds to the skipped report."""

    pipeline: Pipeline

    def __init__(self) -> None:
        self.failures: list[tuple[str, str, str]] = []

    @property
    def residues(self) -> tuple[str, ...]:
        """The model's residue vocabulary (what its peptides can hold)."""
        return self.pipeline.builder.table.tokens

    def sequence(self, spectra: Iterable[Spectrum]) -> Iterator[PeptideHit]:
        steps = self.progress(spectra, desc="sequence")  # each spectrum read: an event, a cancellation point
        return self.pipeline.hits(_checked(steps, self.failures), self.failures)


def _checked(spectra: Iterable[Spectrum], failures: list[tuple[str, str, str]]) -> Iterator[Spectrum]:
    """Spectra a peptide can be read from; the others go to ``failures`` (no peptide invented)."""
    for spec in spectra:
        if not isinstance(spec, Spectrum):
            raise TypeError(f"graphnovo sequences engine.interfaces.Spectrum, got {type(spec).__name__}")
        problem = spectrum_problem(spec)
        if problem:
            failures.append((spec.source or "", spec.ref, problem))
            continue
        yield spec


class DPSequencer(_PipelineSequencer):
    """graphnovo-dp: dynamic-programming path + knapsack fill over the same graph (numpy only)."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = make_options(SearchOptions, "graphnovo-dp", options)
        builder = graph_builder(self.options, ResidueTable(), GraphConfig())
        prep = preprocess_config(self.options, PreprocessConfig())
        self.pipeline = Pipeline(builder, None, search_config(self.options), prep)


def baseline_for(options: SearchOptions | None, learned: Any = None) -> DPSequencer:
    """The DP baseline with the settings of ``options`` it reads (eval runs both side by side);
    given the ``learned`` sequencer, on the very graphs it searches (its graph and peak settings)."""
    names = [a.name for a in attrs.fields(SearchOptions)]
    dp = DPSequencer(**{k: getattr(options, k) for k in names} if options is not None else {})
    if learned is not None:
        dp.pipeline.builder, dp.pipeline.prep = learned.pipeline.builder, learned.pipeline.prep
    return dp


def pipeline_from_meta(meta: dict, backend: Any, options: GraphNovoOptions | None = None) -> Pipeline:
    """Rebuild the exact graph/preprocess settings a model was trained with, the options
    given over them (and over the model's tuned search). A model trained on other input
    features than this code builds is refused (ConfigError, one line)."""
    check_features(meta["model"])
    options = options if options is not None else GraphNovoOptions()
    table = ResidueTable(tuple(meta["residues"]))
    builder = graph_builder(options, table, GraphConfig.from_meta(meta["graph"]))
    search = search_config(options, meta.get("search"))
    prep = preprocess_config(options, PreprocessConfig.from_meta(meta["preprocess"]))
    m = meta["model"]
    cache = (m["decoder_layers"], 2, m["heads"], m["d_model"] // m["heads"])
    return Pipeline(builder, backend, search, prep, bos=m["vocab"], cache=cache)
