"""Tiny random causal LMs built from configs (no downloads): for tests, the conformance kit and the GPU check."""

from __future__ import annotations

import torch


def tiny_llama(vocab: int = 96, seed: int = 0, tied: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(vocab: int = 96, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(cfg).eval()


def randomize_heads(heads, scale: float = 0.3, seed: int = 1):
    """Give identity-initialised heads random residual weights (distinct predictions)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in heads.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return heads


def char_codec(vocab: int = 96):
    """A character-level tokenizer (tokenizers library) over the tiny models' vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    from engine_medusa.textio import TextCodec

    chars = [chr(32 + i) for i in range(vocab - 3)]
    table = {"<unk>": 0, "<bos>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(table, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<unk>", "<bos>", "<eos>"])
    return TextCodec(tok.to_str(), eos_ids=(2,), add_special=False)


def save_tiny(folder, make=None, seed: int = 0):
    """Save a tiny random model + char tokenizer as a local HF model directory."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    model = (make or tiny_llama)(seed=seed)
    codec = char_codec(model.config.vocab_size)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(codec.tokenizer_json),
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
    )
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model
