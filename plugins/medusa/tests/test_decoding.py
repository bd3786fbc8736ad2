import math

import numpy as np
import pytest
import torch
from engine_medusa.base import TorchBackend
from engine_medusa.decoding import Policy, medusa_generate, propose
from engine_medusa.heads import MedusaHeads
from engine_medusa.retrieval import ChainLookup, Datastore, open_datastore
from engine_medusa.tiny import randomize_heads, tiny_gpt2, tiny_llama
from engine_medusa.tree import build_tree

from engine.errors import EngineError, UsageError

TREE = [[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 0, 0]]
PROMPTS = [[5, 6, 7, 8, 9], [10, 11, 3], [4] * 12, [30, 31, 32, 33, 34, 35, 36]]


def backend_for(model, seed=1, scale=0.3):
    heads = randomize_heads(MedusaHeads(model.get_output_embeddings(), 4), scale=scale, seed=seed)
    return TorchBackend(model, heads)


def hf_greedy(model, prompt, n):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt) :].tolist()


def run(backend, prompts, tree=TREE, n=30, policy=None, **kw):
    rows, _ = medusa_generate(
        backend,
        prompts,
        tree=build_tree(tree, 4),
        policy=policy or Policy(),
        max_new_tokens=n,
        decode=lambda t: "".join(chr(65 + x % 26) for x in t),
        **kw,
    )
    return rows


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_greedy_medusa_equals_hf_generate_batched(make):
    model = make()
    rows = run(backend_for(model), PROMPTS, n=40)
    for p, r in zip(PROMPTS, rows, strict=True):
        assert r.tokens == hf_greedy(model, p, 40)
    assert any(r.steps < len(r.tokens) for r in rows)  # some candidates were accepted


def test_context_lookup_copies_the_tokens_after_the_latest_earlier_occurrence():
    lookup = ChainLookup(2, [1, 2, 3, 9, 1, 2, 4, 1])
    assert lookup.propose(1) == []  # (4, 1) has not occurred before
    lookup.extend([2])
    assert lookup.propose(3) == [4, 1, 2]  # (1, 2) was followed by 3, then later by 4: the latest wins
    assert ChainLookup(3, [7, 7]).propose(1) == []  # shorter than n


def test_the_datastore_gives_the_most_frequent_continuation_of_the_longest_suffix_found():
    store = Datastore.build([[1, 2, 3, 4, 5], [9, 2, 3, 4, 6, 1], [2, 3, 7], [0, 2, 3, 4, 6, 1]])
    assert len(store) == 20
    assert store.propose([2, 3], 4) == [4, 6, 1]  # 2 3 -> 4 (3 of 4), then 6 (2 of those 3), 1; then they end
    assert store.propose([2, 3], 4, min_share=0.6) == [4]  # 6 continues 2 of the 4 occurrences: below 0.6
    assert store.propose([2, 3], 4, min_share=0.5) == [4, 6, 1]
    assert store.propose([1, 2, 3], 2) == [4, 5]  # the longest suffix found (1 2 3) decides
    assert store.propose([5, 7], 2) == []  # 7 ends its answer: nothing follows
    assert store.propose([8, 8], 2) == []  # not in the store
    assert ChainLookup(2, [8, 8, 2, 3], store).propose(2) == [4, 6]  # no context match: the store's


def test_a_datastore_round_trips_and_refuses_bad_input(tmp_path):
    store = Datastore.build([[1, 2, 3], [2, 3, 4]])
    again = Datastore.load(store.save(tmp_path / "d.npy"))
    assert again.propose([2, 3], 1) == store.propose([2, 3], 1) and not list(tmp_path.glob(".*tmp"))
    with pytest.raises(UsageError, match="too large"):
        Datastore.build([[70000]])
    with pytest.raises(UsageError, match="separator"):
        Datastore(np.array([1, 2, 3]))
    (tmp_path / "junk.npy").write_text("junk")
    with pytest.raises(UsageError, match="not a token array"):
        open_datastore(tmp_path / "junk.npy")
    with pytest.raises(UsageError, match="does not exist"):
        open_datastore(tmp_path / "none.npy")
    assert open_datastore(tmp_path) is None  # a folder without one


