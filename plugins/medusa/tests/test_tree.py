import numpy as np
import pytest
from engine_medusa.tree import build_tree, expected_accept, grow_tree, tree_tokens

from engine.errors import UsageError

EXAMPLE = [[0], [0, 0], [0, 1], [0, 2], [1], [1, 0], [1, 1], [1, 2]]


def test_worked_example_from_the_notes():
    t = build_tree(EXAMPLE, topk=10)
    assert t.tree_indices.tolist() == [0, 1, 2, 11, 12, 13, 11, 12, 13]
    assert t.positions.tolist() == [0, 1, 1, 2, 2, 2, 2, 2, 2]
    assert t.retrieve.tolist() == [[0, 2, 8], [0, 2, 7], [0, 2, 6], [0, 1, 5], [0, 1, 4], [0, 1, 3]]


def test_attention_is_ancestors_and_self():
    t = build_tree(EXAMPLE, topk=10)
    # node 8 = [1, 2]: sees root, [1] (node 2) and itself
    assert np.flatnonzero(t.attn[8]).tolist() == [0, 2, 8]
    assert np.flatnonzero(t.attn[1]).tolist() == [0, 1]
    assert t.parent.tolist() == [-1, 0, 0, 1, 1, 1, 2, 2, 2]
    assert t.children[0] == (1, 2) and t.children[2] == (6, 7, 8)


def test_tree_tokens_pick_head_ranks():
    t = build_tree([[0], [1], [0, 0], [1, 1]], topk=3)
    root = np.array([7])
    topk = np.array([[[10, 11, 12], [20, 21, 22]]])
    # nodes: root, [0], [1], [0,0], [1,1]
    assert tree_tokens(t, root, topk).tolist() == [[7, 10, 11, 20, 21]]


def test_empty_tree_is_root_only():
    t = build_tree([])
    assert t.size == 1 and t.depth == 0 and t.retrieve.tolist() == [[0]]


@pytest.mark.parametrize("bad", [[[0], [0]], [[0, 1]], [[-1]], [[]]])
def test_bad_choices_are_refused(bad):
    with pytest.raises(UsageError):
        build_tree(bad)


def test_rank_beyond_topk_is_refused():
    with pytest.raises(UsageError, match="top-k"):
        build_tree([[0], [5]], topk=3)


def test_grow_tree_greedy_order_and_expectation():
    acc = np.array([[0.6, 0.2, 0.1], [0.4, 0.1, 0.05]])
    # values: (0,)=.6 (1,)=.2 (0,0)=.24 (0,1)=.06 (2,)=.1 (1,0)=.08
    assert grow_tree(acc, 1) == [[0]]
    assert grow_tree(acc, 3) == [[0], [1], [0, 0]]
    assert grow_tree(acc, 4) == [[0], [1], [2], [0, 0]]
    assert expected_accept([[0], [0, 0]], acc) == pytest.approx(1 + 0.6 + 0.24)
    # the greedy tree maximises the expectation among trees of its size here
    assert expected_accept(grow_tree(acc, 3), acc) >= expected_accept([[0], [0, 0], [0, 1]], acc)


def test_tree_choice_charges_the_heads_a_deeper_tree_reads():
    from engine_medusa.tuning import choose_tree

    acc = np.array([[0.6, 0.2, 0.1], [0.4, 0.1, 0.05]])
    flat = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}
    best, _ = choose_tree(acc, flat, 4)  # free steps: the largest expectation wins
    assert best["choices"] == [[0], [1], [0, 0]]
    # the second head costs more than its 0.24 expected tokens bring: one deep and wider wins
    best, table = choose_tree(acc, flat, 4, {1: 0.05, 2: 0.5})
    assert best["choices"] == [[0], [1], [2]] and best["depth"] == 1
    assert best["expected_speedup"] == pytest.approx(1.9 / 1.05, abs=1e-3)
    deep = next(r for r in table if r["choices"] == [[0], [1], [0, 0]])
    assert deep["relative_step_cost"] == pytest.approx(1.5)
    assert len({str(r["choices"]) for r in table}) == len(table)


