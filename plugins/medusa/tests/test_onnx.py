"""Export base + heads as one graph; the numpy + onnxruntime Medusa loop must give the
torch path's greedy tokens."""

import json

import numpy as np
import pytest
import torch
from engine_medusa.heads import HydraHeads, MedusaHeads
from engine_medusa.ort_path import OrtMedusaDecoder
from engine_medusa.tiny import char_codec, randomize_heads, tiny_gpt2, tiny_llama
from engine_medusa.torch_path import MedusaDecoder

from engine.artifacts import load_artifact
from engine.interfaces import GenerationConfig
from engine.testing import run_without

TREE = [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 0, 0]]
PROMPTS = ["Hello", "a longer prompt here", "xyz"]


@pytest.fixture(scope="module", params=[tiny_llama, tiny_gpt2])
def exported(request, tmp_path_factory):
    model = request.param()
    heads = randomize_heads(MedusaHeads(model.get_output_embeddings(), 4), seed=2)
    dec = MedusaDecoder.from_model(
        model, char_codec(), heads=heads, tree=TREE, topk=4, base_name=request.param.__name__, heads_dtype="float32"
    )
    path = dec.export_onnx(tmp_path_factory.mktemp("art") / "medusa")
    return dec, path


def test_graph_outputs_match_torch(exported):
    dec, path = exported
    art = load_artifact(path, provider="cpu")
    be = art.backend
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 90, (2, 6))
    pos = np.arange(6)[None].repeat(2, 0)
    allowed = np.tril(np.ones((6, 6), bool))[None].repeat(2, 0)
    be.reset()
    ort_logits = be.forward(ids, pos, allowed)
    dec.backend.reset()
    torch_logits = dec.backend.forward(ids, pos, allowed)
    np.testing.assert_allclose(ort_logits, torch_logits, atol=1e-4)
    np.testing.assert_allclose(be.hidden, dec.backend.hidden.numpy(), atol=1e-4)
    assert be.past[0].shape[2] == 6
    passes = art.artifact.manifest["models"]["medusa"]["passes"]  # engine.onnx_passes ran on the base graph
    if dec.base_name == "tiny_llama":  # RMSNorms, rotary, q/k/v and gate/up: fused and merged, parity as above
        assert passes == {"rms_norms_fused": 5, "rotary_embeddings_fused": 4, "matmuls_merged": 10}


def test_grouped_kv_attention_equals_transformers_attention_with_repeated_heads():
    """The export's grouped-query attention regroups the query heads instead of repeating the cache per
    head: the same numbers as transformers' own SDPA attention, with a mask and several new tokens."""
    from engine_medusa.export import grouped_kv_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    b, heads, kv_heads, t, s, d = 2, 6, 2, 3, 7, 8
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = heads // kv_heads, True
    q, k, v = torch.randn(b, heads, t, d), torch.randn(b, kv_heads, s, d), torch.randn(b, kv_heads, s, d)
    allowed = torch.rand(b, 1, t, s) > 0.3
    allowed[..., 0] = True
    mask = torch.zeros(b, 1, t, s).masked_fill(~allowed, torch.finfo(torch.float32).min)
    got, _ = grouped_kv_attention(module, q, k, v, mask, scaling=0.3)
    want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert got.shape == (b, t, heads, d)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_grouped_query_base_exports_without_repeating_its_cache(exported):
    """tiny_llama has 4 query heads on 2 key/value heads: its graph has no Expand (transformers'
    repeat_kv) of the cache; GPT-2 (one key/value head per head) exports as before."""
    import onnx

    dec, path = exported
    ops = [n.op_type for n in onnx.load(str(path / "medusa.onnx"), load_external_data=False).graph.node]
    cfg = dec.model.config
    if getattr(cfg, "num_key_value_heads", 0) and cfg.num_key_value_heads < cfg.num_attention_heads:
        assert ops.count("Expand") <= 1  # the logits-row gather's index only
    assert cfg._attn_implementation != "engine_grouped_kv"  # the torch model is given back as it was


