"""The decoding rules on hand-made inputs whose right answer is stated here: the SeqFiller mass mask
(allowed_tokens), the precursor check with isotope errors, the final pick and its mismatch
penalty, and PathSearch's length bonus, stall cut-off and forced end. Masses come from pyteomics
(not from the engine's table), so a wrong mass in the engine is not also the reference."""

import dataclasses
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from engine_graphnovo.baseline import sequence_evidence
from engine_graphnovo.decoding import Segment, allowed_tokens, fill_knapsack, precursor_match
from engine_graphnovo.graph import GraphBuilder, SpectrumGraph
from engine_graphnovo.inference import PathSearch, Pipeline, Prediction, SearchConfig, _Beam

from engine.interfaces import ConfigError
from engine.io.peptides import ResidueTable

mass = pytest.importorskip("pyteomics.mass")

AA = mass.std_aa_mass  # residue masses (no water)
H2O = mass.calculate_mass(formula="H2O")
C13 = mass.nist_mass["C"][13][0] - mass.nist_mass["C"][12][0]  # one isotope spacing, 1.00335 Da
ACETYL = mass.calculate_mass(formula="C2H2O")  # N-terminal acetylation, +42.0106
TOL = 0.02


@pytest.fixture(scope="module")
def builder():
    return GraphBuilder(ResidueTable())


def allowed(builder, remaining, at_start, tol=TOL, close_tol=None) -> set[str]:
    ok = allowed_tokens(remaining, at_start, builder, tol, close_tol)
    return {builder.table.tokens[i] for i in np.flatnonzero(ok)}


def test_engine_masses_agree_with_pyteomics(builder):
    table = builder.table
    for aa in "GASPVTLNDQKEMHFRYW":
        assert table.masses[table.index(aa)] == pytest.approx(AA[aa], abs=1e-5)
    assert table.masses[table.index("[Acetyl]-")] == pytest.approx(ACETYL, abs=1e-5)


def test_allowed_tokens_by_hand(builder):
    """Each remainder must close the gap or stay a reachable residue sum (0.02 Da)."""
    q, k = AA["Q"], AA["K"]
    # Q = G + A in mass: Q closes the gap; G leaves A, A leaves G. K is 0.036 Da too heavy; no
    # N-terminal token leaves a fillable rest (Acetyl: 86.048, Carbamyl: 85.053, -NH3: 145.085).
    assert allowed(builder, q, at_start=False) == {"G", "A", "Q"}
    assert allowed(builder, q, at_start=True) == {"G", "A", "Q"}
    # K: only K itself (Q leaves 0.036 Da, nothing is that light; G leaves 71.073, A 57.058)
    assert allowed(builder, k, at_start=False) == {"K"}
    # acetyl + G + A: at the start only the acetyl token (it leaves GA); inside a peptide nothing
    # (no residue r leaves a residue sum: 170.069 - r is never within 0.02 Da of one)
    assert allowed(builder, ACETYL + AA["G"] + AA["A"], at_start=True) == {"[Acetyl]-"}
    assert allowed(builder, ACETYL + AA["G"] + AA["A"], at_start=False) == set()
    # the closing window is close_tol, not tol: Q + 0.015 closes at 0.02 but not at 0.01
    assert "Q" in allowed(builder, q + 0.015, at_start=False)
    assert "Q" not in allowed(builder, q + 0.015, at_start=False, close_tol=0.01)
    # nothing is allowed in a gap lighter than any residue (a tolerance-sized remainder)
    assert allowed(builder, 30.0, at_start=False) == set()


def residue_sums(residues: np.ndarray, most: int = 5) -> np.ndarray:
    """Every sum of 1..most residues (with repeats), sorted."""
    sums = [sum(c) for n in range(1, most + 1) for c in itertools.combinations_with_replacement(residues, n)]
    return np.sort(np.array(sums))


