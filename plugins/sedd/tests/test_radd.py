"""RADD (Ou et al. 2024): the time-independent absorbing parametrisation, its loss and ELBO
from the shared code, and the sampler that reuses the network output while no token changes."""

import itertools

import numpy as np
import pytest
import torch
from engine_sedd.component import SEDDSamplerBase
from engine_sedd.graphs import Absorbing, Uniform, log_concrete_score
from engine_sedd.likelihood import sedd_bounds
from engine_sedd.losses import sedd_loss
from engine_sedd.markov import MarkovChain, OracleNet
from engine_sedd.model import ModelConfig, ScoreNet
from engine_sedd.schedules import LogLinearNoise
from engine_sedd.text import CharTokenizer

from engine.interfaces import ConfigError, SamplingConfig

V, L = 8, 32


@pytest.fixture(scope="module")
def chain():
    return MarkovChain(V, seed=3)


def tiny_radd(vocab: int, length: int, seed: int = 0) -> ScoreNet:
    torch.manual_seed(seed)
    net = ScoreNet(ModelConfig(vocab=vocab + 1, hidden=16, blocks=1, heads=2, cond=8, max_len=length))
    net.cfg.time_conditioning = False
    with torch.no_grad():  # a non-trivial output layer (it is zero-initialised)
        net.output.weight.normal_(0, 0.5)
        net.output.bias.normal_(0, 0.5)
        net.final_modulation.bias.normal_(0, 0.5)
    return net.eval()


def test_radd_score_is_the_sedd_score_of_the_clean_conditional(chain):
    """On a Markov chain (exact p0(y | unmasked)) the RADD score, the SEDD score formula and the
    analytic factorisation e^-sb / (1 - e^-sb) p0(y | unmasked) agree at every masked position."""
    graph = Absorbing(V)
    x = chain.sample(6, L, np.random.default_rng(1))
    x[np.random.default_rng(2).random(x.shape) < 0.6] = V
    sb = np.array([1e-4, 0.01, 0.3, 1.0, 3.0, 9.0])
    raw = OracleNet(chain)(torch.from_numpy(x), torch.from_numpy(sb)).numpy()
    exact = chain.absorbing_score(x, sb)
    post = chain.masked_posterior(x, V)
    factor = (np.exp(-sb) / -np.expm1(-sb))[:, None, None]
    masked = x == V
    for radd in (False, True):
        score = np.exp(log_concrete_score(graph, raw, x, sb, radd=radd))
        np.testing.assert_allclose(score[masked][:, :V], exact[masked][:, :V], rtol=1e-9)
        np.testing.assert_allclose(score[masked][:, :V], (factor * post)[masked], rtol=1e-9)
        assert np.all(score[masked][:, V] == 1.0)  # the x_t entry
    # torch and numpy give the same scores (training and sampling share the function)
    shifted = raw + np.random.default_rng(3).normal(size=raw.shape)  # RADD ignores a per-row constant only
    t = log_concrete_score(graph, torch.from_numpy(shifted), torch.from_numpy(x), sb, radd=True)
    np.testing.assert_allclose(t.numpy(), log_concrete_score(graph, shifted, x, sb, radd=True), rtol=1e-12)


def test_radd_needs_the_absorbing_graph():
    with pytest.raises(ConfigError, match="absorbing"):
        log_concrete_score(Uniform(4), np.zeros((1, 2, 4)), np.zeros((1, 2), dtype=np.int64), np.ones(1), radd=True)


def test_radd_loss_is_the_weighted_cross_entropy_at_masked_positions():
    """The shared score-entropy loss, under RADD, reduces to sigma(t) / (e^sigma_bar - 1) times
    the cross-entropy of p0 at masked positions (the MDLM / RADD objective)."""
    graph, schedule = Absorbing(5), LogLinearNoise()
    net = tiny_radd(5, 12)
    x0 = torch.from_numpy(np.random.default_rng(0).integers(0, 5, size=(4, 12)))
    t = torch.tensor([0.05, 0.3, 0.7, 0.99], dtype=torch.float64)
    got = sedd_loss(net, graph, schedule, x0, t=t, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)  # replay the same masking
    sigma_bar, sigma = schedule(t.numpy())
    xt = graph.sample_transition(x0, torch.as_tensor(sigma_bar), gen)
    with torch.no_grad():
        logp = torch.log_softmax(net(xt, torch.zeros(4)).double()[..., :5], -1)
    ce = -(logp.gather(-1, x0[..., None])[..., 0] * (xt == 5)).sum(-1)
    want = torch.as_tensor(sigma / np.expm1(sigma_bar)) * ce
    torch.testing.assert_close(got.detach(), want, rtol=1e-9, atol=1e-9)
    # and it does not depend on sigma_bar through the network
    assert torch.equal(net(xt, torch.full((4,), 3.0)), net(xt, torch.zeros(4)))