def test_ort_heads_graph_runs_only_the_heads_a_tree_needs(exported):
    dec, path = exported
    be = load_artifact(path, provider="cpu").backend
    ids = np.array([[5, 9, 13]])
    allowed = np.tril(np.ones((3, 3), bool))[None]
    for backend in (be, dec.backend):
        backend.reset()
        backend.forward(ids, np.arange(3)[None], allowed)
    full = dec.backend.head_topk(np.array([2]), 4)
    for depth in (1, 3):
        got = be.head_topk(np.array([2]), 4, depth)
        assert got.shape == (1, depth, 4)
        np.testing.assert_array_equal(got, full[:, :depth])
        np.testing.assert_array_equal(dec.backend.head_topk(np.array([2]), 4, depth), full[:, :depth])


def test_ort_loop_gives_torch_greedy_tokens(exported):
    dec, path = exported
    ort_dec = load_artifact(path, provider="cpu")
    cfg = GenerationConfig(max_new_tokens=24, eos=False)
    for a, b in zip(dec.generate_batch(PROMPTS, cfg), ort_dec.generate_batch(PROMPTS, cfg), strict=True):
        assert a.tokens == b.tokens and a.text == b.text
        assert a.stats.steps == b.stats.steps
    assert (
        ort_dec.generate("Hello", GenerationConfig(max_new_tokens=8)).tokens
        == dec.generate("Hello", GenerationConfig(max_new_tokens=8)).tokens
    )


def test_ort_path_runs_with_torch_blocked(exported):
    """`engine decode medusa --artifact DIR` with torch and transformers unimportable gives
    the torch path's greedy tokens."""
    dec, path = exported
    want = dec.generate("Hi", GenerationConfig(max_new_tokens=6, eos=False)).tokens
    code = (
        "import contextlib, io, json, sys\n"
        "import engine.cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = engine.cli.main(['--json', 'decode', 'medusa', 'Hi', '--artifact', {str(path)!r},\n"
        "                            '--provider', 'cpu', '--max-new-tokens', '6', '--no-eos'])\n"
        "assert code == 0, code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(json.dumps(json.loads(out.getvalue())['results'][0]['tokens']))\n"
    )
    got = json.loads(run_without(code).strip().splitlines()[-1])
    assert tuple(got) == want


def test_ort_decoder_declares_what_it_runs_on(exported):
    _, path = exported
    ort_dec = load_artifact(path, provider="cpu")
    assert isinstance(ort_dec, OrtMedusaDecoder) and ort_dec.runs_artifact
    assert ort_dec.providers == ["CPUExecutionProvider"]
    assert ort_dec.name == "medusa" and "onnx-export" not in ort_dec.capabilities
    assert "stream" in ort_dec.capabilities


def test_export_refuses_to_replace_an_artifact_unless_told(exported, tmp_path):
    from engine.errors import ArtifactError

    dec, path = exported
    with pytest.raises(ArtifactError, match="already exists"):
        dec.export_onnx(path)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ArtifactError, match="not an engine artifact"):
        dec.export_onnx(tmp_path / "taken", overwrite=True)


@pytest.mark.parametrize("slots", [[[0, 1, 2, 5, 6], [0, 1, 2, 4, 4]], [[0, 1, 2, 3], [0, 1, 2, 3]]])
def test_keep_graph_equals_numpy_gather(exported, slots):
    """The CUDA path's gather graph and the CPU path's in-place numpy gather keep the same slots (a
    path accepted as a prefix of the tree gathers nothing); the CPU cache stays contiguous, which
    onnxruntime would otherwise copy at the next call."""
    _, path = exported
    art = load_artifact(path, provider="cpu")
    be = art.backend
    rng = np.random.default_rng(1)
    past = [rng.standard_normal((2, be.kvh, 7, be.hd)).astype(np.float32) for _ in be.past_names]
    slots = np.array(slots)
    feeds = {f"past_{i}": p for i, p in enumerate(past)}
    kept = be.keep_sess.run(None, {**feeds, "slots": slots})
    be.past = past
    be.keep(slots)
    for a, b in zip(kept, be.past, strict=True):
        np.testing.assert_array_equal(a, b)
        assert b.flags.c_contiguous


