import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine_graphnovo.data import token_label  # noqa: E402
from engine_graphnovo.graph import GraphBuilder  # noqa: E402
from engine_graphnovo.model import ModelConfig, PathSearcher, SeqFiller  # noqa: E402
from engine_graphnovo.preprocess import PreprocessConfig, preprocess  # noqa: E402
from engine_graphnovo.simulator import SimConfig, simulate  # noqa: E402
from engine_graphnovo.training import collate, fill_loss, make_example, path_loss  # noqa: E402

from engine.io.peptides import ResidueTable, parse_peptide  # noqa: E402

TABLE = ResidueTable()
CFG = ModelConfig(d_model=32, heads=2, encoder_layers=1, decoder_layers=1, vocab=len(TABLE.tokens))


def example(peptide, seed, builder):
    rng = np.random.default_rng(seed)
    tokens = parse_peptide(peptide)
    mz, inten, pmz, _ = simulate(tokens, 2, rng, SimConfig(noise_peaks=(5, 10)))
    ex = make_example(builder, PreprocessConfig(), CFG.vocab, tokens, mz, inten, pmz, 2)
    return builder.build(*preprocess(mz, inten, pmz), pmz, 2), ex


@pytest.fixture(scope="module")
def batch():
    b = GraphBuilder(TABLE)
    return [example(p, i, b) for i, p in enumerate(["SAMPLERK", "PEPTIDEGGLLAK", "VVTTSSR"])]


def test_path_label_targets_are_distributions_inside_the_mask(batch):
    for g, ex in batch:
        assert ex["path"][0] == 0
        np.testing.assert_allclose(ex["target"].sum(1), 1.0, rtol=1e-6)
        assert not np.any(ex["target"][~ex["nmask"]])
        assert ex["target"][-1, g.n - 1] == 1.0  # the path ends at the sink


