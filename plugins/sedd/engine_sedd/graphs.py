"""Forward processes ("graphs") of SEDD: p_t|0 = exp(sigma_bar Q), tokens independent.

Convention: Q[a, b] is the rate of a jump b -> a (columns sum to 0), so the denoising
score-entropy weight of the ratio s_y at state x is Q[x, y] and the reverse rate
x -> y is s_y Q[x, y].

Two halves: torch ops for training (forward noising, score entropy; torch imported
lazily), and float64 numpy ops for sampling (shared by the torch and onnxruntime
samplers, so both give the same tokens for the same random draws).
"""

from __future__ import annotations

import numpy as np

from .extensions import GRAPHS


def _torch():
    import torch

    return torch


def finalize_log_score(raw, x, shift):
    """Turn raw network output into log concrete scores: subtract the graph's
    sigma-dependent shift (one value per sequence) and force log s[x_t] = 0 (ratio 1).
    Works on torch tensors and numpy arrays alike, so training and both samplers share it."""
    xp = np if isinstance(raw, np.ndarray) else _torch()
    out = raw - shift.reshape(-1, 1, 1)
    index = np.arange(raw.shape[-1]) if xp is np else xp.arange(raw.shape[-1], device=x.device)  # x's device (GPU)
    own = index.reshape(1, 1, -1) == x[..., None]
    return xp.where(own, xp.zeros_like(out), out)


def _log_softmax_data(raw, vocab: int):
    """RADD: log_softmax over the first `vocab` outputs (the clean-data tokens); the other
    columns (MASK) become 0 (they carry no weight: the x_t entry or an unmasked row)."""
    if isinstance(raw, np.ndarray):
        z = raw[..., :vocab]
        top = z.max(-1, keepdims=True)
        logp = z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))
        return np.concatenate([logp, np.zeros_like(raw[..., vocab:])], axis=-1)
    torch = _torch()
    return torch.cat([torch.log_softmax(raw[..., :vocab], -1), torch.zeros_like(raw[..., vocab:])], -1)


def log_concrete_score(graph: Graph, raw, x, sigma_bar, radd: bool = False):
    """Log concrete scores from the network's raw output (numpy or torch; sigma_bar (B,) numpy).

    SEDD: log s = raw - log(e^sigma_bar - 1) - log(N - 1) (absorbing; the "scaling trick").
    RADD (absorbing only): raw holds logits of p0(y | unmasked tokens), a distribution that does
    not depend on t, and s_y = p0(y | ...) e^-sigma_bar / (1 - e^-sigma_bar), i.e.
    log s_y = log_softmax(raw)_y - log(e^sigma_bar - 1). Either way the x_t entry is 0."""
    if radd:
        if not graph.absorbing:
            from engine.interfaces import ConfigError

            raise ConfigError(f"the RADD parametrisation needs the absorbing graph, not {graph.name!r}")
        raw = _log_softmax_data(raw, graph.vocab)
    shift = graph.log_score_shift(sigma_bar, normalized=radd)
    if not isinstance(raw, np.ndarray):
        shift = _torch().as_tensor(shift, dtype=raw.dtype, device=raw.device)
    return finalize_log_score(raw, x, shift)


