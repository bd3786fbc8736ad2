"""Typed interfaces of the three component kinds, their configs and results.

Configs validate on construction, so a bad value fails with one clear line
(``ValueError`` or ``TypeError``) before any model is touched.
"""

from __future__ import annotations

import abc
import argparse
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np

from engine.errors import ConcurrentUseError, UsageError
from engine.options import option


class ConfigError(UsageError, ValueError):
    """An invalid configuration value."""


def _at_least(low: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value < low:
            raise ConfigError(f"{attribute.name} must be >= {low}, got {value!r}")

    return check


def _finite_above(low: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not math.isfinite(value) or value <= low:
            raise ConfigError(f"{attribute.name} must be a finite number > {low}, got {value!r}")

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
_optional_seed = attrs.validators.optional([_int, _at_least(0)])


def _strings(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _nonempty_strings(_inst: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if any(not isinstance(s, str) or not s for s in value):
        raise ConfigError(f"{attribute.name} must hold non-empty strings, got {value!r}")


def as_config(cls: type, value: Any) -> Any:
    """The one rule for every kind's config argument: an instance of ``cls``, a mapping of
    its fields, or None (the defaults). Anything else is a TypeError; an unknown field a
    one-line ConfigError."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {f.name for f in attrs.fields(cls)}, key=str)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field {unknown[0]!r}")
        return cls(**value)
    raise TypeError(f"config must be a {cls.__name__}, a mapping of its fields or None, got {type(value).__name__}")


# --------------------------------------------------------------------------- decoders


@attrs.frozen
class GenerationConfig:
    """How a decoder generates: greedy when ``temperature`` is 0."""

    max_new_tokens: int = option(128, "tokens to generate at most", validator=[_int, _at_least(1)])
    temperature: float = option(0.0, "0 is greedy", validator=[_number, _finite_at_least(0.0)])
    top_p: float = option(1.0, "nucleus sampling mass", validator=[_number, _probability])
    top_k: int = option(0, "sample among the k most likely tokens (0: all)", validator=[_int, _at_least(0)])
    seed: int | None = option(None, "random seed", cli=False, validator=_optional_seed)
    stop: tuple[str, ...] = option(
        (), "stop at this text (repeatable)", repeat=True, converter=_strings, validator=_nonempty_strings
    )
    eos: bool = option(True, "stop at the end-of-sequence token", validator=_typed(bool))
    stream: Callable[[str], None] | None = option(
        None, "", cli=False, eq=False, validator=attrs.validators.optional(attrs.validators.is_callable())
    )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@attrs.frozen
class GenerationStats:
    """``seconds`` is the wall time of the call that produced the result. A decoder that decodes a
    batch together gives each row the batch's time, so a row's ``tokens_per_second`` is then a share,
    not a rate; ``engine decode`` times such a batch itself and reports its rate once."""

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


def _fixed_positions(value: Mapping[int, str] | Iterable[tuple[int, str]] | None) -> dict[int, str] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        fixed: dict[int, str] = {}
        for position, text in value:  # a repeated --fix would otherwise keep only its last text
            if fixed.setdefault(position, text) != text:
                raise ConfigError(f"position {position} is fixed twice: to {fixed[position]!r} and to {text!r}")
        return fixed or None
    raise TypeError(f"fixed must be a mapping of position to text, got {type(value).__name__}")


def position_text(text: str) -> tuple[int, str]:
    """``POS=TEXT`` on the command line."""
    pos, sep, fixed = text.partition("=")
    try:
        if not (sep and fixed):  # "--fix 3" or "--fix 3=" would silently hold nothing
            raise ValueError
        return int(pos), fixed
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected POSITION=TEXT with some text, got {text!r}") from None


@attrs.frozen
class SamplingConfig:
    """How a sampler draws: ``fixed`` maps positions to the text they must hold."""

    num_samples: int = option(1, "samples to draw", validator=[_int, _at_least(1)])
    length: int = option(256, "tokens per sample", validator=[_int, _at_least(1)])
    steps: int = option(64, "denoising steps", validator=[_int, _at_least(1)])
    seed: int | None = option(None, "random seed", cli=False, validator=_optional_seed)
    predictor: str | None = option(
        None,
        "sampler's update rule (default: the sampler's own)",
        type=str,
        validator=attrs.validators.optional(_typed(str)),
    )
    temperature: float = option(
        1.0,
        "divides the log-probabilities of each token drawn (1: the model's own; below 1: likelier, less varied text)",
        validator=[_number, _finite_above(0.0)],
    )
    prefix: str | None = option(
        None, "text the samples start with", type=str, validator=attrs.validators.optional(_typed(str))
    )
    suffix: str | None = option(
        None, "text the samples end with", type=str, validator=attrs.validators.optional(_typed(str))
    )
    fixed: dict[int, str] | None = option(
        None,
        "hold TEXT at POSITION (repeatable)",
        flag="--fix",
        type=position_text,
        metavar="POS=TEXT",
        repeat=True,
        converter=_fixed_positions,
        eq=False,
    )

    def __attrs_post_init__(self) -> None:
        occupied = len(self.prefix or "") + len(self.suffix or "")
        if occupied > self.length:
            raise ConfigError(
                f"prefix and suffix hold {occupied} characters, more than the sample length {self.length}: "
                "give a longer --length"
            )
        for position in self.fixed or {}:
            if not isinstance(position, int) or not 0 <= position < self.length:
                raise ConfigError(f"fixed position {position!r} is outside 0..{self.length - 1}")


@attrs.frozen
class SampleStats:
    steps: int
    seconds: float
    #: network evaluations, where a sampler skips some steps' evaluations (None: not counted)
    network_calls: int | None = None


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
        problem = _spectrum_problem(self)
        if problem:
            raise ConfigError(f"spectrum {self.ref}: {problem}")


def _spectrum_problem(spectrum: Spectrum) -> str | None:
    if spectrum.mz.shape != spectrum.intensity.shape:
        return f"{spectrum.mz.size} m/z values but {spectrum.intensity.size} intensities"
    if not (math.isfinite(spectrum.precursor_mz) and spectrum.precursor_mz > 0):
        return f"precursor m/z must be a positive number, got {spectrum.precursor_mz!r}"
    if spectrum.charge is not None and spectrum.charge < 1:
        return f"charge must be at least 1 (or None when unknown), got {spectrum.charge}"
    if not np.isfinite(spectrum.mz).all():
        return "m/z values must be finite numbers"
    if not np.isfinite(spectrum.intensity).all() or (spectrum.intensity < 0).any():
        return "intensities must be finite and not negative"
    return None


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


#: The main calls of every kind: guarded against concurrent use, see ``Component.thread_safe``.
MAIN_CALLS = ("generate", "generate_batch", "sample", "sequence")


class Component(abc.ABC):
    """Base of every component.

    A component's identity (name, capabilities, plugin) is declared once, at registration:
    the engine stamps the :class:`engine.registry.ComponentSpec` on every component it
    builds (``spec``), and ``name`` and ``capabilities`` read it. A class that runs an
    exported artifact sets ``runs_artifact = True`` and so never claims ``onnx-export``.

    Threads: components hold models and caches, so by default one may not be used by two
    threads at once: a second thread entering a main call (``generate``, ``sample``,
    ``sequence``...) while the first is inside gets :class:`engine.errors.ConcurrentUseError`
    instead of corrupted state. A class that is safe sets ``thread_safe = True``.

    Long work reports its steps with ``self.progress(...)``: the host's observers receive
    the events, and a host's :class:`engine.progress.CancelToken` stops the work there.
    """

    kind: ClassVar[str]
    runs_artifact: ClassVar[bool] = False
    thread_safe: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.thread_safe:
            return
        for name in MAIN_CALLS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__isabstractmethod__", False):
                setattr(cls, name, _one_thread(method))

    @property
    def spec(self) -> Any:
        """The registration this component was built from (looked up when built directly)."""
        spec = self.__dict__.get("_engine_spec")
        if spec is None:
            from engine.host import spec_of

            spec = self.__dict__["_engine_spec"] = spec_of(self)
        return spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def capabilities(self) -> tuple[str, ...]:
        caps = tuple(self.spec.capabilities)
        return tuple(c for c in caps if c != "onnx-export") if self.runs_artifact else caps

    def progress(self, iterable: Any = None, *, total: int | None = None, desc: str = "") -> Any:
        """A silent :class:`engine.progress.Progress` whose steps reach the host's observers
        (when an :class:`engine.Engine` built this component) and honour its cancellation."""
        from engine.progress import Progress

        return Progress(iterable, total=total, desc=desc, quiet=True, emit=self.__dict__.get("_engine_emit"))

    def export_onnx(self, dest: Any) -> Any:  # pragma: no cover - overridden where supported
        """Write an engine artifact to ``dest`` and return its path."""
        raise NotImplementedError(f"{type(self).__name__} does not export to ONNX")


def _one_thread(method: Callable[..., Any]) -> Callable[..., Any]:
    """Let one thread at a time into ``method`` of an instance (re-entry by that thread is fine).
    An iterator it returns is guarded step by step, so an abandoned one never keeps it busy."""
    import functools

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _busy(self):
            result = method(self, *args, **kwargs)
        return _StepGuard(self, result) if isinstance(result, Iterator) else result

    return guarded


class _busy:
    """Context: mark ``owner`` busy in this thread; a second thread gets ConcurrentUseError."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.state = owner.__dict__.setdefault("_engine_busy", {"lock": threading.Lock(), "thread": None, "depth": 0})

    def __enter__(self) -> None:
        me = threading.get_ident()
        with self.state["lock"]:
            if self.state["thread"] not in (None, me):
                raise ConcurrentUseError(
                    f"{type(self.owner).__name__} is busy in another thread and is not thread-safe: "
                    "build one component per thread, or guard it with a lock"
                )
            self.state["thread"], self.state["depth"] = me, self.state["depth"] + 1

    def __exit__(self, *exc: object) -> None:
        with self.state["lock"]:
            self.state["depth"] -= 1
            if self.state["depth"] == 0:
                self.state["thread"] = None


class _StepGuard:
    """An iterator whose every step runs with its component marked busy."""

    def __init__(self, owner: Any, iterator: Iterator[Any]) -> None:
        self.owner, self.iterator = owner, iterator

    def __iter__(self) -> _StepGuard:
        return self

    def __next__(self) -> Any:
        with _busy(self.owner):
            return next(self.iterator)


class Decoder(Component):
    kind = "decoder"

    @abc.abstractmethod
    def generate(self, prompt: str, config: GenerationConfig | None = None) -> GenerationResult:
        """Generate a continuation of ``prompt``."""

    def generate_batch(self, prompts: Sequence[str], config: GenerationConfig | None = None) -> list[GenerationResult]:
        config = as_config(GenerationConfig, config)
        return [self.generate(prompt, config) for prompt in prompts]


class Sampler(Component):
    kind = "sampler"

    @abc.abstractmethod
    def sample(self, config: SamplingConfig | None = None) -> SampleResult:
        """Draw ``config.num_samples`` sequences."""


class Sequencer(Component):
    kind = "sequencer"
    #: the ProForma tokens this sequencer can write (its residue vocabulary, e.g. ``"M[Oxidation]"``,
    #: ``"[Acetyl]-"``), or None: the mzTab header declares its fixed and variable modifications
    #: from it (without it, the modifications the hits carry, as variable)
    residues: tuple[str, ...] | None = None

    @abc.abstractmethod
    def sequence(self, spectra: Iterable[Spectrum]) -> Iterator[PeptideHit]:
        """Yield one hit per spectrum that could be sequenced."""


def __getattr__(name: str) -> Any:
    # KINDS and BASES moved to engine.kinds (one record per kind); kept here for plugins of API 1
    if name in ("KINDS", "BASES"):
        from engine import kinds

        return getattr(kinds, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
