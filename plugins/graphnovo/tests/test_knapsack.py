import itertools

import numpy as np
import pytest
from engine_graphnovo.knapsack import UNREACHABLE, Knapsack, _window_min, to_bins

MASSES = np.array([57.021463721, 71.037113805, 87.032028435, 128.058577540, 128.094963050])


@pytest.fixture(scope="module")
def ks():
    return Knapsack(MASSES, max_mass=400.0)


def test_min_count_matches_brute_force(ks):
    bins = to_bins(MASSES)
    best = {}
    for k in range(1, 8):
        for combo in itertools.combinations_with_replacement(range(len(bins)), k):
            b = int(bins[list(combo)].sum())
            if b < ks.size:
                best[b] = min(best.get(b, 99), k)
    reach = np.flatnonzero(ks.count < UNREACHABLE)
    assert set(reach[reach > 0].tolist()) == set(best)  # 8 residues exceed 400 Da
    assert all(ks.count[b] == k for b, k in best.items())


def test_window_min_matches_naive():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, 500).astype(np.uint8)
    for w in (0, 1, 3, 8, 21):
        naive = np.array([a[max(0, i - w) : i + w + 1].min() for i in range(a.size)])
        assert np.array_equal(_window_min(a, w), naive)


def test_feasible_and_min_residues(ks):
    # AG has the mass of Q: one residue suffices; 57 + 0.03 is outside 0.02 Da
    assert ks.min_residues([57.021 + 71.037, 57.051, 10.0], 0.02).tolist() == [1, UNREACHABLE, UNREACHABLE]
    assert ks.feasible(57.021 * 3, 0.02)
    assert ks.min_residues([5000.0], 0.02)[0] == 0  # beyond the table: treated as feasible


def test_composition_sums_to_mass(ks):
    target = 57.021463721 * 2 + 87.032028435
    comp = ks.composition(target, 0.01)
    assert abs(MASSES[comp].sum() - target) < 0.01
    assert len(comp) == 3
    assert ks.composition(10.0, 0.01) is None
