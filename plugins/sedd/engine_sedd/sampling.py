"""SEDD samplers in float64 numpy: Euler (tau-leaping) and analytic (Tweedie
tau-leaping) predictors, the final denoise step, and conditioning on fixed positions.

The network enters only through ``score_fn(x (B, L) int64, sigma_bar (B,) float64) ->
concrete scores (B, L, N) float64``, and every random draw comes from a numpy
Generator, so the torch and onnxruntime back ends produce the same tokens for the same
seed whenever their scores agree. Categorical draws are inverse-CDF in float64 (Gumbel
tricks in low precision lower the effective temperature)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from engine.interfaces import ConfigError

from .extensions import PREDICTORS
from .graphs import Graph
from .options import check_share
from .schedules import Schedule

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: the remdm predictor's cap per step (eta) and the time (masked share) from which it remasks, the steps
#: before being plain ones: chosen on the default model's samples at 256 steps (MODEL_CARD.md, "Remasking")
DEFAULT_REMASK = 0.2
DEFAULT_REMASK_START = 0.25


def sample_categorical(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index i with probability probs[..., i] / sum (negatives count as 0), using one
    uniform u in [0, 1) per row."""
    cdf = np.cumsum(np.clip(probs, 0.0, None), axis=-1)
    idx = (cdf <= (u * cdf[..., -1])[..., None]).sum(-1)  # first i with cdf[i] > u total
    return np.minimum(idx, probs.shape[-1] - 1).astype(np.int64)


def temper(probs: np.ndarray, vocab: int, temperature: float) -> np.ndarray:
    """A draw's probabilities at ``temperature`` on the absorbing graph: among the data tokens
    (the first ``vocab`` columns) p ** (1 / T), rescaled to the mass they had, so a MASK is
    unmasked this step exactly as often as at T = 1 and only its choice of token is sharpened
    (T < 1) or flattened (T > 1); a MASK column, if any, is kept. Rows without data mass stay."""
    if temperature == 1.0:
        return probs
    data = np.clip(probs[..., :vocab], 0.0, None)
    mass = data.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        scaled = np.log(data) / temperature
    peak = scaled.max(-1, keepdims=True)
    weights = np.exp(scaled - np.where(np.isfinite(peak), peak, 0.0))
    total = weights.sum(-1, keepdims=True)
    tempered = np.where(total > 0, weights * mass / np.where(total > 0, total, 1.0), data)
    return np.concatenate([tempered, probs[..., vocab:]], axis=-1)


class Predictor:
    """One reverse step from time t to t - dt."""

    name = "base"

    def __init__(self, graph: Graph, schedule: Schedule, *, temperature: float = 1.0):
        if temperature != 1.0 and not graph.absorbing:
            raise ConfigError(f"temperature {temperature} needs the absorbing graph, not {graph.name!r}")
        self.graph, self.schedule, self.temperature = graph, schedule, temperature

    def probs(self, score_fn: ScoreFn, x, t: float, dt: float) -> np.ndarray:
        raise NotImplementedError

    def update(self, score_fn: ScoreFn, x, t: float, dt: float, rng: np.random.Generator):
        p = temper(self.probs(score_fn, x, t, dt), self.graph.vocab, self.temperature)
        return sample_categorical(p, rng.random(x.shape))


@PREDICTORS.register("euler")
class EulerPredictor(Predictor):
    """x_{t-dt} ~ delta_x + dt sigma(t) R_t(x, .), R(x -> y) = s_y Q[x, y]."""

    name = "euler"

    def probs(self, score_fn, x, t, dt):
        sigma_bar, sigma = self.schedule(np.full(len(x), t))
        rate = self.graph.reverse_rate(x, score_fn(x, sigma_bar))
        onehot = (np.arange(self.graph.dim) == x[..., None]).astype(np.float64)
        return onehot + (dt * sigma).reshape(-1, 1, 1) * rate


@PREDICTORS.register("analytic")
class AnalyticPredictor(Predictor):
    """Tweedie tau-leaping: p(y) ~ [exp(-d Q) s]_y exp(d Q)(x, y), d = sigma_bar(t) -
    sigma_bar(t - dt); exact when the score is."""

    name = "analytic"

    def probs(self, score_fn, x, t, dt):
        now = self.schedule.total(np.full(len(x), t))
        delta = now - self.schedule.total(np.full(len(x), t - dt))
        stag = self.graph.staggered_score(score_fn(x, now), delta)
        return stag * self.graph.transp_transition(x, delta)


