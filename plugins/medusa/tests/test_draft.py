"""The one-layer draft: exact greedy decoding over it, and its decoding-time cache computing
what its training streams compute."""

import numpy as np
import pytest
import torch
from engine_medusa.base import TorchBackend
from engine_medusa.draft_layer import DraftHeads, stream_forward
from engine_medusa.drafting import Drafter
from engine_medusa.heads import heads_config, load_heads, save_heads
from engine_medusa.tiny import randomize_heads, tiny_llama
from engine_medusa.tree import build_tree
from test_decoding import PROMPTS, hf_greedy, run

CHAIN = [[0], [0, 0], [0, 0, 0]]
BRANCHING = [[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0]]


def draft_for(model, seed=1, subset=None):
    torch.manual_seed(seed)
    heads = DraftHeads(
        model.get_output_embeddings(),
        4,
        subset,
        embedding=model.get_input_embeddings(),
        n_heads=4,
        mlp=48,
        theta=10000.0,
    )
    return randomize_heads(heads, scale=0.2, seed=seed).eval()


def repeating_draft(model):
    """A draft started as the identity on the feature (`--draft-init identity`): it proposes the
    token the base chose from that feature again (often right on a tiny random model, which
    repeats itself)."""
    heads = draft_for(model)
    heads.layer.pass_through()
    return heads


@pytest.mark.parametrize("tree", [CHAIN, BRANCHING])
@pytest.mark.parametrize("make", [draft_for, repeating_draft])
def test_greedy_over_a_draft_equals_hf_generate_batched(tree, make):
    model = tiny_llama()
    backend = TorchBackend(model, make(model), heads_dtype=torch.float32)
    rows = run(backend, PROMPTS, tree=tree, n=40)
    for p, r in zip(PROMPTS, rows, strict=True):
        assert r.tokens == hf_greedy(model, p, 40)
    if make is repeating_draft:
        assert any(r.steps < len(r.tokens) for r in rows)  # some drafts were accepted


def test_draft_vocabulary_subset_stays_exact():
    model = tiny_llama()
    heads = draft_for(model, seed=2, subset=torch.arange(3, 60))
    rows = run(TorchBackend(model, heads, heads_dtype=torch.float32), PROMPTS[:2], tree=BRANCHING, n=30)
    assert [r.tokens for r in rows] == [hf_greedy(model, p, 30) for p in PROMPTS[:2]]


