"""Independent oracles: answers computed in this file from first principles (an explicit data
table, explicit forward kernels, explicit prefix loops, hand arithmetic), not from the plugin's
helpers, so that a wrong formula in the plugin cannot also be the reference."""

import itertools
import math

import numpy as np
import pytest
import torch
from engine_sedd import sampling
from engine_sedd.component import SEDDSamplerBase
from engine_sedd.graphs import Absorbing
from engine_sedd.losses import ar_nll
from engine_sedd.model import ModelConfig, ScoreNet
from engine_sedd.sampling import AnalyticPredictor, EulerPredictor, denoise
from engine_sedd.schedules import LogLinearNoise
from engine_sedd.text import CharTokenizer

# ------------------------------------------------------------------ a two-token world
# Clean data: length 2 over 3 tokens, with this joint table p(x1 = a, x2 = b) (rows a, columns b).
V, L = 3, 2
MASK = V
P = np.array(
    [
        [0.30, 0.05, 0.10],
        [0.02, 0.20, 0.08],
        [0.15, 0.04, 0.06],
    ]
)
NOISY = [x for x in itertools.product(range(V + 1), repeat=L) if MASK in x]  # the 7 states with a MASK


def kernel(y: int, a: int, sigma_bar: float) -> float:
    """Absorbing forward kernel by hand: p(x_t = y | x_0 = a) (a may itself be MASK)."""
    keep = math.exp(-sigma_bar)
    if a == MASK:
        return 1.0 if y == MASK else 0.0
    return keep if y == a else (1.0 - keep if y == MASK else 0.0)


def marginal(x, sigma_bar: float) -> float:
    """p_t(x) = sum over clean pairs of P times the kernels."""
    return sum(
        P[a, b] * kernel(x[0], a, sigma_bar) * kernel(x[1], b, sigma_bar)
        for a, b in itertools.product(range(V), range(V))
    )


def concrete_score(x, i: int, y: int, sigma_bar: float) -> float:
    """The definition: p_t(x with x_i = y) / p_t(x)."""
    z = list(x)
    z[i] = y
    return marginal(z, sigma_bar) / marginal(x, sigma_bar)


def reverse_marginal(x_t, i: int, sb_t: float, sb_s: float) -> np.ndarray:
    """p(x_s[i] = y | x_t) for y in 0..MASK, s < t, by summing the joint p(x0) K_s(x_s | x0)
    K_{t|s}(x_t | x_s) over every clean pair and every intermediate state (sb_s = 0: x_s = x0)."""
    out = np.zeros(V + 1)
    for a, b in itertools.product(range(V), range(V)):
        for xs in itertools.product(range(V + 1), repeat=L):
            w = P[a, b]
            for k, x0k in enumerate((a, b)):
                w *= kernel(xs[k], x0k, sb_s) * kernel(x_t[k], xs[k], sb_t - sb_s)
            out[xs[i]] += w
    return out / out.sum()


def clean_conditional(tokens: np.ndarray) -> np.ndarray:
    """p0(x_i = y | the unmasked tokens) from the table, (B, L, V): the oracle network's answer."""
    out = np.zeros(tokens.shape + (V,))
    for r, (u, v) in enumerate(tokens.tolist()):
        col = P[:, v] if v != MASK else P.sum(1)  # position 0 given position 1
        row = P[u, :] if u != MASK else P.sum(0)  # position 1 given position 0
        out[r, 0], out[r, 1] = col / col.sum(), row / row.sum()
    return out


class TableSampler(SEDDSamplerBase):
    """The sampler component on the table, with an oracle in place of the network: SEDD reads
    raw = log p0 + log V (its shift subtracts log(e^sigma_bar - 1) + log(N - 1)); RADD reads
    logits of p0 (we add a constant, which its softmax must ignore)."""

    def __init__(self, radd: bool):
        config = {
            "graph": Absorbing(V).config(),
            "schedule": LogLinearNoise().config(),
            "tokenizer": CharTokenizer("abc").to_dict(),
            "model": {"max_len": L, "time_conditioning": not radd},
        }
        super().__init__(config)

    def raw_output(self, x, sigma_bar):
        logp = np.log(clean_conditional(np.asarray(x)))
        logp = logp + (2.5 if self.radd else np.log(V))
        return np.concatenate([logp, np.zeros(logp.shape[:-1] + (1,))], axis=-1)


