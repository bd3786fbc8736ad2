"""Medusa heads: shapes, initialisation, save/load, head selection.

Tie policy: exact equality is asserted where the algorithm guarantees it (the same kernel
on the same tensors: a save/load round trip; greedy verification elsewhere compares the
argmax of the same logits), while logits computed by kernels of different shapes (a
[..., K, d] @ [d, V] GEMM against [..., d] @ [d, V], all heads against selected ones) are
compared to a tolerance only: their summation order, and so the last bits, may differ by CPU.
"""

import pytest
import torch
from engine_medusa.heads import MedusaHeads, heads_config, load_heads, read_config, save_heads
from engine_medusa.tiny import randomize_heads, tiny_gpt2, tiny_llama

from engine.errors import UsageError

FP32 = {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.parametrize("share", [True, False])
def test_heads_are_the_base_head_at_init(share):
    m = tiny_llama()
    heads = MedusaHeads(m.get_output_embeddings(), num_heads=4, num_layers=2, share_lm_head=share)
    h = torch.randn(3, 5, m.config.hidden_size)
    out = heads(h)
    assert out.shape == (3, 5, 4, m.config.vocab_size)
    base = m.get_output_embeddings()(h)
    for k in range(4):
        # the identity, bias included (a different GEMM shape than the base head's: a tolerance)
        torch.testing.assert_close(out[..., k, :], base, **FP32)


def test_layers_are_not_shared_between_heads_or_depths():
    m = tiny_llama()
    heads = MedusaHeads(m.get_output_embeddings(), num_heads=3, num_layers=2)
    params = [p for p in heads.parameters()]
    assert len({id(p) for p in params}) == len(params) == 3 * 2 * 2
    assert sum(p.numel() for p in heads.parameters()) == 3 * 2 * (32 * 32 + 32)


def test_unshared_output_starts_as_a_copy_not_an_alias():
    m = tiny_llama()
    heads = MedusaHeads(m.get_output_embeddings(), num_heads=2, share_lm_head=False)
    w = heads.out[0].weight
    assert torch.equal(w, m.get_output_embeddings().weight)
    assert w.data_ptr() != m.get_output_embeddings().weight.data_ptr()


@pytest.mark.parametrize("share", [True, False])
def test_save_load_round_trip(tmp_path, share):
    m = tiny_gpt2()
    heads = randomize_heads(MedusaHeads(m.get_output_embeddings(), 3, share_lm_head=share))
    cfg = heads_config(heads, "tiny-gpt2", m.get_output_embeddings().weight)
    save_heads(tmp_path, heads, cfg, dtype=torch.float32)
    loaded, cfg2 = load_heads(tmp_path, m)
    assert cfg2["base_model"] == "tiny-gpt2" and cfg2["share_lm_head"] is share
    h = torch.randn(2, m.config.n_embd)
    assert torch.equal(loaded(h), heads(h))
    names = set(__import__("safetensors").safe_open(str(tmp_path / "heads.safetensors"), "pt").keys())
    assert any(n.startswith("out.") for n in names) is (not share)


def test_heads_for_another_base_are_refused(tmp_path):
    a, b = tiny_llama(seed=0), tiny_llama(seed=1)
    heads = MedusaHeads(a.get_output_embeddings(), 2)
    save_heads(tmp_path, heads, heads_config(heads, "a", a.get_output_embeddings().weight))
    with pytest.raises(UsageError, match="trained for a"):
        load_heads(tmp_path, b)
    assert read_config(tmp_path)["lm_head_fingerprint"]


def test_missing_heads_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="no Medusa heads"):
        load_heads(tmp_path, tiny_llama())


def test_a_base_model_folder_without_config_is_a_clear_error(tmp_path):
    from engine_medusa.base import load_base

    with pytest.raises(UsageError, match=r"^no base model in .*: give a folder in the Hugging Face layout"):
        load_base(str(tmp_path))


@pytest.mark.parametrize("share", [True, False])
def test_selected_heads_equal_the_same_heads_of_the_full_forward(share):
    m = tiny_llama()
    heads = randomize_heads(MedusaHeads(m.get_output_embeddings(), 4, share_lm_head=share))
    h = torch.randn(3, m.config.hidden_size)
    full = heads(h)
    for sel in ([0], [0, 1, 2], [3, 1]):
        torch.testing.assert_close(heads(h, torch.tensor(sel)), full[:, sel], **FP32)
