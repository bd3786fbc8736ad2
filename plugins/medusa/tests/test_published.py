"""Published Medusa heads (the FasterDecoding layout) load, decode exactly and export."""

import json

import pytest
import torch
from engine_medusa.ort_path import OrtMedusaDecoder
from engine_medusa.tiny import save_tiny
from engine_medusa.torch_path import MedusaDecoder
from safetensors.torch import save_file

from engine.artifacts import read_artifact
from engine.errors import UsageError
from engine.interfaces import GenerationConfig

HEADS, LAYERS = 3, 2


def fabricate(folder, base_dir, vocab=96, d=32, fmt="safetensors"):
    """Heads in the published layout: head i = ResBlock x LAYERS then its own Linear(d, vocab)."""
    g = torch.Generator().manual_seed(3)
    tensors = {}
    for i in range(HEADS):
        for j in range(LAYERS):
            tensors[f"{i}.{j}.linear.weight"] = torch.randn(d, d, generator=g) * 0.3
            tensors[f"{i}.{j}.linear.bias"] = torch.randn(d, generator=g) * 0.1
        tensors[f"{i}.{LAYERS}.weight"] = torch.randn(vocab, d, generator=g)
    folder.mkdir()
    if fmt == "safetensors":
        save_file(tensors, str(folder / "medusa_lm_head.safetensors"))
    else:
        torch.save(tensors, folder / "medusa_lm_head.pt")
    config = {"medusa_num_heads": HEADS, "medusa_num_layers": LAYERS, "base_model_name_or_path": str(base_dir)}
    (folder / "config.json").write_text(json.dumps(config))
    return tensors


def published_formula(tensors, h):
    """The published heads' logits, computed from the raw tensors: [n, HEADS, vocab]."""
    out = []
    for i in range(HEADS):
        x = h
        for j in range(LAYERS):
            x = x + torch.nn.functional.silu(x @ tensors[f"{i}.{j}.linear.weight"].T + tensors[f"{i}.{j}.linear.bias"])
        out.append(x @ tensors[f"{i}.{LAYERS}.weight"].T)
    return torch.stack(out, 1)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    save_tiny(folder)
    return folder


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_published_heads_load_and_decode_exactly(base, tmp_path, fmt):
    tensors = fabricate(tmp_path / "heads", base, fmt=fmt)
    tree = [[0], [1], [0, 0], [0, 1], [0, 0, 0]]
    dec = MedusaDecoder(heads=str(tmp_path / "heads"), tree=tree, heads_dtype="float32")  # base from the config
    assert not dec.heads.share_lm_head and dec.heads.num_heads == HEADS and dec.heads.num_layers == LAYERS
    h = torch.randn(5, 32)
    with torch.no_grad():
        torch.testing.assert_close(dec.heads(h), published_formula(tensors, h))
    plain = MedusaDecoder(model=str(base), heads=None)
    config = GenerationConfig(max_new_tokens=20, eos=False)
    for prompt in ("hello", "the tiny model"):
        assert dec.generate(prompt, config).tokens == plain.generate(prompt, config).tokens


def test_published_heads_export_and_run_on_onnxruntime(base, tmp_path):
    fabricate(tmp_path / "heads", base)
    dec = MedusaDecoder(heads=str(tmp_path / "heads"), tree=[[0], [1], [0, 0]], heads_dtype="float32")
    ort = OrtMedusaDecoder(read_artifact(dec.export_onnx(tmp_path / "art")), provider="cpu")
    config = GenerationConfig(max_new_tokens=20, eos=False)
    a, b = dec.generate("hello there", config), ort.generate("hello there", config)
    assert a.tokens == b.tokens and a.stats.steps == b.stats.steps


def test_published_heads_for_another_base_are_refused_in_one_line(base, tmp_path):
    fabricate(tmp_path / "heads", base, vocab=80)
    with pytest.raises(UsageError, match=r"out.0.weight has shape \(80, 32\), this base needs \(96, 32\)"):
        MedusaDecoder(heads=str(tmp_path / "heads"))


def test_published_heads_missing_a_tensor_name_it(base, tmp_path):
    fabricate(tmp_path / "heads", base)
    from safetensors.torch import load_file

    path = tmp_path / "heads" / "medusa_lm_head.safetensors"
    tensors = load_file(str(path))
    del tensors["1.0.linear.bias"]
    save_file(tensors, str(path))
    with pytest.raises(UsageError, match="no '1.0.linear.bias'"):
        MedusaDecoder(heads=str(tmp_path / "heads"))
