import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine_graphnovo.data import token_label  # noqa: E402
from engine_graphnovo.graph import GraphBuilder  # noqa: E402
from engine_graphnovo.model import ModelConfig, PathSearcher, SeqFiller  # noqa: E402
from engine_graphnovo.preprocess import PreprocessConfig, preprocess  # noqa: E402
from engine_graphnovo.simulator import SimConfig, simulate  # noqa: E402
from engine_graphnovo.training import (  # noqa: E402
    collate,
    encode_args,
    fill_loss,
    make_example,
    path_loss,
    true_nodes,
)

from engine.io.peptides import ResidueTable, parse_peptide, residue_masses  # noqa: E402

TABLE = ResidueTable()
CFG = ModelConfig(d_model=32, heads=2, encoder_layers=1, decoder_layers=1, vocab=len(TABLE.tokens))
NODE_CFG = ModelConfig(**{**CFG.to_dict(), "node_head": True})


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
    path_kl, node_bce = path_loss(ps, b)
    torch.testing.assert_close(path_kl, expect)
    assert node_bce is None  # no node head
    opt = torch.optim.Adam(list(ps.parameters()) + list(sf.parameters()), lr=3e-3)
    first = None
    for _ in range(15):
        loss = path_loss(ps, b)[0] + fill_loss(sf, b)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


@pytest.mark.parametrize("cfg", [CFG, NODE_CFG], ids=["plain", "node-head"])
def test_cached_steps_equal_full_recomputation(batch, cfg):
    torch.manual_seed(3)
    ps, sf = PathSearcher(cfg).eval(), SeqFiller(cfg).eval()
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


def test_node_head_adds_its_logit_to_every_pointer_logit(batch):
    torch.manual_seed(4)
    with_head = PathSearcher(NODE_CFG).eval()
    plain = PathSearcher(CFG).eval()
    plain.load_state_dict({k: v for k, v in with_head.state_dict().items() if not k.startswith("node_score")})
    b = collate([ex for _, ex in batch])
    allowed = b["nmask"] | ~b["valid"][..., None]
    with torch.no_grad():
        got, node_logit = with_head(*encode_args(b), b["path"], allowed, nodes=True)
        base = plain(*encode_args(b), b["path"], allowed)
    want = torch.log_softmax(torch.where(base > -1e8, base + node_logit[:, None, :], base), dim=-1)
    live = base > -1e8
    torch.testing.assert_close(got[live], want[live], atol=1e-5, rtol=1e-5)


def test_node_loss_is_the_cross_entropy_of_inner_nodes_against_true_prefixes(batch):
    torch.manual_seed(5)
    ps = PathSearcher(NODE_CFG)
    exs = [ex for _, ex in batch]
    b = collate(exs)
    _, got = path_loss(ps, b)
    with torch.no_grad():
        logits = ps.node_logits(ps.encode(*encode_args(b)))
    terms = []
    for i, ((g, ex), _) in enumerate(zip(batch, exs, strict=True)):
        label = ex["node_true"]
        assert label.shape == (g.n,) and not label[0] and not label[-1]
        for j in range(1, g.n - 1):  # inner nodes only: source and sink are given
            p = torch.sigmoid(logits[i, j])
            terms.append(-torch.log(p) if label[j] else -torch.log(1 - p))
    torch.testing.assert_close(got.detach(), torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)


def test_true_nodes_are_the_nodes_near_a_true_prefix(batch):
    g, ex = batch[0]
    masses = residue_masses(parse_peptide("SAMPLERK"))
    prefixes = np.cumsum(masses)[:-1]
    near = (np.abs(g.masses[:, None] - prefixes[None, :]) <= g.node_tol).any(1)
    near[0] = near[-1] = False
    np.testing.assert_array_equal(true_nodes(g, masses), near)
    assert near.any() and not near.all()
