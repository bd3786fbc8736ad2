"""Noise schedules: total noise sigma_bar(t) and its rate sigma(t) = d sigma_bar / dt,
t in [0, 1], in float64 numpy (callers convert; sampler math stays out of the network)."""

from __future__ import annotations

import numpy as np

from .extensions import SCHEDULES


class Schedule:
    name = "base"

    def total(self, t) -> np.ndarray:
        """sigma_bar(t)."""
        raise NotImplementedError

    def rate(self, t) -> np.ndarray:
        """sigma(t) = d sigma_bar / dt."""
        raise NotImplementedError

    def __call__(self, t):
        t = np.asarray(t, dtype=np.float64)
        return self.total(t), self.rate(t)

    def config(self) -> dict:
        return {"name": self.name}


@SCHEDULES.register("loglinear")
class LogLinearNoise(Schedule):
    """sigma_bar = -log(1 - (1 - eps) t): an absorbing token is masked with probability
    (1 - eps) t, so t is the masking fraction."""

    name = "loglinear"

    def __init__(self, eps: float = 1e-3):
        self.eps = float(eps)

    def total(self, t):
        return -np.log1p(-(1 - self.eps) * np.asarray(t, dtype=np.float64))

    def rate(self, t):
        return (1 - self.eps) / (1 - (1 - self.eps) * np.asarray(t, dtype=np.float64))

    def config(self):
        return {"name": self.name, "eps": self.eps}


@SCHEDULES.register("geometric")
class GeometricNoise(Schedule):
    """sigma_bar = smin^(1-t) smax^t (the uniform graph's schedule in the paper)."""

    name = "geometric"

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def total(self, t):
        t = np.asarray(t, dtype=np.float64)
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def rate(self, t):
        return self.total(t) * (np.log(self.sigma_max) - np.log(self.sigma_min))

    def config(self):
        return {"name": self.name, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


def schedule_from_config(cfg: dict) -> Schedule:
    cfg = dict(cfg)
    return SCHEDULES.create(cfg.pop("name"), **cfg)