def test_radd_elbo_matches_brute_force_on_a_tiny_case():
    """The ELBO from likelihood.sedd_bounds (stratified t) against its exact value: a sum over
    every mask pattern of the cross-entropy times the integral over t of its weight."""
    vocab, length, eps = 3, 3, 1e-3
    graph, schedule, net = Absorbing(vocab), LogLinearNoise(eps), tiny_radd(vocab, length, seed=1)
    x0 = np.array([[2, 0, 1]])
    grid = np.linspace(eps, 1.0, 200001)
    exact = 0.0
    for pattern in itertools.product((0, 1), repeat=length):
        m = np.array(pattern, dtype=bool)
        if not m.any():
            continue
        xt = np.where(m, vocab, x0)
        with torch.no_grad():
            logp = torch.log_softmax(net(torch.from_numpy(xt), torch.zeros(1)).double()[..., :vocab], -1).numpy()
        ce = -logp[0, m, x0[0, m]].sum()
        q = (1 - eps) * grid  # masking probability; the loss weight sigma / (e^sigma_bar - 1) = 1 / t
        weight = q ** m.sum() * (1 - q) ** (length - m.sum()) / grid
        exact += ce * np.trapezoid(weight, grid) / (1 - eps)
    bound = sedd_bounds(net, graph, schedule, x0, n_times=50000, batch=50000, seed=0, eps=eps)
    assert np.isfinite(bound).all()
    assert bound[0] == pytest.approx(exact, rel=0.02)  # ~4 standard errors (the masks are random)


def test_radd_oracle_bound_brackets_entropy(chain):
    """With the exact conditional (RADD reading of the oracle) the ELBO is tight, as for SEDD."""
    data = chain.sample(160, L, np.random.default_rng(0))
    per = sedd_bounds(OracleNet(chain), Absorbing(V), LogLinearNoise(), data, n_times=8, batch=160, radd=True)
    h = chain.entropy(L)
    se = per.std(ddof=1) / np.sqrt(len(per))
    assert per.mean() >= h - 3 * se
    assert abs(per.mean() - h) < 0.02 * h


class OracleSampler(SEDDSamplerBase):
    """The sampler component on the Markov-chain oracle, read as a RADD network."""

    def __init__(self, chain, cache=True, radd=True, **options):
        tok = CharTokenizer.from_corpus("abcdefgh")
        config = {
            "graph": Absorbing(V).config(),
            "schedule": LogLinearNoise().config(),
            "tokenizer": tok.to_dict(),
            "model": {"max_len": L, "time_conditioning": not radd},
        }
        super().__init__(config, cache=cache, **options)
        self.net = OracleNet(chain)

    def raw_output(self, x, sigma_bar):
        return self.net(torch.from_numpy(x), torch.from_numpy(np.asarray(sigma_bar))).numpy()


@pytest.mark.parametrize("steps", [1, 4, 16, 64, 256])
def test_cache_bounds_network_evaluations_and_keeps_tokens(chain, steps):
    """With the plain (analytic) step each sequence is evaluated at most once per distinct partly-masked
    state of it: <= min(steps + 1, length) times (the + 1 is the final denoise step, which needs the network
    only when a MASK survived the last step), and the tokens are those drawn without the cache."""
    cached, plain = OracleSampler(chain), OracleSampler(chain, cache=False)
    for seed, batch in ((0, 1), (1, 1), (2, 5)):
        cfg = SamplingConfig(num_samples=batch, length=L, steps=steps, seed=seed, predictor="analytic")
        assert cached.sample(cfg).tokens == plain.sample(cfg).tokens
        assert plain.network_calls == steps + 1 and plain.network_evals.tolist() == [steps + 1] * batch
        assert 1 <= cached.network_calls <= steps + 1
        assert cached.network_evals.max() <= min(steps + 1, L) and cached.network_evals.min() >= 1
        if batch == 1:
            assert cached.network_calls == cached.network_evals[0]
    # infilling: clamped positions are never masked, so fewer states
    cfg = SamplingConfig(num_samples=1, length=L, steps=256, seed=0, prefix="abcdefgh", predictor="analytic")
    assert cached.sample(cfg).tokens == plain.sample(cfg).tokens
    assert cached.network_calls <= L - 8


def test_cache_keeps_the_tokens_of_remasking(chain):
    """Remasking changes tokens at most steps, so the cache saves less (<= steps + 1 evaluations, not the length)
    but still never changes what is drawn."""
    cached = OracleSampler(chain, remask_start=1.0)
    plain = OracleSampler(chain, cache=False, remask_start=1.0)
    cfg = SamplingConfig(num_samples=3, length=L, steps=64, seed=4, predictor="remdm")
    assert cached.sample(cfg).tokens == plain.sample(cfg).tokens
    assert L < cached.network_evals.max() <= 64 + 1