def test_padding_does_not_change_outputs(batch):
    torch.manual_seed(0)
    ps, sf = PathSearcher(CFG).eval(), SeqFiller(CFG).eval()
    full = collate([ex for _, ex in batch])
    alone = collate([batch[2][1]])
    n = alone["masses"].shape[1]
    with torch.no_grad():

        def args(b):
            return b["ions"], b["masses"], b["precursor"], b["charge"], b["pair_code"], b["node_mask"]

        lp_full = ps(*args(full), full["path"], full["nmask"])[2, : alone["path"].shape[1], :n]
        lp_alone = ps(*args(alone), alone["path"], alone["nmask"])[0]
        t = alone["sf_in"].shape[1]
        lf_full = sf(*args(full), full["sf_in"], full["sf_prefix"], full["sf_gap"])[2, :t]
        lf_alone = sf(*args(alone), alone["sf_in"], alone["sf_prefix"], alone["sf_gap"])[0]
    valid = alone["nmask"][0]
    torch.testing.assert_close(lp_full[valid], lp_alone[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lf_full, lf_alone, atol=1e-5, rtol=1e-5)


def test_step_equals_last_position_of_teacher_forcing(batch):
    torch.manual_seed(1)
    ps = PathSearcher(CFG).eval()
    b = collate([batch[0][1]])
    with torch.no_grad():
        mem = ps.encode(b["ions"], b["masses"], b["precursor"], b["charge"], b["pair_code"], b["node_mask"])
        full = ps.decode(mem, b["node_mask"], b["path"], b["nmask"])
        k = 3
        step = ps.step(mem, b["node_mask"], b["path"][:, :k], b["nmask"][:, k - 1], torch.tensor([0]))
    torch.testing.assert_close(step, full[:, k - 1], atol=1e-5, rtol=1e-5)


def test_gap_labels_follow_the_path_nodes():
    tokens = parse_peptide("GASK")
    bounds = np.array([57.02146, 57.02146 + 71.03711 + 87.03203, 343.18])  # G | AS | K
    inputs, prefix, gap, ids = token_label(TABLE, tokens, CFG.vocab, bounds)
    assert inputs[0] == CFG.vocab and list(ids) == TABLE.encode(tokens)
    np.testing.assert_allclose(gap, [57.02146, 158.06914, 87.03203, 343.18 - prefix[3]], atol=1e-3)


def test_kl_loss_identity_and_training_reduces_loss(batch):
    torch.manual_seed(2)
    ps, sf = PathSearcher(CFG), SeqFiller(CFG)
    b = collate([ex for _, ex in batch])
    # KL(target || p) = cross-entropy - entropy(target)
    logp = ps(
        b["ions"],
        b["masses"],
        b["precursor"],
        b["charge"],
        b["pair_code"],
        b["node_mask"],
        b["path"],
        b["nmask"] | ~b["valid"][..., None],
    )
    t = b["target"]
    ce = -(t * logp).sum(-1)
    ent = -(t * torch.log(t.clamp_min(1e-12))).sum(-1)
    expect = ((ce - ent) * b["valid"]).sum() / b["valid"].sum()
    torch.testing.assert_close(path_loss(ps, b), expect)
    opt = torch.optim.Adam(list(ps.parameters()) + list(sf.parameters()), lr=3e-3)
    first = None
    for _ in range(15):
        loss = path_loss(ps, b) + fill_loss(sf, b)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


def test_cached_steps_equal_full_recomputation(batch):
    torch.manual_seed(3)
    ps, sf = PathSearcher(CFG).eval(), SeqFiller(CFG).eval()
    b = collate([ex for _, ex in batch])
    enc = (b["ions"], b["masses"], b["precursor"], b["charge"], b["pair_code"], b["node_mask"])
    g, k = 3, 2  # two beams per graph, graph-major: rows 0 0 1 1 2 2
    rows = torch.arange(g).repeat_interleave(k)
    other = torch.tensor([1, 2, 0]).repeat_interleave(k)
    flip = torch.arange(g * k) % 2 == 1  # the second beam of a graph follows another graph's label
    heads, dk = CFG.heads, CFG.d_model // CFG.heads
    with torch.no_grad():
        mem = ps.encode(*enc)
        state = ps.encode_for_steps(*enc)
        path = torch.where(flip[:, None], b["path"][other, :4], b["path"][rows, :4])
        n = mem.shape[1]
        nmask = torch.ones(g * k, n, dtype=torch.bool)
        past = torch.zeros(CFG.decoder_layers, 2, g * k, heads, 0, dk)
        for t in range(4):
            pos = torch.full((g, k), t)
            got, past = ps.step_cached(*state, b["node_mask"], path[:, t].view(g, k), pos, nmask.view(g, k, n), past)
            want = ps.step(mem, b["node_mask"], path[:, : t + 1], nmask, rows)
            torch.testing.assert_close(got.reshape(g * k, n), want, atol=1e-5, rtol=1e-5)
        mem = sf.encode(*enc)
        state = sf.encode_for_steps(*enc)
        names = ("sf_in", "sf_prefix", "sf_gap")
        tok, pre, gap = (torch.where(flip[:, None], b[x][other, :4], b[x][rows, :4]) for x in names)
        past = torch.zeros(CFG.decoder_layers, 2, g * k, heads, 0, dk)
        for t in range(4):
            got, past = sf.step_cached(
                *state,
                b["node_mask"],
                b["masses"],
                tok[:, t].view(g, k),
                pre[:, t].view(g, k),
                gap[:, t].view(g, k),
                b["precursor"],
                past,
            )
            want = sf.step(
                mem,
                b["node_mask"],
                b["masses"],
                tok[:, : t + 1],
                pre[:, : t + 1],
                gap[:, : t + 1],
                b["precursor"],
                rows,
            )
            torch.testing.assert_close(got.reshape(g * k, -1), want, atol=1e-5, rtol=1e-5)