def _draft_heads(model, kind):
    """Hydra heads, or Medusa heads over a draft vocabulary (FR-Spec), with random weights."""
    lm_head = model.get_output_embeddings()
    if kind == "hydra":
        heads = HydraHeads(lm_head, 3, 1, True, torch.arange(10, 70), embedding=model.get_input_embeddings())
    else:
        heads = MedusaHeads(lm_head, 3, 2, True, torch.arange(5, 80))
    return randomize_heads(heads, seed=2)


@pytest.mark.parametrize("kind", ["hydra", "medusa-subset"])
def test_draft_heads_keep_greedy_output_on_both_backends(kind, tmp_path):
    """Hydra heads and a draft vocabulary change only the proposals: torch and onnxruntime give
    the base's own greedy tokens, and the same proposals (same number of steps)."""
    model = tiny_llama()
    tree = [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0]]
    dec = MedusaDecoder.from_model(
        model, char_codec(), heads=_draft_heads(model, kind), tree=tree, topk=4, base_name="t", heads_dtype="float32"
    )
    plain = MedusaDecoder.from_model(model, char_codec(), heads=None, base_name="t")
    ort_dec = load_artifact(dec.export_onnx(tmp_path / "art"), provider="cpu")
    assert ort_dec.backend.sequential_heads == (kind == "hydra")
    cfg = GenerationConfig(max_new_tokens=24, eos=False)
    rows = zip(
        dec.generate_batch(PROMPTS, cfg),
        ort_dec.generate_batch(PROMPTS, cfg),
        plain.generate_batch(PROMPTS, cfg),
        strict=True,
    )
    steps = []
    for a, b, c in rows:
        assert a.tokens == b.tokens == c.tokens
        assert a.stats.steps == b.stats.steps
        steps.append(a.stats.steps)
    assert sum(steps) < 3 * 24, "the heads never proposed an accepted token: the test would not see a wrong proposal"


def test_hydra_graph_equals_torch_heads(tmp_path):
    model = tiny_llama()
    heads = _draft_heads(model, "hydra")
    dec = MedusaDecoder.from_model(model, char_codec(), heads=heads, tree=[[0], [0, 0]], topk=4, heads_dtype="float32")
    be = load_artifact(dec.export_onnx(tmp_path / "art"), provider="cpu").backend
    assert len(be.hydra_heads) == heads.num_heads  # a graph per head (export format 4)
    ids = np.array([[5, 9, 13, 7], [4, 4, 30, 2]])
    allowed = np.tril(np.ones((4, 4), bool))[None].repeat(2, 0)
    for backend in (be, dec.backend):
        backend.reset()
        backend.forward(ids, np.arange(4)[None].repeat(2, 0), allowed)
    paths = np.array([[[11, 20], [11, 21]], [[40, 50], [41, 51]]])
    for head in (0, 1):
        got = be.path_topk(np.array([3, 1]), head, paths[..., : head + 1], 4)
        want = dec.backend.path_topk(np.array([3, 1]), head, paths[..., : head + 1], 4)
        np.testing.assert_array_equal(got, want)
        assert got.min() >= 10 and got.max() < 70  # token ids of the draft vocabulary