SIGMA_BARS = (0.01, 0.4, 2.0, 7.0)


def score_error(score) -> float:
    """Largest relative error of ``score(x, sigma_bar)`` against the definition, over every
    state with a MASK, every masked position, every clean token y, and several sigma_bar."""
    x = np.array(NOISY * len(SIGMA_BARS), dtype=np.int64)
    sb = np.repeat(np.array(SIGMA_BARS), len(NOISY))
    got = score(x, sb)
    worst = 0.0
    for r in range(len(x)):
        for i in np.flatnonzero(x[r] == MASK):
            want = np.array([concrete_score(x[r], i, y, sb[r]) for y in range(V)])
            worst = max(worst, float(np.max(np.abs(got[r, i, :V] - want) / want)))
            assert got[r, i, MASK] == 1.0  # the x_t entry: ratio 1
    return worst


def transition_error(predictor, score, t: float, dt: float) -> float:
    """Largest absolute error of one reverse step's per-position distribution (normalised as the
    categorical draw normalises it) against the exact p(x_s[i] | x_t)."""
    graph, schedule = Absorbing(V), LogLinearNoise()
    step = predictor(graph, schedule)
    x = np.array(NOISY, dtype=np.int64)
    probs = step.probs(score, x, t, dt)
    probs = np.clip(probs, 0.0, None)
    probs = probs / probs.sum(-1, keepdims=True)
    sb_t, sb_s = float(schedule.total(t)), float(schedule.total(t - dt))
    worst = 0.0
    for r in range(len(x)):
        for i in range(L):
            want = reverse_marginal(tuple(x[r]), i, sb_t, sb_s)
            worst = max(worst, float(np.max(np.abs(probs[r, i] - want))))
    return worst


def test_the_hand_oracles_agree_with_each_other():
    """The table's forward marginals sum to 1; the definition of the score at a masked position
    is p0(y | unmasked) / (e^sigma_bar - 1), e.g. x = (MASK, 1): p0(x1 = y | x2 = 1) is column 1
    of the table over its sum 0.29."""
    for sb in SIGMA_BARS:
        total = sum(marginal(x, sb) for x in itertools.product(range(V + 1), repeat=L))
        assert total == pytest.approx(1.0, abs=1e-12)
    col = np.array([0.05, 0.20, 0.04]) / 0.29
    for y in range(V):
        assert concrete_score((MASK, 1), 0, y, 0.4) == pytest.approx(col[y] / math.expm1(0.4), rel=1e-12)


@pytest.mark.parametrize("radd", [False, True], ids=["sedd", "radd"])
def test_scores_from_an_oracle_network_are_the_exact_concrete_scores(radd, monkeypatch):
    """The sampler's network-to-score step, fed the exact clean conditionals, gives the concrete
    scores of the definition (relative error <= 1e-5); a sampler whose score ignores the network
    (all ones) is far off."""
    sampler = TableSampler(radd)
    assert score_error(sampler.score) < 1e-5
    monkeypatch.setattr(sampler, "score", lambda x, sb: np.ones(x.shape + (V + 1,)))
    assert score_error(sampler.score) > 0.5


