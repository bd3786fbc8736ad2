"""Sampling temperature: each unmasking's choice of token is tempered, its timing is not."""

import numpy as np
import pytest
from engine_sedd.graphs import Absorbing, Uniform
from engine_sedd.markov import MarkovChain
from engine_sedd.sampling import sample, temper
from engine_sedd.schedules import GeometricNoise, LogLinearNoise

from engine.interfaces import ConfigError, SamplingConfig

V, L = 6, 32


def test_temper_keeps_each_rows_data_mass_and_mask_column_and_sharpens():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(V + 1), size=(4, 5))
    cold = temper(probs, V, 0.5)
    np.testing.assert_allclose(cold[..., :V].sum(-1), probs[..., :V].sum(-1), rtol=1e-12)
    np.testing.assert_array_equal(cold[..., V], probs[..., V])
    expected = (
        probs[..., :V] ** 2 / (probs[..., :V] ** 2).sum(-1, keepdims=True) * probs[..., :V].sum(-1, keepdims=True)
    )
    np.testing.assert_allclose(cold[..., :V], expected, rtol=1e-10)
    assert temper(probs, V, 1.0) is probs
    onehot = np.eye(V + 1)[[2]]  # an unmasked position, and a row with no data mass, stay as they are
    np.testing.assert_array_equal(temper(onehot, V, 0.3), onehot)
    np.testing.assert_array_equal(temper(np.eye(V + 1)[[V]], V, 0.3), np.eye(V + 1)[[V]])


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
def test_independent_tokens_come_out_with_probabilities_to_the_power_one_over_t(predictor):
    """With i.i.d. positions, p0(y | anything unmasked) = p(y), so a sampler at temperature T must
    draw tokens with frequencies p ** (1 / T) (normalised), whatever the order of unmasking."""
    chain = MarkovChain(V, seed=1)
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    chain.T, chain.pi = np.tile(p, (V, 1)), p
    for temperature in (0.5, 2.0):
        x = sample(
            chain.absorbing_score,
            Absorbing(V),
            LogLinearNoise(),
            batch=512,
            length=L,
            steps=32,
            predictor=predictor,
            seed=0,
            temperature=temperature,
        )
        want = p ** (1 / temperature) / (p ** (1 / temperature)).sum()
        np.testing.assert_allclose(np.bincount(x.ravel(), minlength=V) / x.size, want, atol=0.012)


def test_temperature_needs_the_absorbing_graph_and_a_positive_finite_value():
    with pytest.raises(ConfigError, match="needs the absorbing graph"):
        sample(
            lambda x, s: np.ones((*x.shape, V)),
            Uniform(V),
            GeometricNoise(),
            batch=1,
            length=4,
            steps=2,
            temperature=0.7,
        )
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
            SamplingConfig(temperature=bad)