@pytest.mark.parametrize("mode", ["lossless", "typical"])
def test_sampling_on_onnxruntime_keeps_the_base_distribution_only_when_lossless(mode, tmp_path):
    """The chi-square check of the torch tests, on the onnxruntime back end: lossless sampling
    keeps the base's distribution of the first three tokens, typical acceptance does not."""
    from engine_medusa.decoding import Policy
    from test_decoding import _chi2_pvalue, _exact_joint, run

    model = tiny_llama(vocab=6, seed=4)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)  # peaky enough for acceptances
    heads = randomize_heads(MedusaHeads(model.get_output_embeddings(), 4), scale=0.5, seed=3)
    dec = MedusaDecoder.from_model(model, char_codec(6), heads=heads, tree=[[0]], topk=4, heads_dtype="float32")
    backend = load_artifact(dec.export_onnx(tmp_path / "art"), provider="cpu").backend
    prompt = [1, 4, 2]
    policy = Policy(temperature=0.8, mode=mode, rng=np.random.default_rng(0))
    tree = [[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0]]
    rows = run(backend, [prompt] * 6000, n=3, policy=policy, tree=tree)
    exact = _exact_joint(model, prompt, 0.8, 3)
    keys = sorted(exact)
    seqs = [tuple(r.tokens[:3]) for r in rows]
    counts = np.array([sum(1 for s in seqs if s == k) for k in keys], float)
    p = _chi2_pvalue(counts, np.array([exact[k] for k in keys]) * len(seqs))
    assert p > 1e-3 if mode == "lossless" else p < 1e-3
    assert np.mean([len(r.tokens) / r.steps for r in rows]) > 1.1  # the tree was used


def test_a_datastore_beside_the_heads_travels_into_the_artifact(tmp_path):
    """A datastore and an onnxruntime tree with a chain stored with the heads are exported with
    them; the artifact's decoder then verifies the chain by default (``chain=0`` turns it off),
    keeps the greedy tokens and takes fewer steps."""
    from engine_medusa.heads import heads_config, save_heads
    from engine_medusa.retrieval import Datastore

    model = tiny_llama(tied=True)
    lm_head = model.get_output_embeddings()
    heads = randomize_heads(MedusaHeads(lm_head, 2), seed=3)
    save_heads(tmp_path / "heads", heads, heads_config(heads, "custom", lm_head.weight))
    stored = {"onnxruntime": {"choices": [[0]], "chain": 3, "chain_share": 0.2}}
    (tmp_path / "heads" / "tree.json").write_text(json.dumps(stored))
    dec = MedusaDecoder.from_model(model, char_codec(), heads=tmp_path / "heads", tree=[[0]], heads_dtype="float32")
    cfg = GenerationConfig(max_new_tokens=24, eos=False)
    answers = [r.tokens for r in dec.generate_batch(PROMPTS, cfg)]
    Datastore.build(answers).save(tmp_path / "heads" / "datastore.npy")
    path = dec.export_onnx(tmp_path / "art")
    chained, plain = (load_artifact(path, provider="cpu", **c) for c in ({}, {"chain": 0}))
    assert (chained.artifact.config["chain"], chained.artifact.config["chain_share"]) == (3, 0.2)
    assert (chained.tree_info["chain"], chained.tree_info["chain_share"]) == (3, 0.2)
    assert chained.tree_info["datastore_tokens"] == sum(map(len, answers))
    assert (plain.tree_info["chain"], plain.tree_info["datastore_tokens"]) == (0, 0)  # read only for a chain
    assert load_artifact(path, provider="cpu", tree=[]).tree_info["chain"] == 0  # the greedy loop stays one
    runs = [d.generate_batch(PROMPTS, cfg) for d in (chained, plain)]
    assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]] == answers
    assert sum(r.stats.steps for r in runs[0]) < sum(r.stats.steps for r in runs[1])
    from engine_medusa.quantize import quantize_artifact

    quantized = load_artifact(quantize_artifact(path, tmp_path / "int8", "int8"), provider="cpu")
    assert "chain" not in quantized.artifact.config and quantized.tree_info["chain"] == 0  # exactness over it
