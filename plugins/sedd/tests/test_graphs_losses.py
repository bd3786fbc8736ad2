"""Golden float64 tests of the forward processes, schedules and score-entropy loss."""

import numpy as np
import pytest
import torch
from engine_sedd.graphs import GRAPHS, Absorbing, finalize_log_score
from engine_sedd.schedules import SCHEDULES, GeometricNoise, LogLinearNoise


def brute_force_dse(graph, log_score, sigma_bar, x, x0):
    """sum_{y != x} Q[x, y] (s_y - r_y log s_y + K(r_y)) with r from explicit exp(sigma_bar Q)."""
    q = torch.tensor(graph.rate_matrix(), dtype=torch.float64)
    out = np.zeros(x.shape)
    for b in range(x.shape[0]):
        p = torch.linalg.matrix_exp(sigma_bar[b] * q).numpy()  # p[a, c] = p(a | c)
        for i in range(x.shape[1]):
            xt, xs = x[b, i], x0[b, i]
            for y in range(graph.dim):
                w = q[xt, y].item()
                if y == xt or w == 0:
                    continue
                r = p[y, xs] / p[xt, xs]
                ls = log_score[b, i, y]
                k = r * (np.log(r) - 1) if r > 0 else 0.0
                out[b, i] += w * (np.exp(ls) - r * ls + k)
    return out


def noisy_pair(graph, sigma_bar, rng, length=6):
    x0 = rng.integers(0, graph.vocab, size=(len(sigma_bar), length))
    probs = graph.transition_probs(x0, sigma_bar)
    cdf = probs.cumsum(-1)
    xt = (cdf < rng.random(x0.shape)[..., None]).sum(-1)
    return x0, xt


@pytest.mark.parametrize("name,n", [("uniform", 5), ("uniform", 50), ("absorbing", 7), ("absorbing", 30)])
def test_score_entropy_matches_brute_force(name, n):
    rng = np.random.default_rng(0)
    graph = GRAPHS.create(name, n)
    sigma_bar = np.array([1e-3, 0.05, 0.7, 3.0, 9.0])
    x0, xt = noisy_pair(graph, sigma_bar, rng)
    ls = rng.normal(size=xt.shape + (graph.dim,))
    ls = finalize_log_score(ls, xt, np.zeros(len(sigma_bar)))
    ours = graph.score_entropy(torch.tensor(ls), torch.tensor(sigma_bar), torch.tensor(xt), torch.tensor(x0)).numpy()
    ref = brute_force_dse(graph, ls, sigma_bar, xt, x0)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)
    assert (x0 != xt).any()


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_score_entropy_zero_at_true_ratios_and_nonnegative(name):
    rng = np.random.default_rng(1)
    graph = GRAPHS.create(name, 9)
    q = torch.tensor(graph.rate_matrix())
    sigma_bar = np.array([0.01, 0.4, 2.0, 6.0])
    x0, xt = noisy_pair(graph, sigma_bar, rng, length=8)
    true = np.zeros(xt.shape + (graph.dim,))
    for b in range(len(sigma_bar)):
        p = torch.linalg.matrix_exp(sigma_bar[b] * q).numpy()
        for i in range(xt.shape[1]):
            with np.errstate(divide="ignore"):
                true[b, i] = np.log(p[:, x0[b, i]] / p[xt[b, i], x0[b, i]])
    true = np.where(np.isfinite(true), true, -800.0)  # ratio 0: exp underflows to exactly 0
    args = (torch.tensor(sigma_bar), torch.tensor(xt), torch.tensor(x0))
    at_truth = graph.score_entropy(torch.tensor(true), *args).numpy()
    np.testing.assert_allclose(at_truth, 0.0, atol=1e-10)
    for _ in range(20):
        ls = finalize_log_score(true + rng.normal(scale=2.0, size=true.shape), xt, np.zeros(4))
        assert (graph.score_entropy(torch.tensor(ls), *args).numpy() >= -1e-12).all()


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_transitions_match_matrix_exponential(name):
    graph = GRAPHS.create(name, 6)
    q = graph.rate_matrix()
    np.testing.assert_allclose(q.sum(0), 0.0, atol=1e-15)  # columns: rates out of a state
    x0 = np.arange(graph.dim)[None, :]
    for sb in (1e-4, 0.3, 2.5):
        probs = graph.transition_probs(x0, np.array([sb]))[0]
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-14)
        p = torch.linalg.matrix_exp(sb * torch.tensor(q)).numpy()
        np.testing.assert_allclose(probs, p.T, atol=1e-12)
        np.testing.assert_allclose(graph.transp_transition(x0, np.array([sb]))[0], p, atol=1e-12)


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_reverse_rates_sum_to_zero_and_staggered_score(name):
    rng = np.random.default_rng(2)
    graph = GRAPHS.create(name, 6)
    x = rng.integers(0, graph.dim, size=(3, 5))
    score = np.exp(rng.normal(size=(3, 5, graph.dim)))
    rate = graph.reverse_rate(x, score)
    np.testing.assert_allclose(rate.sum(-1), 0.0, atol=1e-12)
    off = np.where(np.arange(graph.dim) == x[..., None], 0.0, rate)
    assert (off >= 0).all()
    delta = np.array([0.1, 0.5, 1.0])
    stag = graph.staggered_score(score, delta)
    for b in range(3):
        m = torch.linalg.matrix_exp(-delta[b] * torch.tensor(graph.rate_matrix())).numpy()
        np.testing.assert_allclose(stag[b], score[b] @ m.T, rtol=1e-12)


