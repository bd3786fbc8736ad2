"""The SEDD sampler component, independent of the back end. Subclasses supply the
network's raw output (torch in torch_path.py, onnxruntime in ort_path.py); the sigma
scaling, the predictors, the random draws and the text handling are shared, so both back
ends return the same tokens for the same seed. No torch here."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engine.interfaces import ConfigError, Sampler, SampleResult, SampleStats, SamplingConfig, as_config

from .graphs import graph_from_config, log_concrete_score
from .options import check_share
from .sampling import DEFAULT_REMASK, DEFAULT_REMASK_START, conditioning, sample
from .schedules import schedule_from_config
from .text import tokenizer_from_dict

PACKAGE = Path(__file__).resolve().parent
DEFAULT_MODEL = PACKAGE / "weights" / "default"
DEFAULT_AR = PACKAGE / "weights" / "ar_baseline"
DEFAULT_ARTIFACT = PACKAGE / "artifacts" / "default"


def resolve_model(model=None) -> Path:
    """The model folder ``model`` names (default: the bundled SEDD model)."""
    path = Path(model) if model else DEFAULT_MODEL
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"no SEDD model at {path}: a model folder holds config.json and model.safetensors "
            "(train one with `engine train sedd`)"
        )
    return path


class CachedNetwork:
    """The network as the sampler calls it, counting evaluations. With ``reuse``, a sequence is
    sent to the network only when its output can have changed: for a time-independent network
    (RADD) only when one of its tokens changed since its last evaluation, and on the absorbing
    graph never once nothing in it is masked (the samplers then keep every token whatever the
    score). The other rows keep their last output, so the tokens drawn are the same. On the absorbing
    graph the samplers read the output only at masked positions (an unmasked token stays whatever its
    score), so with ``reuse`` and ``raw_output_at`` only those positions are computed; the others keep
    finite stale values that nothing reads."""

    def __init__(self, raw_output, graph, *, time_independent: bool, reuse: bool = True, raw_output_at=None):
        self.raw_output, self.graph = raw_output, graph
        self.reuse = reuse
        self.reuse_last = reuse and time_independent
        self.raw_output_at = raw_output_at if reuse and graph.absorbing else None
        self.calls = 0  # network invocations (of any batch size)
        self.evals: np.ndarray | None = None  # evaluations of each sequence
        self._x = self._raw = None

    def __call__(self, x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
        sigma_bar = np.broadcast_to(np.asarray(sigma_bar, dtype=np.float64), (len(x),)).copy()
        if self._raw is None or self._x.shape != x.shape:
            self._raw = np.zeros(x.shape + (self.graph.dim,))
            self._x, self.evals = None, np.zeros(len(x), dtype=np.int64)
        need = np.ones(len(x), dtype=bool)
        if self.reuse and self.graph.absorbing:
            need &= (x == self.graph.mask).any(-1)
        if self.reuse_last and self._x is not None:
            need &= (x != self._x).any(-1)
        if self.raw_output_at is not None and need.any():
            self._evaluate_masked(x, sigma_bar, np.flatnonzero(need))
        elif need.all():
            self._raw = np.asarray(self.raw_output(x, sigma_bar), dtype=np.float64)
        elif need.any():
            self._raw[need] = self.raw_output(np.ascontiguousarray(x[need]), sigma_bar[need])
        self.calls += int(need.any())
        self.evals += need
        self._x = x.copy()
        return self._raw

    def _evaluate_masked(self, x, sigma_bar, seqs):
        """The output of sequences ``seqs`` at their masked positions (each has one), padded to the
        longest with the sequence's first masked position; the padding's output is dropped."""
        masked = x[seqs] == self.graph.mask
        counts = masked.sum(1)
        rows = np.argsort(~masked, axis=1, kind="stable")[:, : counts.max()]  # masked positions, in order
        valid = np.arange(rows.shape[1]) < counts[:, None]
        rows = np.where(valid, rows, rows[:, :1])
        out = self.raw_output_at(np.ascontiguousarray(x[seqs]), sigma_bar[seqs], rows)
        self._raw[np.repeat(seqs, counts), rows[valid]] = out[valid]


class SEDDSamplerBase(Sampler):
    def __init__(
        self, config: dict, *, cache: bool = True, remask: float | None = None, remask_start: float | None = None
    ):
        if config.get("objective", "sedd") != "sedd":
            raise ConfigError("this model folder holds an autoregressive baseline, not a SEDD model")
        self.config = config
        self.graph = graph_from_config(config["graph"])
        self.schedule = schedule_from_config(config["schedule"])
        self.tokenizer = tokenizer_from_dict(config["tokenizer"])
        self.max_len = int(config["model"]["max_len"])
        #: RADD: the network has no time input and outputs p0(token | unmasked tokens)
        self.radd = not config["model"].get("time_conditioning", True)
        self.cache = bool(cache)
        #: the remdm predictor's cap on the share of unmasked tokens remasked per step (None: its default)
        self.remask = None if remask is None else check_share(remask, "remask")
        #: the time (masked share) from which it remasks (None: its default)
        self.remask_start = None if remask_start is None else check_share(remask_start, "remask start")
        #: network invocations in the last sample() call, and how often each sequence was evaluated
        self.network_calls, self.network_evals = 0, np.zeros(0, dtype=np.int64)

    def draw_rule(self, config: SamplingConfig) -> tuple[str, dict]:
        """The predictor a draw uses and its options: the config's, else remdm (better samples than the plain
        analytic step at the issue's samples/s since the network answers only at masked positions:
        MODEL_CARD.md, "Output rows")."""
        chosen = {"eta": self.remask, "start": self.remask_start}
        remasking = any(v is not None for v in chosen.values())
        predictor = config.predictor or "remdm"
        if predictor == "remdm":
            defaults = {"eta": DEFAULT_REMASK, "start": DEFAULT_REMASK_START}
            return predictor, {k: defaults[k] if v is None else v for k, v in chosen.items()}
        if remasking:
            raise ConfigError(
                f"remask options (--remask, --remask-start) apply to the remdm predictor, not {predictor!r}"
            )
        return predictor, {}

    def raw_output(self, x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
        """Network output (B, L, N) for tokens x (B, L) int64 at noise sigma_bar (B,)."""
        raise NotImplementedError

    def raw_output_at(self, x: np.ndarray, sigma_bar: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The network output (B, M, N) at positions ``rows`` (B, M) only; here the whole output,
        gathered (a back end whose network computes only those rows overrides it)."""
        return np.take_along_axis(np.asarray(self.raw_output(x, sigma_bar)), rows[..., None], axis=1)

    def _rows_method(self):
        """raw_output_at, unless a subclass replaced raw_output below the class that computes the rows
        (then raw_output is the network, and rows are not computed apart)."""

        def owner(name):
            return next(c for c in type(self).__mro__ if name in c.__dict__)

        return self.raw_output_at if issubclass(owner("raw_output_at"), owner("raw_output")) else None

    def score_fn(self, network=None):
        """Concrete scores in float64 from ``network`` (default: raw_output); the graph's
        parametrisation (SEDD scaling or RADD's factorisation) is applied here, not in the network."""
        network = network or self.raw_output

        def score(x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
            raw = np.asarray(network(x, sigma_bar), dtype=np.float64)
            return np.exp(log_concrete_score(self.graph, raw, x, sigma_bar, self.radd))

        return score

    def score(self, x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
        """Concrete scores in float64 (one network evaluation)."""
        return self.score_fn()(x, sigma_bar)

    def sample_tokens(self, config: SamplingConfig, on_step=None) -> np.ndarray:
        if config.length > self.max_len:
            raise ConfigError(f"length {config.length} exceeds the model's maximum {self.max_len}")
        fixed = conditioning(self.tokenizer, config.length, config.prefix, config.suffix, config.fixed)
        predictor, predictor_options = self.draw_rule(config)
        network = CachedNetwork(
            self.raw_output, self.graph, time_independent=self.radd, reuse=self.cache, raw_output_at=self._rows_method()
        )
        x = sample(
            self.score_fn(network),
            self.graph,
            self.schedule,
            batch=config.num_samples,
            length=config.length,
            steps=config.steps,
            predictor=predictor,
            fixed=fixed,
            seed=config.seed,
            temperature=config.temperature,
            predictor_options=predictor_options,
            on_step=on_step,
        )
        self.network_calls, self.network_evals = network.calls, network.evals
        return x

    def sample(self, config: SamplingConfig | Mapping | None = None, on_step=None) -> SampleResult:
        """Draw ``config.num_samples`` texts; ``on_step(i)`` is called after each denoising step."""
        config = as_config(SamplingConfig, config)
        start = time.perf_counter()
        with self.progress(total=config.steps, desc="sample") as steps:  # host observers, cancellation

            def step(i):
                steps.update()
                if on_step is not None:
                    on_step(i)

            x = self.sample_tokens(config, step)
        seconds = time.perf_counter() - start
        return SampleResult(
            texts=[self.tokenizer.decode(row) for row in x.tolist()],
            tokens=x.tolist(),
            stats=SampleStats(steps=config.steps, seconds=seconds, network_calls=self.network_calls),
        )
