"""Typed interfaces of the three component kinds, their configs and results.

Configs validate on construction, so a bad value fails with one clear line
(``ValueError`` or ``TypeError``) before any model is touched.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np

from engine.errors import UsageError

KINDS = ("decoder", "sampler", "sequencer")


class ConfigError(UsageError, ValueError):
    """An invalid configuration value."""


def _at_least(low: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value < low:
            raise ConfigError(f"{attribute.name} must be >= {low}, got {value!r}")

    return check


def _finite_at_least(low: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not math.isfinite(value) or value < low:
            raise ConfigError(f"{attribute.name} must be a finite number >= {low}, got {value!r}")

    return check


def _probability(_inst: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{attribute.name} must be in (0, 1], got {value!r}")


def _typed(*types: type) -> Callable[[Any, attrs.Attribute, Any], None]:
    names = " or ".join(t.__name__ for t in types)

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            raise TypeError(f"{attribute.name} must be {names}, got {type(value).__name__}")

    return check


_int = _typed(int)
_number = _typed(int, float)
_optional_int = attrs.validators.optional(_int)


def _strings(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _nonempty_strings(_inst: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if any(not isinstance(s, str) or not s for s in value):
        raise ConfigError(f"{attribute.name} must hold non-empty strings, got {value!r}")


# --------------------------------------------------------------------------- decoders


@attrs.frozen
class GenerationConfig:
    """How a decoder generates: greedy when ``temperature`` is 0."""

    max_new_tokens: int = attrs.field(default=128, validator=[_int, _at_least(1)])
    temperature: float = attrs.field(default=0.0, validator=[_number, _finite_at_least(0.0)])
    top_p: float = attrs.field(default=1.0, validator=[_number, _probability])
    top_k: int = attrs.field(default=0, validator=[_int, _at_least(0)])
    seed: int | None = attrs.field(default=None, validator=_optional_int)
    stop: tuple[str, ...] = attrs.field(default=(), converter=_strings, validator=_nonempty_strings)
    eos: bool = attrs.field(default=True, validator=_typed(bool))
    stream: Callable[[str], None] | None = attrs.field(
        default=None, eq=False, validator=attrs.validators.optional(attrs.validators.is_callable())
    )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@attrs.frozen
class GenerationStats:
    steps: int
    new_tokens: int
    seconds: float

    @property
    def tokens_per_step(self) -> float:
        return self.new_tokens / self.steps if self.steps else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@attrs.frozen
class GenerationResult:
    tokens: tuple[int, ...] = attrs.field(converter=tuple)
    text: str
    stats: GenerationStats


# --------------------------------------------------------------------------- samplers


def _fixed_positions(value: Mapping[int, str] | None) -> dict[int, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"fixed must be a mapping of position to text, got {type(value).__name__}")
    return dict(value)


@attrs.frozen
class SamplingConfig:
    """How a sampler draws: ``fixed`` maps positions to the text they must hold."""

    num_samples: int = attrs.field(default=1, validator=[_int, _at_least(1)])
    length: int = attrs.field(default=256, validator=[_int, _at_least(1)])
    steps: int = attrs.field(default=64, validator=[_int, _at_least(1)])
    seed: int | None = attrs.field(default=None, validator=_optional_int)
    predictor: str = attrs.field(default="analytic", validator=_typed(str))
    prefix: str | None = attrs.field(default=None, validator=attrs.validators.optional(_typed(str)))
    suffix: str | None = attrs.field(default=None, validator=attrs.validators.optional(_typed(str)))
    fixed: dict[int, str] | None = attrs.field(default=None, converter=_fixed_positions, eq=False)

    def __attrs_post_init__(self) -> None:
        occupied = len(self.prefix or "") + len(self.suffix or "")
        if occupied > self.length:
            raise ConfigError(f"prefix and suffix ({occupied}) exceed length {self.length}")
        for position in self.fixed or {}:
            if not isinstance(position, int) or not 0 <= position < self.length:
                raise ConfigError(f"fixed position {position!r} is outside 0..{self.length - 1}")


@attrs.frozen
class SampleStats:
    steps: int
    seconds: float


@attrs.frozen
class SampleResult:
    texts: tuple[str, ...] = attrs.field(converter=tuple)
    tokens: tuple[tuple[int, ...], ...] = attrs.field(converter=lambda rows: tuple(map(tuple, rows)))
    stats: SampleStats


# --------------------------------------------------------------------------- sequencers


def _float_array(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1)


@attrs.frozen(eq=False)
class Spectrum:
    """One MS/MS spectrum. ``ref`` is the mzTab ``spectra_ref`` (``index=3``, ``scan=17``)."""

    ref: str = attrs.field(validator=_typed(str))
    precursor_mz: float = attrs.field(validator=_number)
    charge: int | None = attrs.field(validator=_optional_int)
    mz: np.ndarray = attrs.field(converter=_float_array)
    intensity: np.ndarray = attrs.field(converter=_float_array)
    scan: int | None = attrs.field(default=None, validator=_optional_int)
    index: int | None = attrs.field(default=None, validator=_optional_int)
    title: str | None = None
    label: str | None = None
    source: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.mz.shape != self.intensity.shape:
            raise ConfigError(f"spectrum {self.ref}: {self.mz.size} m/z values but {self.intensity.size} intensities")


@attrs.frozen
class PeptideHit:
    spectrum_ref: str
    scan: int | None
    peptide: str
    score: float
    residue_scores: tuple[float, ...] = attrs.field(converter=tuple)
    precursor_error_ppm: float
    charge: int
    precursor_mz: float
    source: str | None = None


# --------------------------------------------------------------------------- components


class Component(abc.ABC):
    """Base of every component. ``capabilities`` mirrors the registered metadata."""

    kind: ClassVar[str]
    name: str = ""
    capabilities: tuple[str, ...] = ()

    def export_onnx(self, dest: Any) -> Any:  # pragma: no cover - overridden where supported
        """Write an engine artifact to ``dest`` and return its path."""
        raise NotImplementedError(f"{type(self).__name__} does not export to ONNX")


class Decoder(Component):
    kind = "decoder"

    @abc.abstractmethod
    def generate(self, prompt: str, config: GenerationConfig | None = None) -> GenerationResult:
        """Generate a continuation of ``prompt``."""

    def generate_batch(self, prompts: Sequence[str], config: GenerationConfig | None = None) -> list[GenerationResult]:
        return [self.generate(prompt, config) for prompt in prompts]


class Sampler(Component):
    kind = "sampler"

    @abc.abstractmethod
    def sample(self, config: SamplingConfig | None = None) -> SampleResult:
        """Draw ``config.num_samples`` sequences."""


class Sequencer(Component):
    kind = "sequencer"

    @abc.abstractmethod
    def sequence(self, spectra: Iterable[Spectrum]) -> Iterator[PeptideHit]:
        """Yield one hit per spectrum that could be sequenced."""


BASES: dict[str, type[Component]] = {"decoder": Decoder, "sampler": Sampler, "sequencer": Sequencer}
