import numpy as np
from engine_medusa.tree import build_tree
from engine_medusa.verify import verify_greedy, verify_lossless, verify_typical, warp

TREE = build_tree([[0], [1], [0, 0], [0, 1], [1, 0]], topk=2)  # nodes: root,[0],[1],[0,0],[0,1],[1,0]


def onehot_logits(argmaxes, vocab=8):
    logits = np.zeros((len(argmaxes), vocab), np.float32)
    logits[np.arange(len(argmaxes)), argmaxes] = 5.0
    return logits


def test_greedy_takes_the_longest_matching_path_and_next_root():
    tokens = np.array([1, 2, 3, 4, 5, 6])
    # base argmax after root = 3 (node [1]); after node [1] = 6 (node [1,0]); after [1,0] = 7
    logits = onehot_logits([3, 0, 6, 0, 0, 7])
    path, nxt = verify_greedy(TREE, tokens, logits)
    assert path.tolist() == [0, 2, 5] and nxt == 7


def test_greedy_rejects_everything():
    tokens = np.array([1, 2, 3, 4, 5, 6])
    path, nxt = verify_greedy(TREE, tokens, onehot_logits([7, 0, 0, 0, 0, 0]))
    assert path.tolist() == [0] and nxt == 7


def test_warp_top_k_and_top_p():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.count_nonzero(warp(logits, 1.0, top_k=2)) == 2
    p = warp(logits, 1.0, top_p=0.75)  # 0.5 alone is short of 0.75; 0.5 + 0.3 reaches it
    np.testing.assert_allclose(p, [[0.625, 0.375, 0, 0]])
    np.testing.assert_allclose(warp(logits, 1.0), [[0.5, 0.3, 0.15, 0.05]], rtol=1e-6)


def test_lossless_with_a_certain_base_accepts_its_token():
    tokens = np.array([1, 2, 3, 4, 5, 6])
    logits = onehot_logits([3, 0, 6, 0, 0, 7]) * 100  # deterministic targets
    path, nxt = verify_lossless(TREE, tokens, logits, temperature=1.0, rng=np.random.default_rng(0))
    assert path.tolist() == [0, 2, 5] and nxt == 7


def test_typical_threshold():
    tokens = np.array([1, 2, 3, 4, 5, 6])
    logits = np.zeros((6, 8), np.float32)  # uniform: p = 1/8 > min(0.09, 0.3 e^-H) everywhere
    path, _ = verify_typical(TREE, tokens, logits, temperature=1.0, rng=np.random.default_rng(0))
    assert len(path) == 3
    logits[0, 2] = logits[0, 3] = -50.0  # children of the root now impossible
    path, _ = verify_typical(TREE, tokens, logits, temperature=1.0, rng=np.random.default_rng(0))
    assert path.tolist() == [0]


def test_greedy_on_a_tree_with_a_shallow_leaf_stops_at_the_leaf():
    # nodes: root, [0], [1], [0, 0]; the leaf path [1] is shorter than [0, 0] (its row is -1 padded)
    tree = build_tree([[0], [1], [0, 0]], topk=2)
    assert tree.retrieve.tolist() == [[0, 1, 3], [0, 2, -1]]
    tokens = np.array([9, 1, 2, 3])
    # base argmax after root = 2 (node [1] accepted, node [0] rejected); after node [1] = 7
    path, nxt = verify_greedy(tree, tokens, onehot_logits([2, 0, 7, 0]))
    assert path.tolist() == [0, 2] and nxt == 7


def test_typical_threshold_falls_with_entropy():
    """High entropy lowers the threshold below eps: uniform over 16 tokens gives p = 1/16 = 0.0625,
    below eps = 0.09 but above delta * exp(-H) = 0.3 / 16 = 0.019, so every candidate is accepted."""
    tokens = np.array([1, 2, 3, 4, 5, 6])
    path, _ = verify_typical(TREE, tokens, np.zeros((6, 16)), temperature=1.0, rng=np.random.default_rng(0))
    assert len(path) == 3
    # the same probabilities at low entropy are rejected: 1/16 of the mass on each candidate, the
    # rest on one token (H = 1.12, threshold min(0.09, 0.3 e^-H) = 0.09 > 0.0625)
    logits = np.full((6, 16), -np.inf)
    logits[:, 0] = np.log(1 - 5 / 16)
    logits[:, 1:6] = np.log(1 / 16)
    path, _ = verify_typical(TREE, tokens, logits, temperature=1.0, rng=np.random.default_rng(0))
    assert path.tolist() == [0]


def test_typical_ties_in_length_go_to_the_likelier_path_even_with_a_vanishing_candidate():
    """eps = 0 accepts every candidate of positive probability; the longest paths then tie and
    the highest summed log p wins, also when another path holds a candidate of p ~ e^-100."""
    tokens = np.array([0, 1, 2, 3, 4, 5])  # node i proposes token i
    logits = np.zeros((6, 8))
    logits[0, 2] = -100.0  # node [1] (token 2) is all but impossible after the root
    logits[1, 3] = 2.0  # after node [0]: node [0, 0] (token 3) likelier than node [0, 1]
    logits[2, 5] = 5.0  # after node [1]: node [1, 0] (token 5) very likely, but its parent is not
    path, _ = verify_typical(TREE, tokens, logits, temperature=1.0, rng=np.random.default_rng(0), eps=0.0)
    assert path.tolist() == [0, 1, 3]