def test_allowed_tokens_match_a_brute_force_over_residue_multisets(builder):
    """Gaps made of known residues, plus a few off-grid ones: a token is allowed exactly when its
    remainder closes the gap or is within 0.02 Da of a multiset of residues (the table's residues
    and modified residues, all sums of up to 5: every remainder here is below 5 x 57 + 57 Da),
    away from the window edges (+-0.003 Da: the knapsack rounds to 0.001 Da bins)."""
    table = builder.table
    residues = np.unique(np.round(table.masses[~table.nterm], 6))
    sums = residue_sums(residues)
    rng = np.random.default_rng(0)
    gaps = [AA["G"] + AA["S"] + AA["V"], AA["W"] + AA["P"], AA["E"] + AA["E"], 250.0, 301.7]
    gaps += [float(sum(AA[a] for a in rng.choice(list("GASPVTLNDEKQ"), 3))) for _ in range(3)]
    verdicts = {True: 0, False: 0}
    for gap in gaps:
        got = allowed_tokens(gap, False, builder, TOL)
        for t, m in enumerate(table.masses):
            if table.nterm[t]:
                assert not got[t]  # N-terminal tokens only at the start
                continue
            rest = gap - m
            assert rest < 6 * residues.min()  # the brute force covers it
            if abs(abs(rest) - TOL) <= 0.003:
                continue  # on the window edge
            if abs(rest) < TOL:
                want = True  # closes the gap
            elif rest < 0:
                want = False  # too heavy
            else:
                d = np.abs(sums - rest).min()
                if abs(d - TOL) <= 0.003:
                    continue
                want = bool(d < TOL)
            assert bool(got[t]) == want, (gap, table.tokens[t], rest)
            verdicts[want] += 1
    assert verdicts[True] >= 20 and verdicts[False] >= 100


def test_allowed_tokens_for_many_beams_is_the_mask_of_each(builder):
    """The SeqFiller asks for all live beams at once: row b of the (B, tokens) mask is the
    mask of beam b alone, at the start of the peptide or not."""
    gaps = np.array([AA["Q"], AA["K"], ACETYL + AA["G"] + AA["A"], 30.0, 250.0, AA["W"] + AA["P"]])
    at_start = np.array([False, True, True, False, True, False])
    many = allowed_tokens(gaps, at_start, builder, TOL)
    assert many.shape == (len(gaps), len(builder.table.masses))
    for row, gap, start in zip(many, gaps, at_start, strict=True):
        np.testing.assert_array_equal(row, allowed_tokens(float(gap), bool(start), builder, TOL))
    assert many.any(axis=1).tolist() == [True, True, True, False, False, True]  # 30 and 250 Da: no fill


def test_precursor_match_with_isotope_errors():
    """M from pyteomics (PEPTIDEK, residue mass 909.444); the precursor may have been picked at the
    first or second 13C peak, i.e. M_observed = M + k x 1.00335."""
    m = mass.calculate_mass(sequence="PEPTIDEK") - H2O
    assert precursor_match(m, m, 5.0) == (True, pytest.approx(0.0, abs=1e-9))
    # 4 ppm inside, 6 ppm outside, signed against the precursor
    assert precursor_match(m + 4e-6 * m, m, 5.0) == (True, pytest.approx(4.0, abs=1e-6))
    assert precursor_match(m - 6e-6 * m, m, 5.0) == (False, pytest.approx(-6.0, abs=1e-6))
    # the +1 isotope peak: no match unless isotope 1 is accepted; the error is then ~0
    one = m + C13
    ok, err = precursor_match(m, one, 5.0)
    assert not ok and err == pytest.approx(-C13 / one * 1e6, abs=1e-3)  # about -1102 ppm
    assert precursor_match(m, one, 5.0, isotopes=(0, 1)) == (True, pytest.approx(0.0, abs=0.01))
    # +2: needs isotope 2; 3 ppm off the isotope still matches, with the error of that isotope
    two = m + 2 * C13
    assert not precursor_match(m, two, 5.0, isotopes=(0, 1))[0]
    ok, err = precursor_match(m + 3e-6 * two, two, 5.0, isotopes=(0, 1, 2))
    assert ok and err == pytest.approx(3.0, abs=0.01)
    # isotopes are lighter-peptide corrections only: a peptide 1 isotope too HEAVY never matches
    assert not precursor_match(m + C13, m, 5.0, isotopes=(0, 1, 2))[0]


# ------------------------------------------------------------------ pick and penalty


def ids_of(builder, peptide: str) -> list[int]:
    return builder.table.encode(tuple(peptide))  # I is read as L