@PREDICTORS.register("remdm")
class RemaskingPredictor(AnalyticPredictor):
    """ReMDM-cap (Wang et al. 2025, "Remasking discrete diffusion models with inference-time scaling"),
    absorbing graph only. A plain step never revisits a token, so one drawn early, from little context,
    stays however the rest turns out. Here each unmasked token is remasked with probability
    r = min(eta, (1 - a_s) / a_t) and a masked one unmasks with probability (a_s - (1 - r) a_t) / (1 - a_t),
    a = e^-sigma_bar the share unmasked at t and at the next time s, so the masked share still follows the
    schedule (r is the paper's sigma_t; the cap keeps both in [0, 1]). The token drawn is the analytic
    step's; eta = 0 is the analytic predictor's distribution. Remasking starts once t <= ``start`` (the
    paper's "switch"): before, no token changes back, so a time-independent network's output is reused
    as in the plain step (every remasking step changes tokens, so it costs an evaluation)."""

    name = "remdm"

    def __init__(
        self,
        graph: Graph,
        schedule: Schedule,
        *,
        temperature: float = 1.0,
        eta: float = DEFAULT_REMASK,
        start: float = DEFAULT_REMASK_START,
    ):
        super().__init__(graph, schedule, temperature=temperature)
        if not graph.absorbing:
            raise ConfigError(f"the remdm predictor needs the absorbing graph, not {graph.name!r}")
        self.eta, self.start = check_share(eta, "remask"), check_share(start, "remask start")

    def update(self, score_fn, x, t, dt, rng):
        kept_t, kept_s = np.exp(-self.schedule.total(np.array([t, t - dt])))
        remask = min(self.eta, 1.0, (1 - kept_s) / kept_t) if t <= self.start else 0.0
        unmask = (kept_s - (1 - remask) * kept_t) / (1 - kept_t)
        data = temper(self.probs(score_fn, x, t, dt), self.graph.vocab, self.temperature)[..., : self.graph.vocab]
        u, draw = rng.random(x.shape), sample_categorical(data, rng.random(x.shape))
        masked = x == self.graph.mask
        out = np.where(masked & (u < unmask), draw, x)
        return np.where(~masked & (u < remask), self.graph.mask, out)


def denoise(graph: Graph, schedule: Schedule, score_fn: ScoreFn, x, t: float, rng, temperature: float = 1.0):
    """Final Tweedie step from t to 0; for absorbing the MASK column is dropped so no
    MASK survives."""
    sigma_bar = schedule.total(np.full(len(x), t))
    probs = graph.staggered_score(score_fn(x, sigma_bar), sigma_bar)
    probs = probs * graph.transp_transition(x, sigma_bar)
    if graph.absorbing:
        probs = temper(probs[..., : graph.vocab], graph.vocab, temperature)
    return sample_categorical(probs, rng.random(x.shape))


def sample(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: Schedule,
    *,
    batch: int,
    length: int,
    steps: int,
    predictor: str = "analytic",
    fixed: Mapping[int, int] | None = None,
    seed: int | None = None,
    eps: float = 1e-5,
    temperature: float = 1.0,
    predictor_options: Mapping | None = None,
    on_step=None,
) -> np.ndarray:
    """Reverse the diffusion from t = 1 to eps in `steps` uniform steps, then denoise.
    `fixed` maps positions to token ids that are written back before every step;
    `temperature` (absorbing graph only) sharpens or flattens each unmasking's choice;
    `predictor_options` go to the predictor (remdm's ``eta`` and ``start``)."""
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if batch < 1 or length < 1:
        raise ValueError("batch and length must be >= 1")
    pos, vals = _fixed_arrays(fixed or {}, length, graph.vocab)
    rng = np.random.default_rng(seed)
    # a predictor written before temperatures existed still loads: it is asked only for T != 1
    options = dict(predictor_options or {}) | ({"temperature": temperature} if temperature != 1 else {})
    step = PREDICTORS.create(predictor, graph, schedule, **options)
    x = graph.sample_limit((batch, length), rng)
    times = np.linspace(1.0, eps, steps + 1)
    dt = (1.0 - eps) / steps
    for i in range(steps):
        x[:, pos] = vals
        x = step.update(score_fn, x, float(times[i]), dt, rng)
        if on_step is not None:
            on_step(i)
    x[:, pos] = vals
    x = denoise(graph, schedule, score_fn, x, float(times[-1]), rng, temperature)
    x[:, pos] = vals
    return x


def _fixed_arrays(fixed: Mapping[int, int], length: int, vocab: int):
    pos = np.array(sorted(fixed), dtype=np.int64)
    vals = np.array([fixed[p] for p in sorted(fixed)], dtype=np.int64)
    if len(pos) and (pos.min() < 0 or pos.max() >= length):
        bad = pos[(pos < 0) | (pos >= length)][0]
        raise ValueError(f"fixed position {bad} is outside 0..{length - 1}")
    if len(vals) and (vals.min() < 0 or vals.max() >= vocab):
        raise ValueError(f"fixed token ids must be data tokens in 0..{vocab - 1}")
    return pos, vals


def conditioning(
    tokenizer, length: int, prefix: str | None = None, suffix: str | None = None, fixed: Mapping[int, str] | None = None
) -> dict[int, int]:
    """Map text constraints to {position: token id}: prefix at the start, suffix at the
    end, each fixed string starting at its position. A constraint that cannot hold (text
    outside the vocabulary, too long, overlapping different tokens) is a ConfigError."""
    out: dict[int, int] = {}

    def encode(text: str) -> list[int]:
        try:
            return tokenizer.encode(text)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def put(start: int, text: str, what: str):
        ids = encode(text)
        if start < 0 or start + len(ids) > length:
            raise ConfigError(f"{what} ({len(ids)} tokens at {start}) does not fit in length {length}")
        for k, tid in enumerate(ids):
            if out.get(start + k, tid) != tid:
                raise ConfigError(f"{what} conflicts with another constraint at position {start + k}")
            out[start + k] = tid

    if prefix:
        put(0, prefix, "prefix")
    if suffix:
        put(length - len(encode(suffix)), suffix, "suffix")
    for p, text in (fixed or {}).items():
        if not isinstance(p, (int, np.integer)):
            raise ConfigError(f"fixed position {p!r} is not an integer")
        put(int(p), text, f"fixed text at {p}")
    return out
