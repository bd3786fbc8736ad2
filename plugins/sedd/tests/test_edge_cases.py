"""Edge cases of the sampler, the losses and the likelihood helpers, each with its answer stated
here: unnormalised probabilities, a batch or length of one, the error messages, float64 times,
the device and dtype the network is fed, tails and single sequences. Written against surviving
mutants (docs/mutation-testing.md); the "meta" device stands in for an accelerator, so a tensor
made on the default device instead of the data's shows up on a CPU-only machine."""

import math
import warnings
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from engine_sedd import losses, sampling
from engine_sedd.graphs import Absorbing, Uniform
from engine_sedd.likelihood import chunk, summarize
from engine_sedd.schedules import GeometricNoise, LogLinearNoise
from engine_sedd.text import CharTokenizer

from engine.interfaces import ConfigError


def flat_score(graph):
    """Every concrete score 1: a valid (if uninformed) network for any graph."""
    return lambda x, sigma_bar: np.ones(x.shape + (graph.dim,))


# ------------------------------------------------------------------ sampler


def test_sample_categorical_scales_the_uniform_by_the_row_total():
    probs = np.array([[2.0, 2.0], [1.0, 3.0], [-1.0, 1.0]])  # totals 4, 4, 1 (negatives count as 0)
    u = np.array([0.6, 0.2, 0.0])
    # row 0: 0.6 * 4 = 2.4 is past cdf[0] = 2, so index 1; row 1: 0.2 * 4 = 0.8 < cdf[0] = 1, so
    # index 0; row 2: cdf = [0, 1], the first entry with cdf > 0 is index 1
    assert sampling.sample_categorical(probs, u).tolist() == [1, 0, 1]


@pytest.mark.parametrize(("batch", "length"), [(1, 5), (3, 1), (1, 1)])
def test_a_batch_or_a_length_of_one_is_allowed(batch, length):
    graph = Absorbing(3)
    x = sampling.sample(flat_score(graph), graph, LogLinearNoise(), batch=batch, length=length, steps=2, seed=0)
    assert x.shape == (batch, length) and x.dtype == np.int64
    assert x.min() >= 0 and x.max() < 3  # data tokens only: no MASK survives the final step


@pytest.mark.parametrize(("batch", "length"), [(0, 4), (2, 0)])
def test_an_empty_batch_or_length_is_refused(batch, length):
    graph = Absorbing(3)
    with pytest.raises(ValueError, match=r"^batch and length must be >= 1$"):
        sampling.sample(flat_score(graph), graph, LogLinearNoise(), batch=batch, length=length, steps=1)


def test_the_uniform_graph_starts_from_the_seeded_generator():
    graph = Uniform(4)

    def run(seed):
        return sampling.sample(flat_score(graph), graph, GeometricNoise(), batch=2, length=6, steps=3, seed=seed)

    first = run(5)
    np.testing.assert_array_equal(first, run(5))
    assert first.min() >= 0 and first.max() < 4


def test_a_fixed_token_outside_the_data_vocabulary_names_the_range():
    graph = Absorbing(3)
    with pytest.raises(ValueError, match=r"^fixed token ids must be data tokens in 0\.\.2$"):
        sampling.sample(flat_score(graph), graph, LogLinearNoise(), batch=1, length=4, steps=1, fixed={1: 3})


def test_conflicting_constraints_name_the_first_position_where_they_differ():
    tok = CharTokenizer("abcd")
    # the prefix holds a, b, c at 0..2; the fixed text agrees at 0 and 1 and differs at 2
    with pytest.raises(ConfigError, match=r"^fixed text at 0 conflicts with another constraint at position 2$"):
        sampling.conditioning(tok, 6, prefix="abc", fixed={0: "abd"})


# ------------------------------------------------------------------ losses


