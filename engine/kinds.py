"""One record per component kind: everything the registry, the CLI, :class:`engine.Engine`
and :mod:`engine.testing` need to know about a kind comes from here.

Adding a kind means adding its interface to :mod:`engine.interfaces`, its record below,
and its main job in :mod:`engine.jobs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import attrs

from engine.interfaces import (
    Component,
    Decoder,
    GenerationConfig,
    GenerationResult,
    PeptideHit,
    Sampler,
    SampleResult,
    SamplingConfig,
    Sequencer,
    Spectrum,
)

DATA = Path(__file__).resolve().parent / "data"


@attrs.frozen
class Kind:
    """A component kind and its contract."""

    name: str
    base: type[Component]
    verb: str
    help: str
    #: a kind-level config class whose :func:`engine.options.option` fields become flags of the main verb
    config: type | None
    #: "module:attr" of ``fn(ctx, component) -> int | dict``, the main verb with its I/O
    job: str
    #: the probe input the conformance kit feeds every component of the kind
    probe: Callable[[], Any] = attrs.field(repr=False)
    #: run the main job on a probe input (Python API)
    call: Callable[[Any, Any], Any] = attrs.field(repr=False)
    #: a problem with a probe result, or None
    problem: Callable[[Any, Any, Any], str | None] = attrs.field(repr=False)
    #: a call that must fail with TypeError/ValueError (bad input)
    bad_input: Callable[[Any], Any] = attrs.field(repr=False)
    #: do the torch and onnxruntime results of the probe agree?
    same: Callable[[Any, Any, Any], bool] = attrs.field(repr=False)
    #: run the main job on the probe with its config given as a mapping (one rule for every kind)
    call_with_mapping: Callable[[Any, Any], Any] | None = attrs.field(default=None, repr=False)

    @property
    def plural(self) -> str:
        return self.name + "s"

    @property
    def hook(self) -> str:
        return f"register_{self.plural}"


# --------------------------------------------------------------------------- decoders

DECODER_PROMPT = "Hello"
DECODER_CONFIG = GenerationConfig(max_new_tokens=8)


def _decoder_problem(component: Any, probe: Any, result: Any) -> str | None:
    if not isinstance(result, GenerationResult):
        return f"generate returned {type(result).__name__}, not a GenerationResult"
    if not 0 < len(result.tokens) <= DECODER_CONFIG.max_new_tokens:
        return f"generate returned {len(result.tokens)} tokens for max_new_tokens={DECODER_CONFIG.max_new_tokens}"
    return None


# --------------------------------------------------------------------------- samplers

SAMPLER_CONFIG = SamplingConfig(num_samples=2, length=16, steps=4, seed=0)


def _sampler_problem(component: Any, probe: SamplingConfig, result: Any) -> str | None:
    if not isinstance(result, SampleResult):
        return f"sample returned {type(result).__name__}, not a SampleResult"
    if len(result.texts) != probe.num_samples or len(result.tokens) != probe.num_samples:
        return f"sample returned {len(result.texts)} texts for num_samples={probe.num_samples}"
    if any(len(row) != probe.length for row in result.tokens):
        return f"sample returned rows of lengths {[len(r) for r in result.tokens]}, not {probe.length}"
    return None


def _same_samples(component: Any, a: SampleResult, b: SampleResult) -> bool:
    exact = "exact-parity" in getattr(component, "capabilities", ())
    return a.tokens == b.tokens if exact else len(a.tokens) == len(b.tokens)


# --------------------------------------------------------------------------- sequencers


@cache
def _probe_records() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads((DATA / "probe_spectra.json").read_text()))


def probe_spectra() -> list[Spectrum]:
    """Labelled real HCD spectra bundled with the core (MassIVE-KB, via ms2pip's test data)."""
    return [Spectrum(**record) for record in _probe_records()]


def _sequencer_problem(component: Any, spectra: list[Spectrum], hits: Any) -> str | None:
    if not isinstance(hits, list):
        return f"sequence returned {type(hits).__name__}, not an iterator of PeptideHit"
    wrong = [type(h).__name__ for h in hits if not isinstance(h, PeptideHit)]
    if wrong:
        return f"sequence yielded {wrong[0]}, not PeptideHit"
    if spectra and not hits:
        return f"sequence yielded no hit for {len(spectra)} spectra"
    refs = {s.ref for s in spectra}
    strangers = [h.spectrum_ref for h in hits if h.spectrum_ref not in refs]
    if strangers:
        return f"sequence yielded a hit for spectrum_ref {strangers[0]!r}, which was not in the input"
    return _vocabulary_problem(getattr(component, "residues", None), hits)


def _vocabulary_problem(residues: Any, hits: list[PeptideHit]) -> str | None:
    """A declared vocabulary (``Sequencer.residues``, which the mzTab header reports) holds every
    token of every hit (I read as L, as residue tables do)."""
    if residues is None:
        return None
    from engine.io.peptides import PeptideError, normalize_il, parse_peptide, token_mass

    try:
        known = set(residues)
        for token in known:
            token_mass(token)
        outside = [t for h in hits for t in normalize_il(parse_peptide(h.peptide)) if t not in known]
    except (PeptideError, ValueError, TypeError) as exc:
        return f"residues or a hit's peptide cannot be read: {exc}"
    if outside:
        return f"sequence yielded {outside[0]!r}, which is not in its declared residues"
    return None


def _same_hits(component: Any, a: list[PeptideHit], b: list[PeptideHit]) -> bool:
    return bool(a) and [(h.spectrum_ref, h.peptide) for h in a] == [(h.spectrum_ref, h.peptide) for h in b]


KINDS_BY_NAME: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "decoder",
            Decoder,
            "decode",
            "generate text with a decoder",
            GenerationConfig,
            "engine.jobs:decode",
            probe=lambda: DECODER_PROMPT,
            call=lambda c, prompt: c.generate(prompt, DECODER_CONFIG),
            problem=_decoder_problem,
            bad_input=lambda c: c.generate(12345, DECODER_CONFIG),
            same=lambda c, a, b: a.tokens == b.tokens,
            call_with_mapping=lambda c, prompt: c.generate(prompt, {"max_new_tokens": DECODER_CONFIG.max_new_tokens}),
        ),
        Kind(
            "sampler",
            Sampler,
            "sample",
            "draw samples with a sampler",
            SamplingConfig,
            "engine.jobs:sample",
            probe=lambda: SAMPLER_CONFIG,
            call=lambda c, config: c.sample(config),
            problem=_sampler_problem,
            bad_input=lambda c: c.sample({"steps": 0}),
            same=_same_samples,
            call_with_mapping=lambda c, config: c.sample(attrs.asdict(config)),
        ),
        Kind(
            "sequencer",
            Sequencer,
            "sequence",
            "sequence spectra with a sequencer",
            None,
            "engine.jobs:sequence",
            probe=probe_spectra,
            call=lambda c, spectra: list(c.sequence(spectra)),
            problem=_sequencer_problem,
            bad_input=lambda c: list(c.sequence(["not a spectrum"])),
            same=_same_hits,
        ),
    )
}

KINDS: tuple[str, ...] = tuple(KINDS_BY_NAME)
BASES: dict[str, type[Component]] = {k.name: k.base for k in KINDS_BY_NAME.values()}
MAIN_VERB: dict[str, str] = {k.name: k.verb for k in KINDS_BY_NAME.values()}
KIND_OF_VERB: dict[str, str] = {k.verb: k.name for k in KINDS_BY_NAME.values()}


def kind_of(component: Any) -> Kind:
    """The record of the kind ``component`` implements."""
    for kind in KINDS_BY_NAME.values():
        if isinstance(component, kind.base):
            return kind
    raise TypeError(f"{type(component).__name__} implements no engine component kind")