class Graph:
    """A forward process on N states; `vocab` data tokens (N = vocab + 1 with MASK)."""

    name = "base"
    absorbing = False

    def __init__(self, vocab: int):
        if vocab < 2:
            raise ValueError("a graph needs at least 2 tokens")
        self.vocab = int(vocab)

    dim: int

    def config(self) -> dict:
        return {"name": self.name, "vocab": self.vocab}

    # ---- explicit forms (tests, small N)
    def rate_matrix(self) -> np.ndarray:
        raise NotImplementedError

    def transition_probs(self, x0: np.ndarray, sigma_bar) -> np.ndarray:
        """p_t|0(. | x0) for every token of x0: shape x0.shape + (N,), rows sum to 1."""
        raise NotImplementedError

    # ---- training (torch)
    def sample_transition(self, x0, sigma_bar, generator=None):
        """Draw x_t ~ p_t|0(. | x0); sigma_bar has shape (B,)."""
        raise NotImplementedError

    def score_entropy(self, log_score, sigma_bar, x, x0):
        """Denoising score entropy per position, K term included, without the sigma(t)
        factor: sum_{y != x} Q[x, y] (s_y - r_y log s_y + K(r_y)), r_y = p(y|x0)/p(x|x0)."""
        raise NotImplementedError

    def log_score_shift(self, sigma_bar: np.ndarray, normalized: bool = False) -> np.ndarray:
        """Per-sequence value subtracted from the raw output (parameterisation); `normalized`:
        the output is already a log-distribution of clean data (RADD)."""
        return np.zeros_like(np.asarray(sigma_bar, dtype=np.float64))

    # ---- sampling (float64 numpy)
    def sample_limit(self, shape, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def transp_rate(self, x: np.ndarray) -> np.ndarray:
        """Q[x, :] for every position: shape x.shape + (N,)."""
        raise NotImplementedError

    def reverse_rate(self, x: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Reverse-time rate matrix rows R(x -> y) = s_y Q[x, y], diagonal = -sum; rows sum to 0."""
        rate = self.transp_rate(x) * score
        own = np.arange(self.dim) == x[..., None]
        rate = np.where(own, 0.0, rate)
        return np.where(own, -rate.sum(-1, keepdims=True), rate)

    def staggered_score(self, score: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """exp(-delta Q) s (delta per sequence)."""
        raise NotImplementedError

    def transp_transition(self, x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
        """exp(sigma_bar Q)[x, :], i.e. p(x | y) for every y."""
        raise NotImplementedError


def _col(v, like_ndim: int):
    """Per-sequence values (B,) -> broadcastable (B, 1, ...) of rank like_ndim."""
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return v.reshape((-1,) + (1,) * (like_ndim - 1))


@GRAPHS.register("uniform")
class Uniform(Graph):
    """Q = (1/N)(11^T - N I): with probability 1 - e^-sigma_bar a token is replaced by a
    uniform draw (possibly itself)."""

    name = "uniform"

    @property
    def dim(self):
        return self.vocab

    def rate_matrix(self):
        n = self.dim
        return np.full((n, n), 1.0 / n) - np.eye(n)

    def transition_probs(self, x0, sigma_bar):
        x0 = np.asarray(x0)
        keep = np.exp(-_col(sigma_bar, x0.ndim + 1))
        onehot = (np.arange(self.dim) == x0[..., None]).astype(np.float64)
        return keep * onehot + (1 - keep) / self.dim

    def sample_transition(self, x0, sigma_bar, generator=None):
        torch = _torch()
        move = -torch.expm1(-sigma_bar)[:, None]
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        noise = torch.randint(0, self.dim, x0.shape, generator=generator, device=x0.device)
        return torch.where(u < move, noise, x0)

    def score_entropy(self, log_score, sigma_bar, x, x0):
        torch = _torch()
        n = self.dim
        esm1 = torch.expm1(sigma_bar)[:, None]
        ratio = esm1 / (esm1 + n)  # r_y when x == x0 (all y != x)
        ls_x = log_score.gather(-1, x[..., None]).squeeze(-1)
        ls_x0 = log_score.gather(-1, x0[..., None]).squeeze(-1)
        sum_ls = log_score.sum(-1) - ls_x  # sum over y != x of log s_y
        sum_s = log_score.exp().sum(-1) - ls_x.exp()  # sum over y != x of s_y
        same = x == x0
        # x == x0: r_y = ratio for all y != x.  x != x0: r_y = 1 except r_x0 = 1 + n / esm1.
        neg = torch.where(same, ratio * sum_ls, sum_ls + n * ls_x0 / esm1)
        r0 = 1 + n / esm1
        const = torch.where(same, (n - 1) * ratio * (torch.log(ratio) - 1), r0 * (torch.log(r0) - 1) - (n - 2))
        return (sum_s - neg + const) / n

    def sample_limit(self, shape, rng):
        return rng.integers(0, self.dim, size=shape, dtype=np.int64)

    def transp_rate(self, x):
        rate = np.full(x.shape + (self.dim,), 1.0 / self.dim)
        return np.where(np.arange(self.dim) == x[..., None], 1.0 / self.dim - 1.0, rate)

    def staggered_score(self, score, delta):
        ed = np.exp(_col(delta, score.ndim))
        return ed * score + (1 - ed) * score.mean(-1, keepdims=True)

    def transp_transition(self, x, sigma_bar):
        return self.transition_probs(x, sigma_bar)  # Q symmetric


@GRAPHS.register("absorbing")
class Absorbing(Graph):
    """Every token jumps to MASK (index `vocab`) at rate 1: masked w.p. 1 - e^-sigma_bar."""

    name = "absorbing"
    absorbing = True

    @property
    def dim(self):
        return self.vocab + 1

    @property
    def mask(self):
        return self.vocab

    def rate_matrix(self):
        q = -np.eye(self.dim)
        q[self.mask, :] += 1.0
        return q

    def transition_probs(self, x0, sigma_bar):
        x0 = np.asarray(x0)
        keep = np.exp(-_col(sigma_bar, x0.ndim + 1))
        onehot = (np.arange(self.dim) == x0[..., None]).astype(np.float64)
        masked = (np.arange(self.dim) == self.mask).astype(np.float64)
        probs = keep * onehot + (1 - keep) * masked
        return np.where((x0 == self.mask)[..., None], masked, probs)

    def sample_transition(self, x0, sigma_bar, generator=None):
        torch = _torch()
        move = -torch.expm1(-sigma_bar)[:, None]
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        return torch.where(u < move, torch.full_like(x0, self.mask), x0)

    def score_entropy(self, log_score, sigma_bar, x, x0):
        torch = _torch()
        r = 1.0 / torch.expm1(sigma_bar)[:, None]  # p(x0|x0) / p(MASK|x0)
        pos = log_score[..., : self.mask].exp().sum(-1)
        neg = r * log_score.gather(-1, x0[..., None]).squeeze(-1)
        const = r * (torch.log(r) - 1)
        return torch.where(x == self.mask, pos - neg + const, torch.zeros_like(pos))

    def log_score_shift(self, sigma_bar, normalized=False):
        # Ratios at a masked position are p0(y | ...) / (e^sigma_bar - 1): let the net learn p0(y).
        sb = np.asarray(sigma_bar, dtype=np.float64)
        return np.log(np.expm1(sb)) + (0.0 if normalized else np.log(self.dim - 1))

    def sample_limit(self, shape, rng):
        return np.full(shape, self.mask, dtype=np.int64)

    def transp_rate(self, x):
        rate = np.where((x == self.mask)[..., None], 1.0, 0.0) * np.ones(self.dim)
        own = np.arange(self.dim) == x[..., None]
        return np.where(own, np.where((x == self.mask)[..., None], 0.0, -1.0), rate)

    def staggered_score(self, score, delta):
        ed = np.exp(_col(delta, score.ndim))
        out = ed * score
        out[..., self.mask] += ((1 - ed) * score.sum(-1, keepdims=True))[..., 0]
        return out

    def transp_transition(self, x, sigma_bar):
        keep = np.exp(-_col(sigma_bar, x.ndim + 1))
        onehot = (np.arange(self.dim) == x[..., None]).astype(np.float64)
        return keep * onehot + np.where((x == self.mask)[..., None], 1 - keep, 0.0)


def graph_from_config(cfg: dict) -> Graph:
    cfg = dict(cfg)
    return GRAPHS.create(cfg.pop("name"), **cfg)