def test_drafting_with_its_cache_computes_the_training_streams():
    """Stream s at position n + s is draft step s + 1 of the chain whose true context ends at n:
    the decoder's incremental cache (true pairs in, draft nodes dropped) must agree."""
    model = tiny_llama()
    heads = draft_for(model, seed=3)
    backend = TorchBackend(model, heads, heads_dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    m, n, streams = 12, 6, 3
    feats = torch.randn(1, m, 32, generator=g)
    tokens = torch.randint(3, 90, (1, m), generator=g)
    with torch.no_grad():
        want = stream_forward(heads.layer, feats, heads._embedding(tokens), torch.ones(1, m, dtype=torch.bool), streams)
    drafter = Drafter(backend, 1)
    drafter.accept(feats[:, :3].numpy(), tokens[:, :3].numpy(), np.ones((1, 3), bool))  # two steps of history
    drafter.topk_at(build_tree(CHAIN, 4), 0, tokens[:, None, :1].numpy(), [0], 4)
    drafter.accept(feats[:, 3 : n + 1].numpy(), tokens[:, 3 : n + 1].numpy(), np.ones((1, n - 2), bool))
    tree = build_tree(CHAIN, 4)
    for depth in range(streams):
        drafter.topk_at(tree, depth, tokens[:, None, n : n + depth + 1].numpy(), [depth], 4)
        got = drafter.out[depth][0]
        np.testing.assert_allclose(got, want[depth, 0, n + depth].numpy(), rtol=1e-4, atol=1e-5)


def test_a_draft_saves_and_loads_as_a_heads_folder(tmp_path):
    model = tiny_llama()
    heads = draft_for(model, seed=4, subset=torch.arange(3, 60))
    cfg = heads_config(heads, "tiny", model.get_output_embeddings().weight, draft_layer=heads.shape)
    save_heads(tmp_path, heads, cfg, dtype=torch.float32)
    loaded, stored = load_heads(tmp_path, model)
    assert stored["kind"] == "draft" and isinstance(loaded, DraftHeads)
    assert torch.equal(loaded.vocab_subset, heads.vocab_subset)
    for (name, a), b in zip(heads.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    backend = TorchBackend(model, loaded, heads_dtype=torch.float32)
    rows = run(backend, PROMPTS[:1], tree=CHAIN, n=20)
    assert rows[0].tokens == hf_greedy(model, PROMPTS[0], 20)


@pytest.mark.parametrize("make", [draft_for, repeating_draft])
def test_exported_draft_gives_the_torch_tokens_and_steps(make, tmp_path):
    """The `draft` graph on onnxruntime: the base's own greedy tokens, the torch path's proposals
    (same number of steps), and the torch draft step's outputs."""
    from engine_medusa.tiny import char_codec
    from engine_medusa.torch_path import MedusaDecoder

    from engine.artifacts import load_artifact
    from engine.interfaces import GenerationConfig

    model = tiny_llama()
    dec = MedusaDecoder.from_model(
        model, char_codec(), heads=make(model), tree=BRANCHING, topk=4, base_name="t", heads_dtype="float32"
    )
    plain = MedusaDecoder.from_model(model, char_codec(), heads=None, base_name="t")
    ort_dec = load_artifact(dec.export_onnx(tmp_path / "art"), provider="cpu")
    assert ort_dec.backend.drafting
    prompts = ["Hello", "a longer prompt here", "xyz"]
    cfg = GenerationConfig(max_new_tokens=24, eos=False)
    got = zip(*(d.generate_batch(prompts, cfg) for d in (dec, ort_dec, plain)), strict=True)
    for a, b, c in got:
        assert a.tokens == b.tokens == c.tokens
        assert a.stats.steps == b.stats.steps
    g = np.random.default_rng(0)
    args = (
        g.standard_normal((2, 3, 32)).astype(np.float32),
        g.integers(3, 90, (2, 3)),
        np.array([[4, 5, 6], [2, 3, 4]]),
        g.standard_normal((2, 4, 4, 8)).astype(np.float32),
        g.standard_normal((2, 4, 4, 8)).astype(np.float32),
        np.concatenate([np.ones((2, 3, 4), bool), np.tril(np.ones((3, 3), bool))[None].repeat(2, 0)], 2),
    )
    want, have = dec.backend.draft_step(*args, 4), ort_dec.backend.draft_step(*args, 4)
    for w, h in zip(want, have, strict=True):
        np.testing.assert_allclose(h, w, rtol=1e-4, atol=1e-5)


def test_tree_tuning_measures_a_draft_along_the_greedy_tokens():
    """Rank accuracies of a draft come from chains drafted along the base's own tokens: the
    repeating draft's step-1 top-1 is how often the base repeats its last token; the latency
    of a draft chain is timed for every depth."""
    from engine_medusa.tiny import char_codec
    from engine_medusa.torch_path import MedusaDecoder
    from engine_medusa.tuning import rank_accuracy, step_latency

    model = tiny_llama()
    dec = MedusaDecoder.from_model(model, char_codec(), heads=repeating_draft(model), tree=[], heads_dtype="float32")
    prompts = ["Hello", "xyz"]
    acc, raw = rank_accuracy(dec, prompts, 20, ranks=4)
    repeats = seen = 0
    for p in prompts:
        t = hf_greedy(model, dec.encode(p), 20)
        # step 1 of the chain after pair (feature j, token j) proposes token j + 1: here token j again
        repeats += sum(a == b for a, b in zip(t, t[1:], strict=False))
        seen += len(t) - 1
    assert raw["positions"] == seen
    assert acc[0, 0] == pytest.approx(repeats / seen)
    _, draft_ms = step_latency(dec.backend, [1, 3], [1, 2], topk=4, past=8, repeats=2)
    assert set(draft_ms) == {1, 2} and all(v > 0 for v in draft_ms.values())