def test_pick_prefers_a_precursor_match_over_a_better_score(builder):
    """Two filled sequences: PEPTIDEQ scores higher but is 0.036 Da (40 ppm) off; PEPTIDEK matches.
    The pick is PEPTIDEK with its own per-residue probabilities; with no match, the top score."""
    m = mass.calculate_mass(sequence="PEPTIDEK") - H2O

    def beam(peptide, p):
        n = len(peptide)
        return _Beam(ids_of(builder, peptide), [float(np.log(p))] * n, n, 0.0, [0.0], [0.0])

    pipe = Pipeline(builder, None, SearchConfig(precursor_ppm=5.0))
    done = [beam("PEPTIDEQ", 0.9), beam("PEPTIDEK", 0.6)]
    fill = SimpleNamespace(done=done, graph=SimpleNamespace(precursor_mass=m))
    pred = pipe._pick([(fill, [0, 3, 9], -1.5)])
    assert builder.table.decode(pred.ids) == tuple("PEPTLDEK")
    assert pred.residue_scores == pytest.approx([0.6] * 8) and pred.score == pytest.approx(0.6)
    assert pred.path == [0, 3, 9] and pred.extra["path_score"] == -1.5
    # the +1 isotope precursor: the match needs isotopes (0, 1)
    fill.graph.precursor_mass = m + C13
    assert builder.table.decode(pipe._pick([(fill, [0, 9], 0.0)]).ids) == tuple("PEPTLDEQ")
    iso = Pipeline(builder, None, SearchConfig(precursor_ppm=5.0, isotopes=(0, 1)))
    assert builder.table.decode(iso._pick([(fill, [0, 9], 0.0)]).ids) == tuple("PEPTLDEK")
    # nothing matches: the best-scoring one
    fill.graph.precursor_mass = m + 0.5
    assert builder.table.decode(pipe._pick([(fill, [0, 9], 0.0)]).ids) == tuple("PEPTLDEQ")
    fill.done = []
    assert pipe._pick([(fill, [0, 9], 0.0)]) is None


def test_fragment_evidence_picks_the_order_the_peaks_support(builder):
    """Two fills of the same composition: the model prefers PEPTIEDK, the spectrum holds the b and
    y ions of PEPTIDEK. The evidence of the true order is the higher one; with a rescore weight the
    pick follows it, without one the model's score decides (the paper's ranking)."""
    true, swapped = "PEPTIDEK", "PEPTIEDK"
    ions = [mass.fast_mass(true[:i], ion_type="b", charge=1) for i in range(1, len(true))]
    ions += [mass.fast_mass(true[i:], ion_type="y", charge=1) for i in range(1, len(true))]
    mz = np.sort(np.array(ions))
    graph = builder.build(mz, np.ones_like(mz), mass.calculate_mass(sequence=true, charge=2), 2)
    both = sequence_evidence(builder, graph, [ids_of(builder, p) for p in (true, swapped)])
    evidence = dict(zip((true, swapped), both, strict=True))
    assert evidence[true] > evidence[swapped] > 0
    # one pass for many sequences equals one per sequence; no sites or no peaks: 0
    alone = [sequence_evidence(builder, graph, [ids_of(builder, p)])[0] for p in (true, swapped)]
    assert list(both) == pytest.approx(alone, rel=1e-12)
    mixed = sequence_evidence(builder, graph, [ids_of(builder, "K"), ids_of(builder, true), ids_of(builder, "K")])
    assert list(mixed) == pytest.approx([0.0, evidence[true], 0.0], rel=1e-12)
    no_peaks = dataclasses.replace(graph, peaks=None)
    assert list(sequence_evidence(builder, no_peaks, [ids_of(builder, true)])) == [0.0]

    def beam(peptide, p):
        return _Beam(ids_of(builder, peptide), [float(np.log(p))] * 8, 8, 0.0, [0.0], [0.0])

    fill = SimpleNamespace(done=[beam(swapped, 0.6), beam(true, 0.5)], graph=graph)
    margin = 8 * float(np.log(0.6) - np.log(0.5))  # the model's lead, in log-probability
    needed = margin / (evidence[true] - evidence[swapped])
    for weight, picked in ((0.0, swapped), (0.9 * needed, swapped), (1.1 * needed, true)):
        pipe = Pipeline(builder, None, SearchConfig(rescore_weight=weight))
        pred = pipe._pick([(fill, [0, graph.n - 1], 0.0)])
        assert "".join(builder.table.decode(pred.ids)) == picked.replace("I", "L")