def test_tree_choice_among_chains_only():
    """For a quantized base the tuner tries chains only (one node per depth, the top rank each):
    the deepest pays when steps are free; no tree when a second token costs too much."""
    from engine_medusa.tree import is_chain
    from engine_medusa.tuning import choose_tree

    acc = np.array([[0.6, 0.2, 0.1], [0.4, 0.1, 0.05]])
    best, table = choose_tree(acc, {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}, 4, chains=True)
    assert best["choices"] == [[0], [0, 0]] and all(is_chain(r["choices"]) for r in table)
    assert {str(r["choices"]) for r in table} == {"[]", "[[0]]", "[[0], [0, 0]]"}
    best, _ = choose_tree(acc, {1: 1.0, 2: 2.0, 3: 3.0}, 4, chains=True)
    assert best["choices"] == []


def test_tree_choice_pays_for_a_retrieved_chains_rows():
    """With a chain of 2 verified beside every tree, a tree of q nodes costs q + 2 rows (the chain's
    tokens are not counted): rows that grow in cost make a narrower tree win."""
    from engine_medusa.tuning import choose_tree

    acc = np.array([[0.6, 0.2, 0.1]])
    latency = {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 2.0, 6: 3.0}
    assert choose_tree(acc, latency, 4)[0]["choices"] == [[0], [1], [2]]
    best, table = choose_tree(acc, latency, 4, extra_rows=2)
    assert best["choices"] == [[0]] and best["relative_step_cost"] == pytest.approx(1.0)
    assert next(r for r in table if r["nodes"] == 4)["relative_step_cost"] == pytest.approx(3.0)


def test_step_latency_times_every_size_and_depth():
    from engine_medusa.tuning import step_latency

    class Backend:
        sequential_heads = drafting = False
        calls = []

        def reset(self):
            pass

        def forward(self, ids, positions, allowed):
            assert allowed.shape[1:] == (ids.shape[1], positions.max() + 1)
            self.calls.append(("forward", ids.shape[1]))

        def keep(self, slots):
            pass

        def head_topk(self, index, k, depth):
            self.calls.append(("heads", depth))

    latency, heads = step_latency(Backend(), [1, 3], [1, 2], topk=4, past=8, repeats=2)
    assert set(latency) == {1, 3} and set(heads) == {1, 2}
    assert Backend.calls.count(("forward", 3)) == 3 and Backend.calls.count(("heads", 2)) == 3


def test_sequential_tree_tokens_feed_each_head_its_path():
    """Hydra: head d is asked once per node at depth d that has children, with that node's path
    (root first); each child takes the candidate of its rank."""
    from engine_medusa.tree import build_tree, tree_tokens_sequential

    tree = build_tree([[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0]], topk=3)
    calls = []

    def topk_at(head, paths, nodes):
        calls.append((head, paths.tolist(), list(nodes)))
        # candidates that encode the path: 100 * head + 10 * last token + rank (mod 1000)
        return (100 * (head + 1) + 10 * paths[..., -1:] + np.arange(3)) % 1000

    tokens = tree_tokens_sequential(tree, np.array([7]), topk_at)
    assert [c[0] for c in calls] == [0, 1, 2]
    assert calls[0][1] == [[[7]]]  # the root's path
    node = {c: i + 1 for i, c in enumerate(tree.choices)}
    t = tokens[0]
    assert t[0] == 7 and t[node[(0,)]] == 170 and t[node[(1,)]] == 171
    assert calls[1][1] == [[[7, 170], [7, 171]]]  # both depth-1 nodes have children
    assert t[node[(0, 0)]] == (200 + 1700) % 1000 and t[node[(0, 1)]] == (201 + 1700) % 1000
    assert t[node[(1, 0)]] == (200 + 1710) % 1000
    assert calls[2][1] == [[[7, 170, 900]]]  # only [0, 0] has a child
    assert [c[2] for c in calls] == [[0], [node[(0,)], node[(1,)]], [node[(0, 0)]]]  # the nodes asked about
    assert t[node[(0, 0, 0)]] == (300 + 9000) % 1000


def test_grow_tree_compares_float32_accuracies_in_float64():
    """0.7 * 0.7 in float32 rounds down to exactly the rank-1 accuracy b below; the exact product
    (float64) is larger, so the child [0, 0] beats the sibling [1] for the second node."""
    b = np.float32(0.7) * np.float32(0.7)  # float32 product: 0.48999998
    assert float(np.float32(0.7)) ** 2 > float(b)
    acc = np.array([[0.7, b], [0.7, 0.1]], dtype=np.float32)
    assert grow_tree(acc, 2) == [[0], [0, 0]]
    assert grow_tree(acc.astype(np.float64), 2) == [[0], [0, 0]]