@pytest.mark.parametrize("radd", [False, True], ids=["sedd", "radd"])
def test_reverse_steps_from_an_oracle_network_are_the_exact_posteriors(radd, monkeypatch):
    """Analytic (Tweedie) steps are exact with the exact score, and so are Euler steps on the
    log-linear schedule (dt sigma(t) = e^d - 1 there); the final denoise step draws from
    p0(x_i | x_t) with no MASK. All within 1e-5 of the brute-force posteriors; a score of ones
    is off by more than 0.05."""
    sampler = TableSampler(radd)
    for t, dt in ((1.0, 0.25), (0.6, 0.3), (0.2, 0.15), (0.05, 0.04)):
        for predictor in (AnalyticPredictor, EulerPredictor):
            assert transition_error(predictor, sampler.score, t, dt) < 1e-5, (predictor.name, t)
    ones = transition_error(AnalyticPredictor, lambda x, sb: np.ones(x.shape + (V + 1,)), 0.6, 0.3)
    assert ones > 0.05

    seen = []

    def capture(probs, u):
        seen.append(probs)
        return np.argmax(probs, -1)

    monkeypatch.setattr(sampling, "sample_categorical", capture)
    x = np.array(NOISY, dtype=np.int64)
    t = 0.3
    denoise(sampler.graph, sampler.schedule, sampler.score, x, t, np.random.default_rng(0))
    (probs,) = seen
    assert probs.shape == (len(x), L, V)  # the MASK column is dropped
    probs = probs / probs.sum(-1, keepdims=True)
    sb_t = float(sampler.schedule.total(t))
    for r in range(len(x)):
        for i in range(L):
            want = reverse_marginal(tuple(x[r]), i, sb_t, 0.0)
            assert want[MASK] == 0.0
            np.testing.assert_allclose(probs[r, i], want[:V], rtol=0, atol=1e-5)


# ------------------------------------------------------------------ the AR baseline


def tiny_causal(vocab: int, seed: int = 0) -> ScoreNet:
    """A small causal net (vocab data tokens + BOS) with every weight non-trivial: the zero-initialised
    output layer and adaLN gates get random values, and the BOS logit a large bias (so a softmax
    over vocab + 1 outputs would be visibly wrong)."""
    torch.manual_seed(seed)
    net = ScoreNet(ModelConfig(vocab=vocab + 1, hidden=16, blocks=2, heads=2, cond=8, max_len=32, causal=True))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
        net.output.bias[vocab] += 3.0
    return net.eval()


def brute_force_nll(net, seq, bos: int, vocab: int) -> float:
    """-log p(seq) = -sum_j log p(x_j | BOS, x_1..x_{j-1}), one network call per prefix, the
    prediction read at the prefix's last position, a softmax over the data tokens only."""
    total = 0.0
    for j in range(len(seq)):
        prefix = torch.tensor([[bos, *seq[:j]]], dtype=torch.int64)
        with torch.no_grad():
            logits = net(prefix, torch.zeros(1))[0, -1, :vocab].double()
        total -= float(logits[seq[j]] - torch.logsumexp(logits, 0))
    return total


def test_ar_nll_matches_a_token_by_token_loop_over_prefixes():
    vocab = 5
    net = tiny_causal(vocab)
    x0 = torch.from_numpy(np.random.default_rng(0).integers(0, vocab, size=(3, 9)))
    with torch.no_grad():
        got = ar_nll(net, x0, bos=vocab, vocab=vocab).numpy()
    want = np.array([brute_force_nll(net, row, vocab, vocab) for row in x0.tolist()])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert want.min() > 9 * 0.5  # a real likelihood, not a degenerate one
    # the batching wrapper returns the same per-sequence values
    from engine_sedd.likelihood import ar_nlls

    np.testing.assert_allclose(ar_nlls(net, x0.numpy(), bos=vocab, vocab=vocab, batch=2), got, rtol=1e-6)


# ------------------------------------------------------------------ bits per character


def test_summarize_converts_nats_to_bits_per_character_by_hand():
    """Two sequences of 10 and 14 nats, 4 tokens and 6 characters each: 12 nats per sequence over 6
    characters = 2 nats/char = 2 / ln 2 = 2.88539 bits/char; 3 nats/token, perplexity e^3; the
    standard error sqrt(8) / sqrt(2) = 2 nats -> 2 / (6 ln 2) bits/char."""
    from engine_sedd.likelihood import summarize

    out = summarize(np.array([10.0, 14.0]), tokens_per_seq=4, chars_per_seq=6.0)
    assert out["sequences"] == 2
    assert out["bpc"] == pytest.approx(2.8853900817779268, rel=1e-12)
    assert out["bpc_se"] == pytest.approx(0.48089834696298783, rel=1e-12)
    assert out["nats_per_token"] == pytest.approx(3.0, rel=1e-12)
    assert out["nats_per_token_se"] == pytest.approx(0.5, rel=1e-12)
    assert out["perplexity"] == pytest.approx(20.085536923187668, rel=1e-12)