class RowsOracle(OracleSampler):
    """The oracle as a back end that computes the output at given positions only; records each request."""

    def __init__(self, chain, **options):
        super().__init__(chain, **options)
        self.requests = []

    def raw_output_at(self, x, sigma_bar, rows):
        self.requests.append((x.copy(), rows.copy()))
        return np.take_along_axis(self.raw_output(x, sigma_bar), rows[..., None], axis=1)


@pytest.mark.parametrize("predictor", ["analytic", "remdm", "euler"])
def test_only_masked_positions_are_computed_and_the_tokens_stay(chain, predictor):
    """The samplers read the output only where a token is masked: asked for exactly those positions of
    each sequence sent, the cache draws the tokens drawn with the whole output at every step. A subclass
    that replaces raw_output (its own network) is not bypassed by its parent's rows."""
    rows, plain = RowsOracle(chain), OracleSampler(chain, cache=False)
    cfg = SamplingConfig(num_samples=3, length=L, steps=64, seed=3, predictor=predictor)
    assert rows.sample(cfg).tokens == plain.sample(cfg).tokens
    assert rows.requests and rows.network_calls == len(rows.requests)
    for x, at in rows.requests:
        assert all(set(at[i]) == set(np.flatnonzero(x[i] == rows.graph.mask)) for i in range(len(x)))

    class OwnNetwork(RowsOracle):
        def raw_output(self, x, sigma_bar):
            return super().raw_output(x, sigma_bar) * 0.5

    own = OwnNetwork(chain)
    own.sample(cfg)
    assert own.network_calls > 0 and not own.requests


def test_time_conditioned_models_are_not_reused(chain):
    """A SEDD (time-conditioned) network is evaluated at every step that still has a MASK."""
    sedd = OracleSampler(chain, radd=False)
    cfg = SamplingConfig(num_samples=1, length=L, steps=8, seed=0)
    sedd.sample(cfg)
    assert sedd.network_calls >= 8 and sedd.network_evals.tolist() == [sedd.network_calls]
    assert sedd.sample(cfg).tokens == OracleSampler(chain, radd=False, cache=False).sample(cfg).tokens


@pytest.fixture(scope="module")
def radd_model(corpus, tmp_path_factory):
    from conftest import train_args
    from engine_sedd.training import train

    out = tmp_path_factory.mktemp("tiny_radd")
    train(train_args(data=str(corpus), out=str(out), parametrisation="radd"), log=lambda m: None)
    return out / "model"


def test_radd_training_torch_and_onnxruntime_paths(radd_model, tmp_path):
    """A trained RADD model: no time input; the same tokens and network evaluations on torch and
    onnxruntime; with and without the cache the same tokens for one sequence (exactly: the same
    network inputs), and nearly all for a batch (a cached batch sends only the changed rows, and
    float32 GEMMs round a row slightly differently in another batch)."""
    from engine_sedd.torch_path import SEDDSampler

    import engine

    sampler = SEDDSampler(model=radd_model)
    assert sampler.radd and not sampler.config["model"]["time_conditioning"]
    x = np.random.default_rng(0).integers(0, sampler.graph.dim, size=(2, 20))
    np.testing.assert_array_equal(sampler.raw_output(x, np.array([0.1, 5.0])), sampler.raw_output(x, np.zeros(2)))
    ort = engine.load_artifact(sampler.export_onnx(tmp_path / "radd"), provider="cpu")
    cfg = SamplingConfig(num_samples=2, length=32, steps=64, seed=5, suffix="\n")
    tokens = sampler.sample(cfg).tokens
    assert ort.sample(cfg).tokens == tokens
    assert ort.network_calls == sampler.network_calls <= 64
    assert ort.network_evals.tolist() == sampler.network_evals.tolist() and max(sampler.network_evals) < 64
    plain = SEDDSampler(model=radd_model, cache=False)
    assert np.mean(np.array(plain.sample(cfg).tokens) == np.array(tokens)) > 0.95
    one = SamplingConfig(num_samples=1, length=32, steps=64, seed=6)
    assert plain.sample(one).tokens == sampler.sample(one).tokens


def test_radd_refuses_the_uniform_graph(corpus, tmp_path):
    from conftest import train_args
    from engine_sedd.training import train

    with pytest.raises(ConfigError, match="absorbing"):
        train(train_args(data=str(corpus), out=str(tmp_path), parametrisation="radd", graph="uniform"))
