"""GraphNovo's options: the search and peak preprocessing settings of both components
(CLI flags and factory keywords alike) and the options of train / eval / bench.

Light on purpose (attrs and engine only): the core reads these classes to build the
command line before anything heavy is imported. ``None`` means the model's own setting
(its tuned ``search`` and its training preprocessing; the DP baseline's defaults).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from engine.interfaces import ConfigError
from engine.options import comma_list, option

#: option -> field of inference.SearchConfig (the same names)
SEARCH_FIELDS = (
    "charges",
    "isotopes",
    "precursor_ppm",
    "path_beam",
    "fill_beam",
    "path_length_bonus",
    "rescore_weight",
    "fill_paths",
    "prune_nodes",
    "prune_per_residue",
)
#: option -> field of preprocess.PreprocessConfig
PREPROCESS_FIELDS = {
    "min_mz": "min_mz",
    "max_mz": "max_mz",
    "top_n": "top_n",
    "min_intensity": "min_relative_intensity",
    "precursor_window": "remove_precursor_tol",
}
#: option -> field of graph.GraphConfig
GRAPH_FIELDS = {"max_nodes": "max_nodes"}


# ---------------------------------------------------------------- validators


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check(test, wanted: str):
    """A validator: ``value`` is None (the model's setting) or passes ``test``."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and not test(value):
            raise ConfigError(f"{attribute.name} must be {wanted}, got {value!r}")

    return check


_positive_int = _check(lambda v: _is_int(v) and v > 0, "a positive integer")
_positive = _check(lambda v: _is_number(v) and v > 0, "a positive number")
_non_negative = _check(lambda v: _is_number(v) and v >= 0, "a number >= 0")
_finite = _check(_is_number, "a finite number")
_fraction = _check(lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_heads = _check(lambda v: _is_int(v) and v > 0 and v % 4 == 0, "a positive multiple of 4 (the attention heads)")
_count = _check(lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_charges = _check(lambda v: v and all(_is_int(c) and c > 0 for c in v), "positive integers")
_isotopes = _check(lambda v: v and all(_is_int(k) for k in v), "integers")


def _int_tuple(value: Any) -> Any:
    """``3`` or ``[2, 3]`` -> a tuple (the validator checks the items)."""
    if value is None or isinstance(value, str):
        return value
    return (value,) if isinstance(value, int) else tuple(value)


def _mz_range(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    _non_negative(inst, attribute, value)
    if value is not None and inst.min_mz is not None and value <= inst.min_mz:
        raise ConfigError(f"max_mz must be above min_mz ({inst.min_mz}), got {value!r}")


# ---------------------------------------------------------------- components

_MODEL = " (default: the model's)"


def _setting(text: str, baseline: str, kind: type, validator: Any, **kwargs: Any) -> Any:
    """An option whose None is the model's own setting (the DP baseline's: ``baseline``)."""
    help_text = f"{text} (default: the model's; the DP baseline's: {baseline})"
    return option(None, help_text, type=kind, validator=validator, **kwargs)


def _int_list(text: str, baseline: str, validator: Any, metavar: str) -> Any:
    return _setting(text, baseline, comma_list(int), validator, metavar=metavar, converter=_int_tuple)


@attrs.frozen
class SearchOptions:
    """graphnovo-dp: charges, precursor matching and peak preprocessing."""

    charges: tuple[int, ...] | None = _int_list("charges tried when a spectrum has none", "2,3,4", _charges, "Z,...")
    isotopes: tuple[int, ...] | None = _int_list("isotope errors accepted, e.g. 0,1", "0", _isotopes, "K,...")
    precursor_ppm: float | None = _setting("precursor mass tolerance in ppm", "5", float, _positive)
    min_mz: float | None = _setting("peaks below this m/z are dropped", "50", float, _non_negative)
    max_mz: float | None = _setting("peaks above this m/z are dropped", "2500", float, _mz_range)
    top_n: int | None = _setting("keep the N most intense peaks", "150", int, _positive_int)
    min_intensity: float | None = _setting("minimum intensity relative to the base peak", "0.01", float, _fraction)
    precursor_window: float | None = _setting(
        "Da removed around the precursor m/z, 0 keeps it", "2", float, _non_negative
    )
    max_nodes: int | None = _setting(
        "node budget of the spectrum graph (the best-supported nodes stay)", "128", int, _positive_int
    )

    def search_settings(self) -> dict[str, Any]:
        """The search settings given (inference.SearchConfig fields)."""
        return {k: getattr(self, k) for k in SEARCH_FIELDS if getattr(self, k, None) is not None}

    def preprocess_settings(self) -> dict[str, Any]:
        """The preprocessing settings given (preprocess.PreprocessConfig fields)."""
        return {field: getattr(self, k) for k, field in PREPROCESS_FIELDS.items() if getattr(self, k) is not None}

    def graph_settings(self) -> dict[str, Any]:
        """The graph settings given (graph.GraphConfig fields)."""
        return {field: getattr(self, k) for k, field in GRAPH_FIELDS.items() if getattr(self, k) is not None}


@attrs.frozen
class GraphNovoOptions(SearchOptions):
    """graphnovo: the baseline's settings and the beam searches of the learned model."""

    path_beam: int | None = option(None, "PathSearcher beam width" + _MODEL, type=int, validator=_positive_int)
    fill_beam: int | None = option(None, "SeqFiller beam width" + _MODEL, type=int, validator=_positive_int)
    path_length_bonus: float | None = option(
        None, "log-probability bonus per PathSearcher step" + _MODEL, type=float, validator=_finite
    )
    rescore_weight: float | None = option(
        None,
        "weight of the fragment evidence when the SeqFiller's candidates are ranked (0: the model's score alone)"
        + _MODEL,
        type=float,
        validator=_non_negative,
    )
    fill_paths: int | None = option(
        None, "best PathSearcher paths the SeqFiller fills, ranked together" + _MODEL, type=int, validator=_positive_int
    )
    prune_nodes: int | None = option(
        None,
        "search a graph rebuilt on the K inner nodes the node head scores highest (0: the whole graph)" + _MODEL,
        type=int,
        validator=_count,
    )
    prune_per_residue: float | None = option(
        None,
        "prune to R inner nodes per residue the precursor mass holds (mass / 111.1 Da); replaces --prune-nodes' "
        "fixed K when > 0" + _MODEL,
        type=float,
        validator=_non_negative,
    )


# ---------------------------------------------------------------- verbs


DEV_FOLD_CHOICES = (0, 1, 2)
DEV_FOLD_HELP = (
    "which dev fold --hold-dev keeps out or --split dev evaluates: 0 (the default, about 100 of the 347 training "
    "spectra), 1 or 2 (halves of the rest); one model per fold scores every training spectrum once unseen"
)


@attrs.frozen
class TrainOptions:
    """engine train graphnovo (run directory: -o, default runs/graphnovo)."""

    minutes: float = option(60.0, "wall-clock budget in minutes", validator=_positive)
    steps: int = option(100000, "optimizer steps at most", validator=_positive_int)
    batch_size: int = option(16, "spectra per batch", validator=_positive_int)
    lr: float = option(5e-4, "peak learning rate (AdamW, warm-up then cosine)", validator=_positive)
    real_fraction: float = option(0.25, "share of each batch drawn from real training spectra", validator=_fraction)
    real: bool = option(True, "mix real MassIVE-KB training spectra into the batches (--no-real: simulated only)")
    max_peptides: int = option(200000, "tryptic peptides sampled for simulation", validator=_positive_int)
    d_model: int = option(96, "model width (4 attention heads)", validator=_heads)
    encoder_layers: int = option(2, "graph encoder layers", validator=_positive_int)
    decoder_layers: int = option(2, "decoder layers", validator=_positive_int)
    node_weight: float = option(
        1.0, "weight of the node head's loss (a per-node true-prefix score; 0: no node head)", validator=_non_negative
    )
    prune_fraction: float = option(
        0.0,
        "share of the simulated graphs cut to 16-64 nodes by a noisy true-prefix score, so that the model also "
        "learns the pruned graphs --prune-nodes searches",
        validator=_fraction,
    )
    init: str | None = option(
        None, "start from these weights (fine-tuning; their model settings replace the ones above)", type=str
    )
    hold_dev: bool = option(
        False,
        "keep a real dev fold (by default fold 0: about 100 of the 347 MassIVE-KB training spectra, fixed by a "
        "hash) out of training, so that `engine eval graphnovo --split dev` measures real spectra this model has "
        "not seen",
    )
    dev_fold: int | None = option(None, DEV_FOLD_HELP, choices=DEV_FOLD_CHOICES, type=int)
    checkpoint_every: int = option(200, "steps between checkpoints", validator=_positive_int)
    resume: bool = option(False, "continue from OUTPUT/checkpoint.pt")
    tune: bool = option(
        False,
        "afterwards, tune the search on simulated spectra: path length bonus, beam (5/10/20), paths filled "
        "and the fragment-evidence weight, then node pruning",
    )
    install: bool = option(False, "copy the weights into the package default and re-export its shipped artifact")


@attrs.frozen
class EvalOptions:
    """engine eval graphnovo / graphnovo-dp."""

    spectra: tuple[str, ...] = option(
        (),
        "labelled spectrum file (repeatable; default: the held-out MassIVE-KB split)",
        type=str,
        metavar="FILE",
        repeat=True,
    )
    labels: str | None = option(None, "PEPREC side file with the labels", type=str, metavar="FILE")
    split: str = option(
        "heldout",
        "without --spectra, the MassIVE-KB split: heldout (never trained on), dev (a part of the training split "
        "that models trained with --hold-dev have not seen), or train (what the default model trained on)",
        choices=("heldout", "dev", "train"),
    )
    dev_fold: int | None = option(None, DEV_FOLD_HELP, choices=DEV_FOLD_CHOICES, type=int)
    limit: int = option(0, "evaluate at most this many spectra (0: all)", validator=_count)


@attrs.frozen
class BenchOptions:
    """engine bench graphnovo (beams and the rest: the component's options)."""

    limit: int = option(60, "held-out spectra to time", validator=_positive_int)