CORPUS = "the cat sat on the mat. a dog ran to the log and sat. " * 60


def test_eval_bpc_and_bpc_ratio_are_total_bits_over_total_characters(tmp_path):
    """``engine eval sedd`` on a BPE model (several characters per token): the AR baseline's bits
    per character equal the brute-force nats of every validation sequence, summed, over the
    characters those sequences decode to, times 1 / ln 2; bpc_ratio is SEDD's total nats over the
    AR total (same sequences, same characters); the AR judge of sampled token arrays converts the
    same way."""
    from engine_sedd.bundle import save_model_dir
    from engine_sedd.evaluation import evaluate_models, judge_samples
    from engine_sedd.likelihood import sedd_bounds
    from engine_sedd.options import EvalOptions
    from engine_sedd.text import BPETokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    train_text, val_text = CORPUS[: int(len(CORPUS) * 0.9)], CORPUS[int(len(CORPUS) * 0.9) :]
    (tmp_path / "train.txt").write_text(train_text, encoding="utf-8")
    tok = BPETokenizer.train([tmp_path / "train.txt"], vocab_size=280)
    vocab, length = tok.vocab_size, 16
    ar = tiny_causal(vocab, seed=1)
    common = {"tokenizer": tok.to_dict(), "seq_len": length, "training": {"train_fraction": 0.9}}
    ar_cfg = {**common, "objective": "ar", "model": ar.cfg.to_dict(), "graph": None, "schedule": None}
    save_model_dir(tmp_path / "ar", ar, ar_cfg)
    torch.manual_seed(2)
    graph, schedule = Absorbing(vocab), LogLinearNoise()
    sedd = ScoreNet(ModelConfig(vocab=graph.dim, hidden=16, blocks=1, heads=2, cond=8, max_len=length))
    with torch.no_grad():
        sedd.output.weight.normal_(0, 0.3)
    sedd_cfg = {
        **common,
        "objective": "sedd",
        "model": sedd.cfg.to_dict(),
        "graph": graph.config(),
        "schedule": schedule.config(),
    }
    save_model_dir(tmp_path / "sedd", sedd, sedd_cfg)

    options = EvalOptions(ar=str(tmp_path / "ar"), data=str(corpus), times=2)
    out = evaluate_models(tmp_path / "sedd", options, seed=0)

    ids = tok.encode(val_text)
    n = len(ids) // length
    seqs = np.array(ids[: n * length]).reshape(n, length)
    covered = tok.decode(ids[: n * length])
    assert val_text.startswith(covered) and len(covered) > 2 * n * length  # several characters per token
    ar_nats = sum(brute_force_nll(ar, row, vocab, vocab) for row in seqs.tolist())
    assert out["ar_sequences"] == out["sedd_sequences"] == n >= 3
    assert out["ar_bpc"] == pytest.approx(ar_nats / (len(covered) * math.log(2)), rel=1e-5)
    assert out["ar_nats_per_token"] == pytest.approx(ar_nats / (n * length), rel=1e-5)
    sedd_nats = sedd_bounds(sedd, graph, schedule, seqs, n_times=2, seed=0).sum()
    assert out["sedd_bpc"] == pytest.approx(sedd_nats / (len(covered) * math.log(2)), rel=1e-5)
    assert out["bpc_ratio"] == pytest.approx(sedd_nats / ar_nats, rel=1e-5)
    # the same conversion when the AR model judges token arrays (generative bits per character)
    judged = judge_samples(str(tmp_path / "ar"), {"val": seqs})
    assert judged["val"] == pytest.approx(ar_nats / (len(covered) * math.log(2)), rel=1e-5)
