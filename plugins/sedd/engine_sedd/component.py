"""The SEDD sampler component, independent of the back end. Subclasses supply the
network's raw output (torch in torch_path.py, onnxruntime in ort_path.py); the sigma
scaling, the predictors, the random draws and the text handling are shared, so both back
ends return the same tokens for the same seed. No torch here."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engine.interfaces import ConfigError, Sampler, SampleResult, SampleStats, SamplingConfig

from .graphs import finalize_log_score, graph_from_config
from .sampling import conditioning, sample
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
        hint = " (train one with `engine train sedd`)" if model is None else ""
        raise FileNotFoundError(f"no SEDD model at {path}{hint}")
    return path


class SEDDSamplerBase(Sampler):
    def __init__(self, config: dict):
        if config.get("objective", "sedd") != "sedd":
            raise ConfigError("this model folder holds an autoregressive baseline, not a SEDD model")
        self.config = config
        self.graph = graph_from_config(config["graph"])
        self.schedule = schedule_from_config(config["schedule"])
        self.tokenizer = tokenizer_from_dict(config["tokenizer"])
        self.max_len = int(config["model"]["max_len"])

    def raw_output(self, x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
        """Network output (B, L, N) for tokens x (B, L) int64 at noise sigma_bar (B,)."""
        raise NotImplementedError

    def score(self, x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
        """Concrete scores in float64 (the graph's shift is applied here, not in the network)."""
        raw = np.asarray(self.raw_output(x, sigma_bar), dtype=np.float64)
        return np.exp(finalize_log_score(raw, x, self.graph.log_score_shift(sigma_bar)))

    def sample_tokens(self, config: SamplingConfig, on_step=None) -> np.ndarray:
        if config.length > self.max_len:
            raise ConfigError(f"length {config.length} exceeds the model's maximum {self.max_len}")
        fixed = conditioning(self.tokenizer, config.length, config.prefix, config.suffix, config.fixed)
        return sample(
            self.score,
            self.graph,
            self.schedule,
            batch=config.num_samples,
            length=config.length,
            steps=config.steps,
            predictor=config.predictor,
            fixed=fixed,
            seed=config.seed,
            on_step=on_step,
        )

    def sample(self, config: SamplingConfig | Mapping | None = None, on_step=None) -> SampleResult:
        """Draw ``config.num_samples`` texts; ``on_step(i)`` is called after each denoising step."""
        config = as_sampling_config(config)
        start = time.perf_counter()
        x = self.sample_tokens(config, on_step)
        seconds = time.perf_counter() - start
        return SampleResult(
            texts=[self.tokenizer.decode(row) for row in x.tolist()],
            tokens=x.tolist(),
            stats=SampleStats(steps=config.steps, seconds=seconds),
        )


def as_sampling_config(config) -> SamplingConfig:
    if config is None:
        return SamplingConfig()
    if isinstance(config, SamplingConfig):
        return config
    if isinstance(config, Mapping):
        return SamplingConfig(**config)
    raise TypeError(f"config must be a SamplingConfig or a mapping, got {type(config).__name__}")