class _StubHeads:
    """Head k proposes token 100 * (k + 1) + rank; sequential heads also record the paths they read."""

    def __init__(self, sequential: bool):
        self.sequential_heads, self.paths = sequential, []

    def head_topk(self, last, k, depth):
        return np.array([[[100 * (h + 1) + r for r in range(k)] for h in range(depth)]] * len(last))

    def path_topk(self, last, head, paths, k):
        self.paths.append(paths.copy())
        return np.array([[[100 * (head + 1) + r for r in range(k)]] * paths.shape[1]] * len(last))


@pytest.mark.parametrize("sequential", [False, True])
def test_a_lookup_token_takes_the_place_of_the_roots_last_child(sequential):
    """Row 0 has a lookup token (55), row 1 none (-1), row 2 one a child already holds (100).
    A wide root keeps its best candidates; a chain's one candidate is replaced, and sequential
    (Hydra) heads then read the lookup token on the path they extend."""
    wide, chain = build_tree([[0], [1], [0, 0]], 4), build_tree([[0], [0, 0]], 4)
    root, copied, last = np.array([7, 8, 9]), np.array([55, -1, 100]), np.zeros(3, np.int64)
    tokens = propose(_StubHeads(sequential), wide, last, root, None, copied)
    node = {c: wide.choices.index(c) + 1 for c in ((0,), (1,), (0, 0))}
    assert tokens[:, node[(0,)]].tolist() == [100, 100, 100]  # the best stays
    assert tokens[:, node[(1,)]].tolist() == [55, 101, 101]
    heads = _StubHeads(sequential)
    tokens = propose(heads, chain, last, root, None, copied)
    assert tokens[:, 1].tolist() == [55, 100, 100]
    if sequential:
        assert heads.paths[1][:, 0].tolist() == [[7, 55], [8, 100], [9, 100]]


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
@pytest.mark.parametrize("tree", [[[0]], TREE])
def test_prompt_lookup_keeps_the_greedy_output(make, tree):
    """Lookup candidates are only candidates: verification keeps the base's greedy tokens."""
    model = make()
    prompts = [*PROMPTS, [9, 8, 9, 8, 9, 8, 9, 8, 9]]  # repeats: the lookup has tokens to copy
    rows = run(backend_for(model), prompts, tree=tree, n=30, lookup=2)
    assert [r.tokens for r in rows] == [hf_greedy(model, p, 30) for p in prompts]


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
@pytest.mark.parametrize(("tree", "share"), [([], 0.0), ([[0]], 0.0), (TREE, 0.0), ([[0]], 0.5)])
def test_a_retrieved_chain_beside_the_tree_keeps_the_greedy_output(make, tree, share):
    """Chains from the context or a store (built from the model's own answers, so they are often
    right) are verified beside the heads' candidates: tokens equal greedy, and fewer steps."""
    model = make()
    prompts = [*PROMPTS, [9, 8, 9, 8, 9, 8, 9, 8, 9]]
    answers = [hf_greedy(model, p, 30) for p in prompts]
    store = Datastore.build(answers[::2])
    plain = run(backend_for(model), prompts, tree=tree, n=30)
    rows = run(backend_for(model), prompts, tree=tree, n=30, lookup=2, chain=4, datastore=store, chain_share=share)
    assert [r.tokens for r in rows] == answers
    assert sum(r.steps for r in rows) < sum(r.steps for r in plain)


def test_heads_at_identity_predict_repeats_and_stay_exact():
    model = tiny_llama()
    be = TorchBackend(model, MedusaHeads(model.get_output_embeddings(), 4))
    rows = run(be, PROMPTS[:2], n=25)
    assert [r.tokens for r in rows] == [hf_greedy(model, p, 25) for p in PROMPTS[:2]]


def test_eos_and_stop_strings_and_streaming():
    model = tiny_llama()
    ref = hf_greedy(model, PROMPTS[0], 30)
    eos = ref[7]
    rows = run(backend_for(model), [PROMPTS[0]], n=30, eos_ids=(eos,))
    assert rows[0].tokens == ref[: ref.index(eos) + 1]
    text = "".join(chr(65 + x % 26) for x in ref)
    stop = text[10:12]
    pieces = []
    rows = run(backend_for(model), [PROMPTS[0]], n=30, stop=(stop,), stream=pieces.append)
    assert rows[0].text == text[: text.find(stop)]
    assert "".join(pieces) == rows[0].text
    assert rows[0].done


