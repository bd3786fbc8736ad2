import itertools

import numpy as np
import pytest
from engine_graphnovo.baseline import best_path, edge_scores, node_scores, sequence_graph
from engine_graphnovo.graph import (
    JUMP_MASS,
    GraphBuilder,
    graph_stats,
    label_nodes,
    missing_fragmentation,
    true_prefixes,
)

from engine.io.peptides import H2O, PROTON, ResidueTable, parse_peptide, precursor_mz, residue_masses


def by_spectrum(peptide: str, charge: int = 2, drop=()):
    """Perfect b/y 1+ ladder (minus the cleavages in ``drop``)."""
    tokens = parse_peptide(peptide)
    rm = residue_masses(tokens)
    pre = true_prefixes(rm)
    keep = np.array([i not in drop for i in range(pre.size)])
    b = pre[keep] + PROTON
    y = rm.sum() - pre[keep] + H2O + PROTON
    mz = np.concatenate([b, y])
    inten = np.concatenate([np.full(b.size, 0.3), np.ones(y.size)])  # HCD: y ions dominate
    order = np.argsort(mz)
    return tokens, mz[order], inten[order], precursor_mz(tokens, charge)


@pytest.fixture(scope="module")
def builder():
    return GraphBuilder(ResidueTable())


def test_perfect_ladder_gives_true_path(builder):
    tokens, mz, inten, pmz = by_spectrum("SAMPLYR")
    g = builder.build(mz, inten, pmz, 2)
    rm = residue_masses(tokens)
    stats = graph_stats(g, rm)
    assert stats["prefix_coverage"] == 1.0
    assert g.masses[0] == 0.0 and g.masses[-1] == pytest.approx(rm.sum(), abs=1e-6)
    assert np.all(np.diff(g.masses) > 0)
    labels = label_nodes(g, rm)
    chain = [0] + [int(h[0]) for h in labels]

    table = builder.table
    for (a, b_), tok in zip(zip(chain[:-1], chain[1:], strict=False), tokens, strict=False):
        k = g.edge_index(a, b_)
        assert g.nres[k] == 1
        assert table.tokens[g.single[k]] == tok  # no E/D (= deamidated Q/N), K/Q or F/M[Oxidation]


def test_merging_within_tolerance(builder):
    tokens, mz, inten, pmz = by_spectrum("SAMPLER")
    jitter = np.concatenate([mz, mz + 0.006])  # near-duplicate peaks become one node each
    g1 = builder.build(mz, inten, pmz, 2)
    g2 = builder.build(np.sort(jitter), np.ones_like(jitter), pmz, 2)
    assert g1.n == g2.n
    assert np.abs(g1.masses - g2.masses).max() < 0.006


def edges_by_brute_force(g, table, band=0.004):
    """(i, j, fewest residues) for every node pair i < j whose mass difference is within the edge
    tolerance of a sum of 1-6 residues (from the source also: an N-terminal token, counted as one,
    plus 0-5 residues), from explicit sums of residue multisets. Pairs within ``band`` of the
    window edge (the knapsack rounds to 0.001 Da bins) are left out, here and in the graph's list."""
    residues = np.unique(np.round(table.residue_masses, 6))
    sums = [np.array([0.0])]
    for _ in range(6):
        sums.append(np.unique(np.round((sums[-1][:, None] + residues[None, :]).ravel(), 6)))
    tol = g.edge_tol

    def fewest(d, offsets_and_extra):
        best, edge_case = None, False
        for off, extra in offsets_and_extra:
            for k in range(0 if extra else 1, 7 - extra):
                dist = np.abs(sums[k] - (d - off)).min()
                edge_case |= abs(dist - tol) <= band
                if dist <= tol:
                    best = min(best or 99, k + extra)
                    break
        return best, edge_case

    offsets = [(0.0, 0)] + [(m, 1) for m in table.masses[table.nterm]]
    want, skipped = [], set()
    for i, j in itertools.combinations(range(g.n), 2):
        nres, edge_case = fewest(g.masses[j] - g.masses[i], offsets if i == 0 else offsets[:1])
        if edge_case:
            skipped.add((i, j))
        elif nres is not None:
            want.append((i, j, nres))
    return want, skipped


