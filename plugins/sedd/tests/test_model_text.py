"""Score network properties and tokenisers."""

import numpy as np
import pytest
import torch
from conftest import train_args
from engine_sedd.model import ModelConfig, ScoreNet
from engine_sedd.text import BPETokenizer, CharTokenizer, split_corpus, tokenizer_from_dict

from engine.interfaces import ConfigError


def random_net(**kw):
    torch.manual_seed(0)
    net = ScoreNet(ModelConfig(vocab=11, hidden=32, blocks=2, heads=2, cond=16, max_len=64, **kw)).eval()
    with torch.no_grad():
        for p in net.parameters():  # leave adaLN-Zero's all-zero start so the blocks do something
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_zero_init_output_and_adaln_zero():
    net = ScoreNet(ModelConfig(vocab=11, hidden=32, blocks=2, heads=2, cond=16))
    out = net(torch.randint(0, 11, (2, 9)), torch.tensor([0.1, 3.0]))
    assert out.shape == (2, 9, 11) and out.abs().max() == 0
    assert all(b.adaLN_modulation.weight.abs().max() == 0 for b in net.blocks)


def test_bidirectional_vs_causal_and_sigma_conditioning():
    x = torch.randint(0, 11, (1, 12))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 11
    sb = torch.tensor([1.0])
    bi, causal = random_net(), random_net(causal=True)
    with torch.no_grad():
        assert (bi(x, sb)[0, 0] - bi(y, sb)[0, 0]).abs().max() > 1e-4  # sees the future
        torch.testing.assert_close(causal(x, sb)[0, :-1], causal(y, sb)[0, :-1])  # does not
        assert (bi(x, sb) - bi(x, torch.tensor([2.0]))).abs().max() > 1e-4


@pytest.mark.parametrize("causal", [False, True])
def test_rotary_in_halves_is_the_same_network(causal):
    net = random_net(causal=causal)
    x, sb = torch.randint(0, 11, (2, 16)), torch.tensor([0.5, 2.0])
    halves = net.with_rotary_halves()
    with torch.no_grad():
        torch.testing.assert_close(halves(x, sb), net(x, sb), rtol=1e-5, atol=1e-5)
        halves.blocks[0].qkv.weight.copy_(net.blocks[0].qkv.weight)  # halves without the reordering: another net
        assert (halves(x, sb) - net(x, sb)).abs().max() > 1e-4
    assert not any(b.rotary_halves for b in net.blocks)  # the original is untouched


def test_output_rows_are_the_whole_output_at_those_positions():
    """The last block computed at some positions only (every position still a key) gives the whole
    network's output there, in any order and with repeats; the causal baseline refuses rows."""
    net = random_net()
    x, sb = torch.randint(0, 11, (2, 16)), torch.tensor([0.5, 2.0])
    rows = torch.tensor([[3, 0, 15, 3], [7, 8, 1, 1]])
    with torch.no_grad():
        whole = net(x, sb)
        torch.testing.assert_close(net(x, sb, rows), whole.gather(1, rows[..., None].expand(-1, -1, whole.shape[-1])))
        with pytest.raises(ConfigError, match="bidirectional"):
            random_net(causal=True)(x, sb, rows)


def test_bf16_autocast_close_to_fp32():
    net = random_net()
    x, sb = torch.randint(0, 11, (2, 16)), torch.tensor([0.5, 2.0])
    with torch.no_grad():
        ref = net(x, sb)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, sb)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_char_tokenizer_roundtrip_and_errors():
    tok = CharTokenizer.from_corpus("hello world")
    assert tok.decode(tok.encode("low hold")) == "low hold"
    with pytest.raises(ValueError, match="not in the model's vocabulary: 'xz'"):
        tok.encode("zox")
    assert tokenizer_from_dict(tok.to_dict()).chars == tok.chars


def test_split_is_first_90_percent():
    train, val = split_corpus("abcdefghij" * 10)
    assert len(train) == 90 and train + val == "abcdefghij" * 10


def test_bpe_tokenizer_trains_locally_and_round_trips(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    tok = BPETokenizer.train([corpus], vocab_size=300)
    ids = tok.encode("the lazy fox, unseen: ünïcode!")
    assert tok.decode(ids) == "the lazy fox, unseen: ünïcode!"  # byte level: anything encodes
    assert len(tok.encode("the quick brown fox")) < len("the quick brown fox")
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode("the dog") == tok.encode("the dog") and again.vocab_size == tok.vocab_size


def test_training_with_bpe(corpus, tmp_path):
    from engine_sedd.bundle import load_model_dir
    from engine_sedd.torch_path import SEDDSampler
    from engine_sedd.training import train

    train(train_args(data=str(corpus), out=str(tmp_path), tokenizer="bpe", bpe_vocab=300, steps=4), log=lambda m: None)
    net, cfg, graph, _, tok = load_model_dir(tmp_path / "model")
    assert cfg["tokenizer"]["kind"] == "bpe" and graph.vocab == tok.vocab_size == 300
    history = cfg["training"]["history"][-1]
    assert np.isfinite(history["val_bpc"])
    from engine.interfaces import SamplingConfig

    res = SEDDSampler(model=tmp_path / "model").sample(SamplingConfig(num_samples=1, length=16, steps=2, seed=0))
    assert len(res.tokens[0]) == 16