@pytest.mark.parametrize("schedule", [LogLinearNoise(), GeometricNoise()])
def test_schedule_derivative_by_finite_differences(schedule):
    t = np.linspace(0.01, 0.99, 41)
    h = 1e-6
    fd = (schedule.total(t + h) - schedule.total(t - h)) / (2 * h)
    np.testing.assert_allclose(schedule.rate(t), fd, rtol=1e-6)
    assert (np.diff(schedule.total(t)) > 0).all()


def test_loglinear_masks_fraction_t():
    s = LogLinearNoise(eps=1e-3)
    t = np.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(-np.expm1(-s.total(t)), (1 - 1e-3) * t, rtol=1e-13)


def test_registries_are_extensible():
    from engine_sedd.extensions import Registry

    assert {"uniform", "absorbing"} <= set(GRAPHS.names())
    assert {"loglinear", "geometric"} <= set(SCHEDULES.names())
    reg = Registry("thing")

    @reg.register("mine")
    class Mine:
        pass

    assert reg.get("mine") is Mine
    with pytest.raises(KeyError, match="unknown thing 'other'"):
        reg.get("other")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("mine", object())


def test_absorbing_init_identity():
    """Zero-initialised output layer: the loss is exactly L (1 - eps) ln V per sequence for
    the log-linear schedule (sigma r = 1/t, masking probability (1 - eps) t)."""
    from engine_sedd.losses import sedd_loss
    from engine_sedd.model import ModelConfig, ScoreNet

    torch.manual_seed(0)
    vocab, length, eps = 8, 32, 1e-3
    graph, schedule = Absorbing(vocab), LogLinearNoise(eps)
    net = ScoreNet(ModelConfig(vocab=graph.dim, hidden=32, blocks=1, heads=2, cond=16))
    x0 = torch.randint(0, vocab, (4000, length))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        loss = sedd_loss(net, graph, schedule, x0, generator=g, eps=eps)
    expected = length * (1 - eps) * np.log(vocab)
    se = loss.std().item() / np.sqrt(len(loss))
    assert abs(loss.mean().item() - expected) < 4 * se
    # exact per sequence: each masked position contributes ln V / t
    t = torch.full((3,), 0.5, dtype=torch.float64)
    sb = torch.as_tensor(schedule.total(t.numpy()))
    xt = graph.sample_transition(x0[:3], sb, torch.Generator().manual_seed(5))
    with torch.no_grad():
        per = sedd_loss(net, graph, schedule, x0[:3], t=t, generator=torch.Generator().manual_seed(5))
    masked = (xt == graph.mask).sum(-1).double()
    assert masked.min() > 0
    np.testing.assert_allclose(per.numpy(), (masked * np.log(vocab) / 0.5).numpy(), rtol=1e-9)
