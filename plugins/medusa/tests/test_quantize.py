"""Quantized artifacts (``export_onnx(quantize=...)``, MatMulNBits): the manifest records the
scheme, every weight matrix is quantized (the tied LM head too, at 8 bits), and Medusa over a quantized
base gives exactly that base's own greedy tokens on these tiny models. (On SmolLM2 at
accuracy_level 4 it does not: see MODEL_CARD.md, "Quantized artifacts".)"""

import json

import onnx
import pytest
import torch
from engine_medusa import quality
from engine_medusa.heads import HydraHeads, MedusaHeads
from engine_medusa.quantize import quantize_artifact
from engine_medusa.tiny import char_codec, randomize_heads, tiny_gpt2, tiny_llama
from engine_medusa.torch_path import MedusaDecoder

from engine.artifacts import load_artifact, read_artifact
from engine.errors import UsageError
from engine.interfaces import GenerationConfig

TREE = [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 0, 0]]
PROMPTS = ["Hello", "a longer prompt here", "xyz", "the cat sat on"]


def tied_llama(seed=0):
    return tiny_llama(seed=seed, tied=True)


def decoder(make):
    model = make()
    heads = randomize_heads(MedusaHeads(model.get_output_embeddings(), 4), seed=2)
    return MedusaDecoder.from_model(model, char_codec(), heads=heads, tree=TREE, topk=4, heads_dtype="float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export (the slow part); the quantized artifacts are made from it as the bench makes them.
    ``export_onnx(quantize=...)`` itself runs through the CLI in test_cli.py."""
    dec = decoder(tied_llama)
    root = tmp_path_factory.mktemp("quant")
    fp32 = dec.export_onnx(root / "fp32")
    return dec, {"fp32": fp32} | {q: quantize_artifact(fp32, root / q, q) for q in ("int4", "int4-b128", "int8")}


def weight_matmuls(path):
    """(MatMuls whose weight is a constant or a Transpose of one, MatMulNBits) of a graph."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def constant(name):
        node = producer.get(name)
        return name in inits or (node is not None and node.op_type == "Transpose" and node.input[0] in inits)

    plain = [n.name for n in model.graph.node if n.op_type == "MatMul" and constant(n.input[1])]
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    return plain, nbits


@pytest.mark.parametrize(("scheme", "bits", "block"), [("int4", 4, 32), ("int4-b128", 4, 128), ("int8", 8, 32)])
def test_every_weight_matrix_is_quantized_and_the_manifest_says_how(exported, scheme, bits, block):
    _, paths = exported
    art = read_artifact(paths[scheme])
    q = art.config["quantization"]
    assert q["scheme"] == "matmulnbits" and q["bits"] == bits and q["block_size"] == block
    assert q["tool"].startswith("onnxruntime ") and q["graphs"] == ["medusa", "heads", "hydra_[0-9]*"]
    assert q.get("head_bits", 8) == 8  # the LM head at 8 bits in both schemes
    for graph in ("medusa", "heads"):
        plain, nbits = weight_matmuls(art.file(f"{graph}.onnx"))
        assert plain == [] and nbits, graph
        bits = {n.output[0]: next(a.i for a in n.attribute if a.name == "bits") for n in nbits}
        assert {next(a.i for a in n.attribute if a.name == "block_size") for n in nbits} == {block}, graph
        assert bits.pop("logits", 8) == 8 and set(bits.values()) == {q["bits"]}, graph
    assert "logits" in {n.output[0] for n in weight_matmuls(art.file("medusa.onnx"))[1]}
    assert "quantization" not in read_artifact(paths["fp32"]).config  # fp32 stays the default
    fp32_plain, _ = weight_matmuls(read_artifact(paths["fp32"]).file("medusa.onnx"))
    assert len(fp32_plain) == len(weight_matmuls(art.file("medusa.onnx"))[1])  # the LM heads included


@pytest.mark.parametrize("scheme", ["int4", "int4-b128", "int8"])
def test_medusa_over_a_quantized_base_is_that_bases_greedy_loop(exported, scheme):
    """On the tiny model (no near ties) the outputs match; on SmolLM2 int8 activations make a
    tree with siblings and a one-token step differ at near ties, so such a tree does not claim
    exact-greedy (see MODEL_CARD.md)."""
    _, paths = exported
    medusa = load_artifact(paths[scheme], provider="cpu")
    assert "exact-greedy" not in medusa.capabilities and "batch" in medusa.capabilities
    assert "exact-greedy" in load_artifact(paths["fp32"], provider="cpu").capabilities
    plain = load_artifact(paths[scheme], provider="cpu", tree=[])  # the same graphs, no tree
    cfg = GenerationConfig(max_new_tokens=32, eos=False)
    got, want = medusa.generate_batch(PROMPTS, cfg), plain.generate_batch(PROMPTS, cfg)
    assert [r.tokens for r in got] == [r.tokens for r in want]
    assert sum(r.stats.steps for r in got) < sum(r.stats.steps for r in want)  # the tree did accept tokens
    for p in PROMPTS:  # batch 1, as the bench runs
        assert medusa.generate(p, cfg).tokens == plain.generate(p, cfg).tokens


@pytest.mark.parametrize("scheme", ["int4", "int8"])
def test_a_quantized_base_claims_exact_greedy_only_with_a_chain_on_row_independent_kernels(
    exported, scheme, monkeypatch
):
    """A chain tree puts every node at the column the greedy loop gives it; then, where this CPU's
    kernels give a row the same logits whatever the call's row count (probed at load), Medusa is the
    quantized base's greedy loop and says so. The probe's answer depends on the CPU; both are checked."""
    from engine_medusa.ort_path import OrtBackend

    _, paths = exported
    chain = load_artifact(paths[scheme], provider="cpu", tree=[[0], [0, 0], [0, 0, 0]])
    independent = chain.backend.rows_independent()
    assert ("exact-greedy" in chain.capabilities) == independent
    assert chain.backend.past is None  # the probe left the decoder's cache as it was
    if independent:
        plain = load_artifact(paths[scheme], provider="cpu", tree=[])
        cfg = GenerationConfig(max_new_tokens=32, eos=False)
        assert [chain.generate(p, cfg).tokens for p in PROMPTS] == [plain.generate(p, cfg).tokens for p in PROMPTS]
    monkeypatch.setattr(OrtBackend, "rows_independent", lambda self: False)
    again = load_artifact(paths[scheme], provider="cpu", tree=[[0], [0, 0]])
    assert "exact-greedy" not in again.capabilities
    assert "exact-greedy" in load_artifact(paths[scheme], provider="cpu", tree=[]).capabilities


def test_is_chain():
    from engine_medusa.tree import is_chain

    assert is_chain([]) and is_chain([[0]]) and is_chain([[0], [0, 1]]) and is_chain([[1], [1, 0], [1, 0, 0]])
    assert not is_chain([[0], [1]]) and not is_chain([[0], [0, 0], [1]]) and not is_chain([[0], [1, 0]])


@pytest.mark.parametrize("shared_projection", [True, False])
def test_an_artifact_with_hydra_heads_quantizes_its_base(tmp_path, shared_projection):
    """Hydra heads (the default kind) have no "heads" graph: the base's matrices and every weight of
    each head's own graph are quantized, with a projection shared by the heads or one each; the path
    embeddings and the cache gather are copied, and the tree still gives the quantized base's own
    greedy tokens (the heads only propose)."""
    model = tied_llama()
    embedding, lm_head = model.get_input_embeddings(), model.get_output_embeddings()
    heads = HydraHeads(lm_head, 3, 1, shared_projection, torch.arange(10, 70), embedding=embedding)
    heads = randomize_heads(heads, seed=2)
    dec = MedusaDecoder.from_model(model, char_codec(), heads=heads, tree=TREE[:5], topk=4, heads_dtype="float32")
    fp32 = dec.export_onnx(tmp_path / "fp32")
    art = read_artifact(quantize_artifact(fp32, tmp_path / "int4", "int4"))
    assert "heads" not in art.manifest["models"] and art.config["quantization"]["bits"] == 4
    quantized = {"medusa", "hydra_0", "hydra_1", "hydra_2"}
    assert set(art.manifest["models"]) == quantized | {"hydra_embed", "keep"}
    for graph in quantized:
        plain, nbits = weight_matmuls(art.file(f"{graph}.onnx"))
        assert plain == [] and nbits, graph
    assert len(weight_matmuls(art.file("hydra_2.onnx"))[1]) == 1 + 1 + 1  # mix, the block, the projection
    for graph in set(art.manifest["models"]) - quantized:  # copied byte for byte
        name = art.manifest["models"][graph]["file"]
        assert art.file(name).read_bytes() == read_artifact(fp32).file(name).read_bytes()
    cfg = GenerationConfig(max_new_tokens=24, eos=False)
    medusa, greedy = (load_artifact(art.path, provider="cpu", tree=t) for t in (TREE[:5], []))
    assert [r.tokens for r in medusa.generate_batch(PROMPTS, cfg)] == [
        r.tokens for r in greedy.generate_batch(PROMPTS, cfg)
    ]


def test_a_quantized_artifact_is_not_quantized_again(exported, tmp_path):
    _, paths = exported
    with pytest.raises(UsageError, match="already quantized"):
        quantize_artifact(paths["int4"], tmp_path / "again", "int8")


def test_a_gpt2_base_quantizes_too(tmp_path):
    """GPT-2's Conv1D layers export as MatMuls with constant weights: all of them become MatMulNBits
    (the graph is built straight from export_graphs, without a full artifact)."""
    from engine_medusa.export import export_graphs
    from engine_medusa.quantize import quantize_graphs, scheme_config

    dec = decoder(tiny_gpt2)
    (tmp_path / "fp32").mkdir(), (tmp_path / "q").mkdir()
    models = export_graphs(dec.model, dec.heads, tmp_path / "fp32", 4)
    quantize_graphs(tmp_path / "fp32", tmp_path / "q", scheme_config("int4"), models)
    for graph in ("medusa", "heads"):
        plain, nbits = weight_matmuls(tmp_path / "q" / f"{graph}.onnx")
        assert plain == [] and nbits


def test_quality_measures(exported):
    _, paths = exported
    fp32 = load_artifact(paths["fp32"], provider="cpu", tree=[])
    int8 = load_artifact(paths["int8"], provider="cpu", tree=[])
    cfg = GenerationConfig(max_new_tokens=12, eos=False)
    prompts = [fp32.encode(p) for p in PROMPTS]
    answers = [list(r.tokens) for r in fp32.generate_batch(PROMPTS, cfg)]
    assert quality.greedy_match(fp32.backend, prompts, answers) == 1.0  # teacher forcing = its own greedy loop
    assert 0.5 <= quality.greedy_match(int8.backend, prompts, answers) <= 1.0
    ppl32 = quality.perplexity(fp32.backend, prompts)
    assert 1.0 < ppl32 < 200 and abs(quality.perplexity(int8.backend, prompts) - ppl32) < 0.1 * ppl32
    assert quality.prefix_agreement([[1, 2, 3], [4, 5]], [[1, 2, 9], [4, 5]]) == 4 / 5


def test_a_quantized_export_of_the_default_heads_carries_their_quantized_companion(tmp_path, monkeypatch):
    """The default heads were trained for the fp32 base; a quantized export of them carries the heads
    fine-tuned for the quantized base (``QUANTIZED_HEADS``) and their stored onnxruntime tree, an fp32
    export the default heads; other heads are exported as they are."""
    from engine_medusa import component
    from engine_medusa.heads import heads_config, save_heads

    model = tied_llama()
    lm_head = model.get_output_embeddings()
    for name, n, seed in (("default", 2, 3), ("quantized", 3, 4)):
        heads = randomize_heads(MedusaHeads(lm_head, n), seed=seed)
        save_heads(tmp_path / name, heads, heads_config(heads, "custom", lm_head.weight))
    (tmp_path / "quantized" / "tree.json").write_text(json.dumps({"onnxruntime": {"choices": [[0], [0, 0]]}}))
    monkeypatch.setattr(component, "DEFAULT_HEADS", (tmp_path / "default").resolve())
    monkeypatch.setattr(component, "QUANTIZED_HEADS", tmp_path / "quantized")
    dec = MedusaDecoder.from_model(model, char_codec(), heads=tmp_path / "default", tree=[[0]], heads_dtype="float32")
    exports = {q: read_artifact(dec.export_onnx(tmp_path / f"art-{q}", quantize=q)).config for q in (None, "int8")}
    assert (exports[None]["num_heads"], exports[None]["tree"]) == (2, [[0]])
    assert (exports["int8"]["num_heads"], exports["int8"]["tree"]) == (3, [[0], [0, 0]])
    monkeypatch.setattr(component, "DEFAULT_HEADS", tmp_path / "elsewhere")
    assert read_artifact(dec.export_onnx(tmp_path / "art-other", quantize="int8")).config["num_heads"] == 2