def test_edges_are_sparse_and_valid(builder):
    tokens, mz, inten, pmz = by_spectrum("PEPTIDEKLLNGGAR", drop=(3, 4, 9))
    g = builder.build(mz, inten, pmz, 2)
    want, skipped = edges_by_brute_force(g, builder.table)
    got = [e for e in zip(g.src.tolist(), g.dst.tolist(), g.nres.tolist(), strict=True) if e[:2] not in skipped]
    assert sorted(got) == sorted(want) and len(want) > 150 and len(skipped) <= 10
    diff = g.masses[g.dst] - g.masses[g.src]
    assert diff.min() > 57.0 - 0.1
    mask = g.next_mask()
    assert mask[:, -1][:-1].all() and not mask[-1].any()
    jump = (g.masses[None, :] - g.masses[:, None]) >= JUMP_MASS
    assert np.all(mask[jump])
    codes = g.pair_codes()
    assert codes.shape == (g.n, g.n) and codes.dtype == np.int64
    assert np.all(codes[g.src, g.dst] // 5 == g.nres)


def test_missing_fragmentation_ratio():
    tokens, mz, _, pmz = by_spectrum("PEPTIDEKLLNGGAR", drop=(3, 4, 9))
    rm = residue_masses(tokens)
    assert missing_fragmentation(mz, rm, rm.sum(), 2) == pytest.approx(3 / 14)


def _brute_best(g):
    ns, es = node_scores(g), edge_scores(g)
    best = -np.inf
    inner = range(1, g.n - 1)
    for k in range(0, g.n - 1):
        for mid in itertools.combinations(inner, k):
            path = (0,) + mid + (g.n - 1,)
            s = sum(es[a, b] + ns[b] for a, b in zip(path[:-1], path[1:], strict=False))
            best = max(best, s)
    return best


def test_dp_is_the_best_path(builder):
    rng = np.random.default_rng(3)
    tokens, mz, _, pmz = by_spectrum("GASPVTLK", drop=(2,))
    noise = rng.uniform(100, 700, 3)
    mz2 = np.sort(np.concatenate([mz, noise]))
    g = builder.build(mz2, rng.uniform(0.1, 1, mz2.size), pmz, 2)
    assert g.n <= 16
    path, score = best_path(g)
    assert score == pytest.approx(_brute_best(g))


def test_dp_baseline_sequences_a_perfect_ladder(builder):
    tokens, mz, inten, pmz = by_spectrum("SAMPLYRWHV")
    g = builder.build(mz, inten, pmz, 2)
    ids, scores, path = sequence_graph(g, builder)
    assert builder.table.decode(ids) == tokens
    assert len(scores) == len(tokens)


def test_hop_counts_match_breadth_first_search():
    from collections import deque

    from engine_graphnovo.graph import hop_counts

    rng = np.random.default_rng(5)
    n = 40
    pairs = {tuple(sorted(p)) for p in rng.integers(0, n, (60, 2)) if p[0] != p[1]}
    src, dst = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    got = hop_counts(n, src, dst, max_hops=4)
    nbrs = {i: set() for i in range(n)}
    for a, b in pairs:
        nbrs[a].add(b)
        nbrs[b].add(a)
    for s in range(n):
        dist = {s: 0}
        q = deque([s])
        while q:
            x = q.popleft()
            for y in nbrs[x]:
                if y not in dist:
                    dist[y] = dist[x] + 1
                    q.append(y)
        want = np.array([dist.get(t, 0) if dist.get(t, 0) <= 4 else 0 for t in range(n)])
        assert np.array_equal(got[s], want)


def test_local_significance_by_hand():
    from engine_graphnovo.graph import _peak_features, local_significance

    # windows (+-50 Da, the peak itself included):
    #   100 -> {100, 120, 140}: intensities {0.2, 0.8, 0.1}, median 0.2
    #   120 -> {100, 120, 140}: median 0.2
    #   140 -> {100, 120, 140, 185}: {0.2, 0.8, 0.1, 0.4}, median (0.2 + 0.4) / 2 = 0.3
    #   185 -> {140, 185}: {0.1, 0.4}, median 0.25
    #   400 -> {400}: median 0.05 (a lone peak is as intense as its background)
    mz = np.array([100.0, 120.0, 140.0, 185.0, 400.0])
    inten = np.array([0.2, 0.8, 0.1, 0.4, 0.05])
    median = np.array([0.2, 0.2, 0.3, 0.25, 0.05])
    want = np.tanh(np.log(inten / median) / 3.0)
    assert want[0] == 0.0 and want[4] == 0.0
    assert want[1] == pytest.approx(np.tanh(np.log(4.0) / 3.0))
    near = np.abs(mz[:, None] - mz[None, :]) <= 50.0
    np.testing.assert_allclose(local_significance(inten, near), want, rtol=0, atol=1e-12)
    feats = _peak_features(mz, inten, 50.0)
    assert feats.shape == (5, 4)
    np.testing.assert_allclose(feats[:, 3], want, rtol=0, atol=1e-6)
    # relative intensity, global rank (1 = top) and local rank keep their meaning
    np.testing.assert_allclose(feats[:, 0], inten / 0.8, rtol=1e-6)
    np.testing.assert_allclose(feats[:, 1], [0.6, 1.0, 0.4, 0.8, 0.2], atol=1e-6)
    np.testing.assert_allclose(feats[:, 2], [1 / 2, 1.0, 1 / 4, 1.0, 1.0], atol=1e-6)


def test_ion_features_carry_local_significance(builder):
    from engine_graphnovo.graph import N_PEAK_FEATURES

    tokens, mz, inten, pmz = by_spectrum("SAMPLYR")
    g = builder.build(mz, inten, pmz, 2)
    assert g.ions.shape == (g.n, 18, N_PEAK_FEATURES) == (g.n, 18, 6)
    present = g.ions[..., 0] > 0
    sig = g.ions[..., 4]
    assert not np.any(sig[~present]) and np.any(sig[present] != 0)
    # the last feature is the signed mass error over the MS2 tolerance (0.02 Da): shift every peak
    # by s = +-0.01 Da. A true prefix p is then read at p + s (b, intensity 0.3) and p - s (y,
    # intensity 1); the node is their weighted centre p - 0.7 s / 1.3, so the b 1+ peak is
    # s (1 + 0.7 / 1.3) = 0.015385 Da off its theoretical m/z (0.769 tolerances, with the sign of
    # s), the y 1+ peak s (1 - 0.7 / 1.3) = 0.004615 Da (0.231)
    for sign in (1, -1):
        g = builder.build(mz + sign * 0.01, inten, pmz, 2)
        for p in true_prefixes(residue_masses(tokens)):
            k = int(np.argmin(np.abs(g.masses - p)))
            assert g.masses[k] - p == pytest.approx(-sign * 0.007 / 1.3, abs=1e-6)
            b1, y1 = g.ions[k, 6], g.ions[k, 12]  # a/b/y x (1+, 2+) x (-, -NH3, -H2O): b 1+ is 6, y 1+ 12
            assert b1[0] == y1[0] == 1.0
            assert b1[-1] == pytest.approx(sign * 0.7692308, abs=1e-5)
            assert y1[-1] == pytest.approx(sign * 0.2307692, abs=1e-5)


def test_models_with_other_features_are_refused():
    from engine_graphnovo.graph import N_PEAK_FEATURES, check_features

    check_features({"ion_types": 18, "peak_features": N_PEAK_FEATURES})
    for model in ({}, {"ion_types": 18, "peak_features": 5}):  # {}: saved before the count was recorded
        with pytest.raises(ValueError, match="5 peak features") as err:
            check_features(model, "model at x")
        assert "\n" not in str(err.value)


def test_subgraph_keeping_every_node_is_the_graph(builder):
    tokens, mz, inten, pmz = by_spectrum("PEPTIDEKLLNGGAR", drop=(3, 9))
    g = builder.build(mz, inten, pmz, 2)
    sub = builder.subgraph(g, np.ones(g.n, dtype=bool))
    for name in ("masses", "ions", "src", "dst", "nres", "single", "jump_ok"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(g, name))
    np.testing.assert_array_equal(sub.next_mask(), g.next_mask())


def test_subgraph_steps_over_removed_nodes(builder):
    tokens, mz, inten, pmz = by_spectrum("SAMPLYR")
    g = builder.build(mz, inten, pmz, 2)
    chain = [0] + [int(h[0]) for h in label_nodes(g, residue_masses(tokens))]  # source .. sink
    keep = np.zeros(g.n, dtype=bool)
    keep[chain[:2] + chain[3:]] = True  # drop the true node after the first residue, and all noise
    keep[[0, -1]] = False  # source and sink are kept whatever the mask says
    sub = builder.subgraph(g, keep)
    keep[[0, -1]] = True
    np.testing.assert_array_equal(sub.masses, g.masses[keep])
    np.testing.assert_array_equal(sub.ions, g.ions[keep])
    assert sub.n == len(chain) - 1 and sub.precursor_mass == g.precursor_mass
    k = sub.edge_index(1, 2)  # "AM" spans one edge now
    assert k is not None and sub.nres[k] == 2 and sub.single[k] == -1