def test_fills_of_several_paths_are_ranked_by_path_and_fill_together(builder):
    """Two paths filled: the first path's sequence has the better fill score, the second's the
    better path + fill score, and the second wins; a candidate that misses the precursor loses to
    one that matches whatever its score."""
    m = mass.calculate_mass(sequence="PEPTIDEK") - H2O

    def fill(peptide, logp):
        beam = _Beam(ids_of(builder, peptide), [logp / len(peptide)] * len(peptide), 1, 0.0, [0.0], [0.0])
        return SimpleNamespace(done=[beam], graph=SimpleNamespace(precursor_mass=m))

    pipe = Pipeline(builder, None, SearchConfig(precursor_ppm=5.0, fill_paths=2))
    first, second = (fill("PEPTIDEK", -1.0), [0, 2, 9], -5.0), (fill("PEPTDIEK", -2.0), [0, 3, 9], -1.0)
    pred = pipe._pick([first, second])
    assert builder.table.decode(pred.ids) == tuple("PEPTDLEK")
    assert pred.path == [0, 3, 9] and pred.extra["path_score"] == -1.0
    off = (fill("PEPTIDEQ", -0.1), [0, 4, 9], -0.1)  # 40 ppm off the precursor
    assert builder.table.decode(pipe._pick([off, first]).ids) == tuple("PEPTLDEK")


def test_a_precursor_mismatch_costs_one_score_unit_and_decides_the_charge(builder):
    """No charge in the spectrum: charges 2, 3, 4 are tried. Each graph's candidate is PEPTIDEK;
    only the charge-2 reading of the precursor matches its mass. Charge 3's candidate has the best
    raw score (0.9) but pays the mismatch penalty (0.9 - 1 = -0.1), so charge 2 (0.3) wins."""
    m = mass.calculate_mass(sequence="PEPTIDEK") - H2O
    mz2 = mass.calculate_mass(sequence="PEPTIDEK", charge=2)
    raw = {2: 0.3, 3: 0.9, 4: 0.5}
    made = {}

    class Stub(Pipeline):
        def graph(self, spectrum, charge):
            from engine.io.peptides import residue_mass_of

            return SimpleNamespace(precursor_mass=residue_mass_of(spectrum.precursor_mz, charge), charge=charge)

        def _dp(self, graph):
            made[graph.charge] = Prediction(ids_of(builder, "PEPTIDEK"), [0.5] * 8, [0, 1], raw[graph.charge])
            return made[graph.charge]

    pipe = Stub(builder, None, SearchConfig(precursor_ppm=5.0, charges=(2, 3, 4)))
    pred, charge = pipe.predict(SimpleNamespace(charge=None, precursor_mz=mz2))
    assert charge == 2 and pred.matched and pred.score == pytest.approx(0.3)
    assert abs(pred.precursor_error_ppm) < 0.05  # the engine's and pyteomics' masses agree
    assert not made[3].matched and made[3].score == pytest.approx(0.9 - 1.0)
    assert not made[4].matched and made[4].score == pytest.approx(0.5 - 1.0)
    three = (m + H2O + 3 * mass.nist_mass["H+"][0][0]) / 3  # the same peptide at charge 3
    made.clear()
    pred, charge = pipe.predict(SimpleNamespace(charge=None, precursor_mz=three))
    assert charge == 3 and pred.matched and pred.score == pytest.approx(0.9)


# ------------------------------------------------------------------ PathSearch

# A hand-made graph: prefix masses of GGGG (source 0, sink 4 = M), an edge for every pair except
# 1 -> 3 (k glycines apart); any node may also step to the sink (the next-node mask's rule).
G = AA["G"]
MASSES = np.array([0.0, G, 2 * G, 3 * G, 4 * G])
EDGES = [(i, j) for i in range(5) for j in range(i + 1, 5) if (i, j) != (1, 3)]
N = len(MASSES)
SINK = N - 1
LOW = -8.0  # log-probability of every step a test does not name


def ggg_graph() -> SpectrumGraph:
    src = np.array([e[0] for e in EDGES])
    dst = np.array([e[1] for e in EDGES])
    return SpectrumGraph(
        masses=MASSES,
        ions=np.zeros((N, 18, 6), dtype=np.float32),
        src=src,
        dst=dst,
        nres=dst - src,
        single=np.full(src.size, -1),
        precursor_mass=float(MASSES[-1]),
        charge=2,
        edge_tol=0.04,
        node_tol=0.02,
    )


