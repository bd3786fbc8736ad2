"""A stationary Markov chain with known entropy and its exact absorbing-diffusion score:
the oracle for SEDD's samplers and likelihood bound. For the absorbing graph the true
ratio at a masked position is p0(x_i = y | visible tokens) / (e^sigma_bar - 1); for a
Markov chain that posterior only involves the nearest visible token on each side."""

from __future__ import annotations

import numpy as np


class MarkovChain:
    def __init__(self, vocab: int = 8, seed: int = 0, concentration: float = 0.3):
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.T = rng.dirichlet(np.full(vocab, concentration), size=vocab)  # T[a, b] = p(b | a)
        w, v = np.linalg.eig(self.T.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1))])
        self.pi = pi / pi.sum()

    def entropy(self, length: int) -> float:
        """Exact entropy (nats) of a length-`length` sequence started from stationarity."""
        h_row = -(self.T * np.log(np.where(self.T > 0, self.T, 1.0))).sum(1)
        h_pi = -(self.pi * np.log(self.pi)).sum()
        return float(h_pi + (length - 1) * self.pi @ h_row)

    def sample(self, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
        x = np.empty((n, length), dtype=np.int64)
        cdf = np.cumsum(self.T, 1)
        x[:, 0] = (np.cumsum(self.pi)[None] < rng.random((n, 1))).sum(1)
        for i in range(1, length):
            x[:, i] = (cdf[x[:, i - 1]] < rng.random((n, 1))).sum(1)
        return np.minimum(x, self.vocab - 1)

    def nll(self, x: np.ndarray) -> np.ndarray:
        return -(np.log(self.pi[x[:, 0]]) + np.log(self.T[x[:, :-1], x[:, 1:]]).sum(1))

    def masked_posterior(self, x: np.ndarray, mask: int) -> np.ndarray:
        """p0(x_i = y | unmasked tokens) for every position: (B, L, vocab). Only the
        nearest visible token on each side matters (Markov property)."""
        b, length = x.shape
        powers = [np.eye(self.vocab)]
        for _ in range(length):
            powers.append(powers[-1] @ self.T)
        powers = np.stack(powers)  # powers[k] = T^k
        pi_pow = self.pi @ powers  # marginal at position k
        pos = np.arange(length)
        seen = x != mask
        left = np.maximum.accumulate(np.where(seen, pos, -1), axis=1)
        right = np.minimum.accumulate(np.where(seen, pos, length)[:, ::-1], axis=1)[:, ::-1]
        rows = np.arange(b)[:, None]
        top = self.vocab - 1  # where no visible token exists the gathered value is unused
        xl = np.minimum(x[rows, np.clip(left, 0, None)], top)
        xr = np.minimum(x[rows, np.clip(right, None, length - 1)], top)
        p = np.where((left >= 0)[..., None], powers[np.clip(pos - left, 0, length), xl], pi_pow[pos][None])
        back = powers[np.clip(right - pos, 0, length)].transpose(0, 1, 3, 2)[rows, pos, xr]
        p = p * np.where((right < length)[..., None], back, 1.0)
        p = p / p.sum(-1, keepdims=True)
        return np.where(seen[..., None], np.eye(self.vocab)[np.where(seen, x, 0)], p)

    def absorbing_score(self, x: np.ndarray, sigma_bar: np.ndarray) -> np.ndarray:
        """Exact concrete scores (B, L, vocab + 1) for the absorbing graph; entries that
        carry no weight in the samplers (unmasked rows, MASK column) are 1."""
        post = self.masked_posterior(x, self.vocab)
        ratio = post / np.expm1(np.asarray(sigma_bar, dtype=np.float64)).reshape(-1, 1, 1)
        s = np.ones(x.shape + (self.vocab + 1,))
        masked = (x == self.vocab)[..., None]
        s[..., : self.vocab] = np.where(masked, ratio, 1.0)
        return s

    def transition_kl(self, samples: np.ndarray) -> float:
        """KL(empirical bigram transitions of the samples || T), weighted by the
        empirical frequency of the previous token."""
        counts = np.zeros((self.vocab, self.vocab))
        np.add.at(counts, (samples[:, :-1].ravel(), samples[:, 1:].ravel()), 1)
        rows = counts.sum(1, keepdims=True)
        emp = counts / np.maximum(rows, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(counts > 0, emp * np.log(emp / self.T), 0.0)
        return float((rows[:, 0] / rows.sum()) @ terms.sum(1))


class OracleNet:
    """Torch-callable stand-in for a ScoreNet whose raw output, after the absorbing
    graph's shift, is the exact log score (raw = log p0(y | visible) + log V)."""

    def __init__(self, chain: MarkovChain):
        self.chain = chain

    def eval(self):
        return self

    def __call__(self, tokens, sigma_bar):
        import torch

        post = self.chain.masked_posterior(tokens.numpy(), self.chain.vocab)
        with np.errstate(divide="ignore"):
            raw = np.log(post) + np.log(self.chain.vocab)
        raw = np.concatenate([np.maximum(raw, -700.0), np.zeros(raw.shape[:-1] + (1,))], -1)
        return torch.from_numpy(raw)