def test_sample_times_is_eps_plus_a_uniform_share_of_the_rest_in_float64():
    u = torch.rand(5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = losses.sample_times(5, 0.25, torch.Generator().manual_seed(3))
    assert t.dtype == torch.float64 and t.device.type == "cpu"
    torch.testing.assert_close(t, 0.25 + 0.75 * u, rtol=0, atol=1e-15)


def test_stratified_times_put_one_t_in_each_slice_and_stay_uniform():
    """One t per 1/B slice of [eps, 1], in slice order; each is eps + (1 - eps) * (k + u_k) / B with
    the same draws u as the independent sampler, so the marginal of a random one is U[eps, 1]."""
    B, eps = 8, 0.25
    u = torch.rand(B, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = losses.sample_times(B, eps, torch.Generator().manual_seed(3), stratified=True)
    torch.testing.assert_close(t, eps + (1 - eps) * (torch.arange(B) + u) / B, rtol=0, atol=1e-15)
    slices = torch.floor((t - eps) / (1 - eps) * B)
    assert slices.tolist() == list(range(B))
    many = losses.sample_times(20000, eps, torch.Generator().manual_seed(0), stratified=True)
    assert abs(many.mean().item() - (1 + eps) / 2) < 1e-4  # a plain draw's error would be ~1e-3


def test_sample_times_makes_its_draws_on_the_device_it_is_given():
    with torch.device("meta"):  # a default device other than the one asked for
        t = losses.sample_times(3, 0.1, device="cpu")
    assert t.device.type == "cpu"
    assert losses.sample_times(2, 0.1, device="meta").device.type == "meta"


def test_is_radd_reads_time_conditioning_and_defaults_to_a_time_conditioned_network():
    assert not losses.is_radd(NS(cfg=NS()))  # a config without the field: SEDD, time-conditioned
    assert not losses.is_radd(NS(cfg=NS(time_conditioning=True)))
    assert losses.is_radd(NS(cfg=NS(time_conditioning=False)))
    assert losses.is_radd(NS(module=NS(cfg=NS(time_conditioning=False))))  # a DDP-wrapped network
    assert not losses.is_radd(NS())  # no config at all


def test_log_score_puts_the_noise_level_on_the_tokens_device(monkeypatch):
    seen = []

    def net(x, s):
        seen.append((s.device.type, s.dtype))
        return torch.zeros(*x.shape, 4, device=x.device)

    monkeypatch.setattr(losses, "log_concrete_score", lambda graph, raw, x, sb, radd: raw)
    xt = torch.zeros(1, 3, dtype=torch.long, device="meta")
    losses.log_score(net, Absorbing(3), xt, np.array([0.5]))
    assert seen == [("meta", torch.float32)]


def test_sedd_loss_draws_its_times_on_the_data_device(monkeypatch):
    graph = Absorbing(3)
    devices = []
    real = losses.sample_times

    def spy(batch, eps, generator=None, device="cpu", stratified=False):
        devices.append(device)
        return real(batch, eps, generator, device, stratified)

    monkeypatch.setattr(losses, "sample_times", spy)
    x0 = torch.tensor([[0, 1, 2, 1]])
    out = losses.sedd_loss(lambda xt, sb: torch.zeros(*xt.shape, graph.dim), graph, LogLinearNoise(), x0)
    assert devices == [x0.device] and out.shape == (1,) and torch.isfinite(out).all()


def test_ar_nll_feeds_float32_times_whatever_the_default_dtype():
    seen = []

    def net(inp, s):
        seen.append((s.dtype, s.tolist()))
        return torch.zeros(*inp.shape, 4)  # uniform over the 3 data tokens (+1 column cut off)

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        nll = losses.ar_nll(net, torch.tensor([[0, 1, 2]]), bos=3, vocab=3)
    finally:
        torch.set_default_dtype(old)
    assert seen == [(torch.float32, [0.0])]
    torch.testing.assert_close(nll, torch.tensor([3 * math.log(3)], dtype=torch.float64))


# ------------------------------------------------------------------ likelihood helpers


def test_chunk_drops_the_tail_and_returns_int64_rows():
    rows = chunk(np.arange(11, dtype=np.int32), 4)
    assert rows.dtype == np.int64 and rows.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ConfigError, match=r"^the validation split holds 3 tokens, fewer than one sequence of 4: "):
        chunk(np.arange(3), 4, "the validation split")


def test_summarize_one_sequence_has_no_standard_error_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no degrees-of-freedom warning from a std of one value
        out = summarize(np.array([2.0]), tokens_per_seq=4, chars_per_seq=8.0)
    assert out["sequences"] == 1 and out["nats_per_token"] == pytest.approx(0.5)
    assert math.isnan(out["nats_per_token_se"]) and math.isnan(out["bpc_se"])
    assert out["bpc"] == pytest.approx(2.0 / (8.0 * math.log(2)))