def step_table(named: dict) -> np.ndarray:
    """log p(next = j | last = i): the named steps, LOW elsewhere."""
    t = np.full((N, N), LOW)
    for (i, j), v in named.items():
        t[i, j] = v
    return t


def search(table, beam=2, bonus=0.0, max_steps=48):
    """Run PathSearch with a network whose log-probabilities depend only on the last node."""
    ps = PathSearch(ggg_graph(), beam, max_steps, bonus)
    while not ps.finished:
        last, mask = ps.request(N)
        assert mask.shape == (len(last), N)
        ps.advance(table[last])
    path, score = ps.result()
    return path, score, ps.steps


def allowed_step(i, j) -> bool:
    return j > i and ((i, j) in EDGES or j == SINK) and i != SINK


def best_by_hand(table, bonus):
    """Every source -> sink path the rules allow, scored sum (log p + bonus)."""
    best = (-np.inf, None)
    for k in range(N - 1):
        for mid in itertools.combinations(range(1, SINK), k):
            path = (0, *mid, SINK)
            pairs = list(zip(path[:-1], path[1:], strict=True))
            if all(allowed_step(a, b) for a, b in pairs):
                best = max(best, (sum(table[a, b] + bonus for a, b in pairs), list(path)))
    return best


def test_the_next_node_mask_is_the_hand_rule():
    mask = ggg_graph().next_mask()
    want = np.array([[allowed_step(i, j) for j in range(N)] for i in range(N)])
    assert np.array_equal(mask, want)


def test_length_bonus_turns_a_short_path_into_a_long_one():
    """Straight to the sink: log p -1.0. Through every node: four steps of -0.4 = -1.6. With no
    bonus the short path wins (-1.0); with 0.3 per step the long one does (-1.6 + 1.2 = -0.4 >
    -1.0 + 0.3 = -0.7)."""
    table = step_table({(0, 4): -1.0, (0, 1): -0.4, (1, 2): -0.4, (2, 3): -0.4, (3, 4): -0.4})
    path, score, _ = search(table, beam=2, bonus=0.0)
    assert path == [0, 4] and score == pytest.approx(-1.0)
    path, score, _ = search(table, beam=2, bonus=0.3)
    assert path == [0, 1, 2, 3, 4] and score == pytest.approx(-0.4)


def test_stall_cut_off_stops_only_when_no_live_path_can_win():
    """Step 1 finishes [0, 4] at -0.1 and leaves [0, 1] at -2.0. Log-probabilities only fall, so
    with no bonus [0, 1] can never win: the search stops after that one step. With a bonus of 1
    per step the live path can still gain up to 4 (it needs >= 3 more glycines of mass), and does
    win: -2.0 - 0.1 x 3 + 4 x 1 = 1.7 > -0.1 + 1 = 0.9."""
    table = step_table({(0, 4): -0.1, (0, 1): -2.0, (1, 2): -0.1, (2, 3): -0.1, (3, 4): -0.1})
    path, score, steps = search(table, beam=2, bonus=0.0)
    assert (path, steps) == ([0, 4], 1) and score == pytest.approx(-0.1)
    path, score, steps = search(table, beam=2, bonus=1.0)
    assert path == [0, 1, 2, 3, 4] and score == pytest.approx(1.7) and steps == 4


def test_stall_cut_off_with_a_negative_bonus():
    """A negative bonus (allowed: any finite value) penalises every step. Step 1 finishes [0, 4]
    at -3 - 1 = -4 and leaves [0, 1] at -0.5 - 1 = -1.5; one more step to the sink gives
    -1.5 - 0.1 - 1 = -2.6, the best path. The cut-off must not assume the live path takes the
    most steps (that is the least it can gain when the bonus is negative)."""
    table = step_table({(0, 4): -3.0, (0, 1): -0.5, (1, 4): -0.1})
    path, score, _ = search(table, beam=2, bonus=-1.0)
    assert path == [0, 1, 4] and score == pytest.approx(-2.6)