def test_bad_input_is_refused():
    be = backend_for(tiny_llama())
    with pytest.raises(UsageError, match="max_new_tokens"):
        run(be, [[1, 2]], n=0)
    with pytest.raises(UsageError, match="empty prompt"):
        run(be, [[]])
    with pytest.raises(UsageError, match="context"):
        run(be, [[3] * 300])
    with pytest.raises(UsageError, match="one prompt"):
        run(be, [[1], [2]], stream=print)


def test_non_finite_logits_are_an_error():
    model = tiny_llama()
    with torch.no_grad():
        model.get_output_embeddings().weight[0, 0] = float("nan")
    with pytest.raises(EngineError, match="non-finite"):
        run(backend_for(model), [[1, 2, 3]])


def test_context_end_stops_cleanly():
    rows = run(backend_for(tiny_llama()), [[3] * 240], n=100)
    assert 0 < len(rows[0].tokens) <= 256 - 240


def _exact_joint(model, prompt, temperature, n):
    """P(x1..xn | prompt) for every sequence (small vocab), by full forwards."""
    probs = {(): 1.0}
    for _ in range(n):
        nxt = {}
        for seq, p in probs.items():
            with torch.no_grad():
                logits = model(torch.tensor([prompt + list(seq)])).logits[0, -1].double()
            q = torch.softmax(logits / temperature, -1).numpy()
            for x, qx in enumerate(q):
                nxt[seq + (x,)] = p * qx
        probs = nxt
    return probs


def _chi2_pvalue(counts, expected):
    """Pearson chi-square with cells of expected < 5 pooled; Wilson-Hilferty p-value."""
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    k = int(keep.sum()) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def _lossless_counts(model, prompt, verify_mode, samples, seed=0):
    be = backend_for(model, seed=3, scale=0.5)
    policy = Policy(temperature=0.8, mode=verify_mode, rng=np.random.default_rng(seed))
    rows = run(be, [prompt] * samples, n=3, policy=policy, tree=[[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0]])
    return [tuple(r.tokens[:3]) for r in rows], rows


def test_lossless_sampling_keeps_the_base_distribution():
    vocab = 6
    model = tiny_llama(vocab=vocab, seed=4)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)  # peaky enough for acceptances
    prompt = [1, 4, 2]
    exact = _exact_joint(model, prompt, 0.8, 3)
    seqs, rows = _lossless_counts(model, prompt, "lossless", 6000)
    keys = sorted(exact)
    counts = np.array([sum(1 for s in seqs if s == k) for k in keys], float)
    expected = np.array([exact[k] for k in keys]) * len(seqs)
    assert _chi2_pvalue(counts, expected) > 1e-3
    # the tree really was used: several tokens were accepted per step on average
    assert np.mean([len(r.tokens) / r.steps for r in rows]) > 1.1


def test_chi2_check_has_power_against_a_biased_sampler():
    vocab = 6
    model = tiny_llama(vocab=vocab, seed=4)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
    prompt = [1, 4, 2]
    exact = _exact_joint(model, prompt, 0.8, 3)
    keys = sorted(exact)
    # typical acceptance is not distribution-preserving: the same check must reject it
    seqs, _ = _lossless_counts(model, prompt, "typical", 6000)
    counts = np.array([sum(1 for s in seqs if s == k) for k in keys], float)
    expected = np.array([exact[k] for k in keys]) * len(seqs)
    assert _chi2_pvalue(counts, expected) < 1e-3


def test_generation_reports_each_step_to_the_host_and_can_be_cancelled():
    from engine_medusa.tiny import char_codec
    from engine_medusa.torch_path import MedusaDecoder

    import engine
    from engine.errors import Cancelled
    from engine.progress import CancelToken, cancellation

    model = tiny_llama()
    heads = randomize_heads(MedusaHeads(model.get_output_embeddings(), 4))
    decoder = MedusaDecoder.from_model(model, char_codec(), heads=heads, tree=TREE, topk=4, heads_dtype="float32")
    events = []
    engine.Engine(autoload=False, on_progress=events.append).observe(decoder)
    result = decoder.generate("hello", {"max_new_tokens": 12, "eos": False})
    steps = [e for e in events if e.task == "generate" and not e.done]
    assert len(steps) == result.stats.steps - 1 > 0 and events[-1].done  # the first token comes from the prefill
    with cancellation(CancelToken(deadline=0)), pytest.raises(Cancelled, match="generate stopped"):
        decoder.generate("hello", {"max_new_tokens": 12, "eos": False})