def test_forced_end_closes_the_best_live_path_at_the_sink():
    """Every step to the sink is nearly impossible (-50), so after max_steps = 2 no path has
    finished: the best live one, [0, 1, 2] (-0.5 - 0.5), is closed at the sink with its score so
    far (the closing step adds nothing); with a bonus, two steps' worth."""
    table = step_table({(0, 1): -0.5, (1, 2): -0.5, (0, 2): -3.0, (2, 3): -0.2})
    for i in range(SINK):
        table[i, SINK] = -50.0
    path, score, steps = search(table, beam=1, max_steps=2)
    assert (path, steps) == ([0, 1, 2, 4], 2) and score == pytest.approx(-1.0)
    path, score, _ = search(table, beam=1, bonus=0.25, max_steps=2)
    assert path == [0, 1, 2, 4] and score == pytest.approx(-0.5)
    # with the budget not spent, the real end: [0, 1, 2, 3] then the sink at -50
    path, score, steps = search(table, beam=1, max_steps=48)
    assert (path, steps) == ([0, 1, 2, 3, 4], 4) and score == pytest.approx(-51.2)


@pytest.mark.parametrize("bonus", [0.0, 0.7, -0.7])
def test_a_wide_beam_finds_the_best_path_by_brute_force(bonus):
    """A beam wider than the number of paths is exhaustive: PathSearch must return the best of
    all allowed paths (random step tables, fixed seeds)."""
    rng = np.random.default_rng(int(10 * bonus) + 7)
    for _ in range(40):
        table = np.log(rng.dirichlet(np.full(N, 0.5), size=N))
        want_score, want_path = best_by_hand(table, bonus)
        path, score, _ = search(table, beam=16, bonus=bonus)
        assert path == want_path and score == pytest.approx(want_score, abs=1e-9)


# ------------------------------------------------------------------ knapsack fill and the fill beam


def test_fill_knapsack_carries_a_forced_residues_residual_into_the_next_gap(builder):
    """A forced G edge 0.015 Da heavy, then a gap 0.015 Da light: the carried residual makes the
    second gap exactly A. Without the carry it is 0.015 Da off (inside 0.02); subtracting the
    carry instead of adding it would leave it 0.03 Da off and unfillable."""
    g, a = builder.table.index("G"), builder.table.index("A")
    segs = [Segment(AA["G"] + 0.015, g, True), Segment(AA["A"] - 0.015, -1, False)]
    assert fill_knapsack(segs, builder, tol=TOL) == ([g, a], [1.0, 1.0])
    assert fill_knapsack(segs, builder, tol=TOL, carry_residual=False) == ([g, a], [1.0, 1.0])
    segs[1] = Segment(AA["A"] - 0.05, -1, False)  # 0.035 Da off even with the carry: no fill
    assert fill_knapsack(segs, builder, tol=TOL) is None


def test_fill_knapsack_takes_an_n_terminal_token_off_the_first_gap_only(builder):
    """acetyl + G + A (170.069) has no residue-only composition (see the mask test above): at the
    peptide start it is the acetyl token plus Q (= G + A in mass); inside a peptide nothing fills it."""
    gap = ACETYL + AA["G"] + AA["A"]
    ids, scores = fill_knapsack([Segment(gap, -1, True)], builder, tol=TOL)
    assert builder.table.decode(ids) == ("[Acetyl]-", "Q") and scores == pytest.approx([0.5, 0.5])
    assert fill_knapsack([Segment(gap, -1, False)], builder, tol=TOL) is None


class CountingBackend:
    """A network that gives every allowed step the same log-probability (steps to the sink
    ``sink_bias`` more), and records how many beam slots each step call is given (arrays are
    (graphs, slots, ...))."""

    def __init__(self, tokens: int, sink_bias: float = 0.0):
        self.tokens, self.sink_bias, self.ps_slots, self.sf_slots = tokens, sink_bias, [], []

    def ps_encode(self, feats):
        g = feats["masses"].shape[0]
        return np.zeros((g, 1)), np.zeros((g, 1)), np.zeros((1, 1, g))

    def sf_encode(self, feats):
        return (np.zeros((1, 1, feats["masses"].shape[0])),)

    @staticmethod
    def cache(g, k):
        return np.zeros((2, 2, g * k, 4, 1, 24), dtype=np.float32)

    def ps_step(self, *args):
        last, mask = args[4], args[6]
        self.ps_slots.append(last.shape[1])
        logp = np.where(mask, -self.sink_bias, -np.inf)
        logp[..., SINK] = np.where(mask[..., SINK], 0.0, -np.inf)
        return logp, self.cache(*last.shape)

    def sf_step(self, *args):
        token = args[3]
        self.sf_slots.append(token.shape[1])
        return np.zeros(token.shape + (self.tokens,)), self.cache(*token.shape)


@pytest.mark.parametrize("beam", [1, 2])
def test_the_learned_pipeline_keeps_each_search_within_its_beam(builder, beam):
    """Every step equally likely: candidates tie at each step, and each search keeps at most its
    beam of them (path_beam, fill_beam); the fill still sums to M."""
    search = SearchConfig(path_beam=beam, fill_beam=beam, precursor_ppm=500.0)
    backend = CountingBackend(len(builder.table.tokens))
    (pred,) = Pipeline(builder, backend, search).predict_graphs([ggg_graph()])
    assert max(backend.ps_slots) == beam
    assert pred is not None and pred.matched
    assert builder.table.masses[pred.ids].sum() == pytest.approx(4 * G, abs=0.04)
    # the sink likeliest: the path is [0, 4], one gap of 4 G = 228.09 Da with many fills (G, N,
    # V + E, P + M, D + L, ...): the fill search must cut them to its beam
    backend = CountingBackend(len(builder.table.tokens), sink_bias=5.0)
    (pred,) = Pipeline(builder, backend, search).predict_graphs([ggg_graph()])
    assert pred.path == [0, SINK] and max(backend.sf_slots) == beam
    assert builder.table.masses[pred.ids].sum() == pytest.approx(4 * G, abs=0.04)


# ------------------------------------------------------------------ node pruning


def test_top_nodes_keeps_source_sink_and_the_best_inner_nodes():
    from engine_graphnovo.inference import top_nodes

    scores = np.array([-9.0, 0.5, 2.0, 0.5, -1.0, 3.0, -9.0])
    assert top_nodes(scores, 2).tolist() == [True, False, True, False, False, True, True]
    assert top_nodes(scores, 3).tolist() == [True, True, True, False, False, True, True]  # tie: the lighter
    assert top_nodes(scores, 0).tolist() == [True] + [False] * 5 + [True]
    assert top_nodes(scores, 99).all()


def test_pruning_needs_a_node_head(builder):
    class NoNodeHead:  # pointer keys of a model without a node head: d columns, not d + 1
        def ps_encode(self, feats):
            b, n = feats["masses"].shape
            return np.zeros((b, n, 96), np.float32), np.zeros((b, n, 96), np.float32), None

    for search in (SearchConfig(prune_nodes=8), SearchConfig(prune_per_residue=2.0)):
        pipe = Pipeline(builder, NoNodeHead(), search, cache=(2, 2, 4, 24))
        with pytest.raises(ConfigError, match="node pruning .* needs a model with a node head"):
            pipe.predict_graphs([ggg_graph()])


def test_node_budget_grows_with_the_precursor_mass():
    """prune_per_residue R keeps ceil(R x M / 111.1) inner nodes and replaces the fixed K."""
    per_residue = SearchConfig(prune_nodes=48, prune_per_residue=3.0)
    assert per_residue.node_budget(1111.0) == 30  # 10 residues' worth of mass
    assert per_residue.node_budget(1111.1) == 31  # a fraction of a node rounds up
    assert per_residue.node_budget(2222.0) == 60
    assert SearchConfig(prune_nodes=48).node_budget(2222.0) == 48
    assert not SearchConfig().prunes and SearchConfig(prune_per_residue=0.5).prunes


def test_a_fixed_budget_asked_for_replaces_a_stored_per_residue_one():
    from engine_graphnovo.component import search_config
    from engine_graphnovo.options import GraphNovoOptions

    stored = {"prune_nodes": 0, "prune_per_residue": 3.0}
    assert search_config(GraphNovoOptions(), stored).node_budget(1111.0) == 30
    assert search_config(GraphNovoOptions(prune_nodes=32), stored).node_budget(1111.0) == 32
    assert search_config(GraphNovoOptions(prune_per_residue=2.0), stored).node_budget(1111.0) == 20
    assert not search_config(GraphNovoOptions(prune_nodes=0), stored).prunes
