"""Sequencing pipeline shared by torch, onnxruntime and the DP baseline (numpy only).

PathSearcher beam search finds the most likely source -> sink node path; SeqFiller
beam search fills each gap under the knapsack mass mask (single-residue edges forced);
the final pick prefers sequences matching the precursor within tolerance.

Several spectra are searched in lockstep: every step gathers the live beams of all of
them into one model call (per-call overhead dominates small models on a CPU).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.interfaces import ConfigError
from engine.io.peptides import to_proforma

from .baseline import sequence_evidence
from .baseline import sequence_graph as dp_sequence
from .data import graph_arrays, pad_batch
from .decoding import Segment, allowed_tokens, path_segments, precursor_match
from .export_names import node_logit_scale
from .graph import GraphBuilder, SpectrumGraph
from .preprocess import PreprocessConfig, preprocess

MAX_TOKENS = 60
WIDEN = 3.0  # tolerance factor when a gap has no exact fill
AVERAGE_RESIDUE_MASS = 111.1  # Da, averagine's residue: how many residues a precursor mass holds


class Backend(Protocol):
    """Encoders return a per-graph state (a tuple of arrays: memory, pointer keys,
    cross-attention keys/values); steps take that state, one new position per beam and
    a (layers, 2, beams, heads, steps, head_dim) self-attention cache, and return
    (log-probabilities, the extended cache)."""

    def ps_encode(self, feats: dict) -> tuple: ...
    def ps_step(self, *state_and_inputs) -> tuple: ...
    def sf_encode(self, feats: dict) -> tuple: ...
    def sf_step(self, *state_and_inputs) -> tuple: ...


@dataclass(frozen=True)
class SearchConfig:
    path_beam: int = 5
    fill_beam: int = 5
    max_path_steps: int = 48
    precursor_ppm: float = 5.0
    isotopes: tuple[int, ...] = (0,)  # e.g. (0, 1) also accepts M - 1 C13 spacing
    charges: tuple[int, ...] = (2, 3, 4)  # tried when a spectrum has no charge
    batch_spectra: int = 16  # spectra searched together
    # Summed log-probabilities favour short paths (few observed nodes, long gaps); a
    # bonus per path step counters that. 0 = the paper's plain sum.
    path_length_bonus: float = 0.0
    # The SeqFiller's finished candidates are ranked by their log-probability plus this weight
    # times their fragment evidence (mean over cleavage sites, baseline.sequence_evidence):
    # fills of a gap differ in order and composition, which peaks left out of the graph can
    # tell apart. 0 = the paper's ranking by the model's score alone.
    rescore_weight: float = 0.0
    # The SeqFiller fills this many of the PathSearcher's best paths per graph; the candidates
    # of all of them are ranked together by the joint log-probability of path and fill (plus
    # the fragment evidence above). 1 = the paper's: the best path alone.
    fill_paths: int = 1
    # Learned node pruning (issue 14): keep the graph's K inner nodes the PathSearcher's node
    # head scores highest, rebuild the graph on them and search that one (a second encoder
    # pass over the smaller graph). 0 = the paper's: the whole graph is searched.
    prune_nodes: int = 0
    # A budget that grows with the peptide instead: ceil(R x precursor mass / 111.1 Da) inner
    # nodes, R per residue the precursor holds on average. When set (> 0) it replaces prune_nodes.
    prune_per_residue: float = 0.0

    @property
    def prunes(self) -> bool:
        return bool(self.prune_nodes or self.prune_per_residue)

    def node_budget(self, precursor_mass: float) -> int:
        """Inner nodes a pruned graph of this precursor keeps."""
        if self.prune_per_residue:
            return math.ceil(self.prune_per_residue * precursor_mass / AVERAGE_RESIDUE_MASS)
        return self.prune_nodes


@dataclass
class Prediction:
    ids: list[int]
    residue_scores: list[float]
    path: list[int]
    score: float
    precursor_error_ppm: float = 0.0
    matched: bool = False
    extra: dict = field(default_factory=dict)
    graph: SpectrumGraph | None = None  # the graph ``path`` indexes (the searched one)


# ---------------------------------------------------------------- PathSearcher


def top_nodes(scores: np.ndarray, k: int) -> np.ndarray:
    """(n,) bool: source, sink and the k best-scored inner nodes (ties: the lighter)."""
    keep = np.zeros(scores.size, dtype=bool)
    keep[[0, -1]] = True
    keep[1 + np.argsort(-scores[1:-1], kind="stable")[:k]] = True
    return keep


class PathSearch:
    """Pointer beam search for one graph under the next-node mask; ends at the sink."""

    def __init__(self, graph: SpectrumGraph, beam: int, max_steps: int, bonus: float = 0.0):
        self.graph, self.beam, self.max_steps, self.bonus = graph, beam, max_steps, bonus
        self.allowed = graph.next_mask()
        self.live: list[tuple[list[int], float]] = [([0], 0.0)]
        self.parents = [0]  # row of each live path in the previous step's batch
        self.done: list[tuple[list[int], float]] = []
        self.steps = 0

    @property
    def finished(self) -> bool:
        return not self.live

    def request(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(last node of each live path, its next-node mask padded to n)."""
        last = np.array([p[-1] for p, _ in self.live], dtype=np.int64)
        mask = np.zeros((len(self.live), n), dtype=bool)
        mask[:, : self.graph.n] = self.allowed[last]
        return last, mask

    def advance(self, logp: np.ndarray) -> None:
        g = self.graph
        total = np.array([s for _, s in self.live])[:, None] + logp[:, : g.n] + self.bonus
        total[~self.allowed[[p[-1] for p, _ in self.live]]] = -np.inf
        nxt, parents = [], []
        for flat in np.argsort(-total, axis=None, kind="stable")[: self.beam]:
            i, j = divmod(int(flat), g.n)
            if not np.isfinite(total[i, j]):
                continue
            if j == g.n - 1:
                self.done.append((self.live[i][0] + [j], float(total[i, j])))
            else:
                nxt.append((self.live[i][0] + [j], float(total[i, j])))
                parents.append(i)
        self.live, self.parents = nxt, parents
        self.steps += 1
        best_done = max((s for _, s in self.done), default=-np.inf)
        # log-probabilities are <= 0, so a live path gains at most the bonus per step: with a
        # positive bonus at most one step per glycine of mass left, with a negative one the
        # single step to the sink
        ahead = [s + max(self.bonus, self.bonus * np.ceil((g.precursor_mass - g.masses[p[-1]]) / 57.0)) for p, s in nxt]
        stalled = not nxt or max(ahead) < best_done
        if stalled or self.steps >= self.max_steps:
            if not self.done and nxt:  # step budget spent: close the best path at the sink
                p, s = max(nxt, key=lambda x: x[1])
                self.done.append((p + [g.n - 1], s))
            self.live = []

    def results(self, n: int = 1) -> list[tuple[list[int], float]]:
        """The n best finished paths, best first (ties: the earlier); source -> sink if none."""
        if not self.done:
            return [([0, self.graph.n - 1], -np.inf)]
        return sorted(self.done, key=lambda x: -x[1])[:n]

    def result(self) -> tuple[list[int], float]:
        return self.results(1)[0]


# ---------------------------------------------------------------- SeqFiller


@dataclass
class _Beam:
    ids: list[int]
    logps: list[float]
    seg: int
    remaining: float
    prefix: list[float]
    gaps: list[float]  # mass left in the current gap before each position
    parent: int = 0  # row of the beam it extends in the previous step's batch
    fresh: bool = True  # at the start of its current gap

    @property
    def score(self) -> float:
        return float(sum(self.logps))


class FillSearch:
    """Fill every gap of a path exactly (knapsack mask), forcing single-residue edges.
    Residuals carry into the next gap, so the whole sequence sums to M."""

    def __init__(self, builder: GraphBuilder, graph: SpectrumGraph, segments: list[Segment], beam: int):
        self.builder, self.graph, self.segments, self.beam = builder, graph, segments, beam
        self.tol = graph.edge_tol
        self.live = [_Beam([], [], 0, segments[0].mass, [0.0], [segments[0].mass])] if segments else []
        self.done: list[_Beam] = []

    @property
    def finished(self) -> bool:
        return not self.live

    @property
    def parents(self) -> list[int]:
        return [x.parent for x in self.live]

    def request(self, bos: int):
        """(newest input token, prefix mass and gap mass of each live beam)."""
        token = np.array([x.ids[-1] if x.ids else bos for x in self.live], dtype=np.int64)
        prefix = np.array([x.prefix[-1] for x in self.live], dtype=np.float32)
        gaps = np.array([x.gaps[-1] for x in self.live], dtype=np.float32)
        return token, prefix, gaps

    def advance(self, logp: np.ndarray) -> None:
        masses, segs = self.builder.table.masses, self.segments
        rows, tokens = self._extensions()
        step_logp = logp[rows, tokens].astype(np.float64)
        total = np.array([x.score for x in self.live])[rows] + step_logp
        nxt = []
        for k in np.argsort(-total, kind="stable")[: self.beam]:  # ties: earlier beam, then lower token
            i, t, lp = int(rows[k]), int(tokens[k]), float(step_logp[k])
            x = self.live[i]
            rem, seg = x.remaining - masses[t], x.seg
            # widened masks may leave up to WIDEN x tol; nothing lighter than a residue fits
            closed = (x.fresh and segs[seg].token == t) or abs(rem) <= WIDEN * self.tol
            if closed:  # carry the (bounded) residual into the next gap
                seg += 1
                rem = float(np.clip(rem, -self.tol, self.tol))
                rem = segs[seg].mass + rem if seg < len(segs) else rem
            prefix = x.prefix + [x.prefix[-1] + masses[t]]
            y = _Beam(x.ids + [t], x.logps + [lp], seg, rem, prefix, x.gaps + [rem], i, closed)
            (self.done if seg == len(segs) else nxt).append(y)
        best_done = max((d.score for d in self.done), default=-np.inf)
        too_long = nxt and len(nxt[0].ids) >= MAX_TOKENS
        self.live = [] if (not nxt or too_long or max(x.score for x in nxt) < best_done) else nxt

    def _extensions(self) -> tuple[np.ndarray, np.ndarray]:
        """(beam row, token) of every allowed extension of the live beams, row-major: the
        knapsack mass mask (widened once where it is empty); a single-residue edge forces
        its residue."""
        remaining = np.array([x.remaining for x in self.live])
        at_start = np.array([not x.ids for x in self.live])
        ok = allowed_tokens(remaining, at_start, self.builder, self.tol)
        for i, x in enumerate(self.live):
            forced = self.segments[x.seg].token
            if forced >= 0 and x.fresh:
                ok[i] = False
                ok[i, forced] = True
        empty = ~ok.any(axis=1)
        if empty.any():
            ok[empty] = allowed_tokens(remaining[empty], at_start[empty], self.builder, self.tol * WIDEN)
        return np.nonzero(ok)


def _lockstep(searches: list, call, cache: tuple[int, int, int, int]) -> None:
    """Advance all unfinished searches together, one model call per step. A call sees
    K beam slots per search (graph-major; short searches padded by repeating their
    first beam) and returns each search's rows; the self-attention cache rows of each
    beam's parent are carried into the next call."""
    layers, two, heads, dk = cache
    present, prev = None, {}
    while True:
        active = [s for s in searches if not s.finished]
        if not active:
            return
        k = max(len(s.live) for s in active)
        if present is None:
            past = np.zeros((layers, two, len(active) * k, heads, 0, dk), dtype=np.float32)
        else:
            rows = []
            for s in active:
                g, kp = prev[id(s)]
                parents = list(s.parents)
                rows += [g * kp + p for p in parents + parents[:1] * (k - len(parents))]
            past = present[:, :, rows]
        logp, present = call(active, k, past)
        prev = {id(s): (i, k) for i, s in enumerate(active)}
        for i, s in enumerate(active):
            s.advance(logp[i, : len(s.live)])


def _pad(rows: list[np.ndarray], k: int) -> np.ndarray:
    """Stack per-search arrays (b_i, ...) into (G, k, ...), repeating row 0 as padding."""
    return np.stack([np.concatenate([r, np.repeat(r[:1], k - len(r), axis=0)]) for r in rows])


# ---------------------------------------------------------------- spectra -> hits


def residue_aligned(tokens: tuple[str, ...], scores) -> tuple[float, ...]:
    """One score per residue: an N-terminal token's score is averaged into the residue
    it modifies (mzTab scores residues, and the modification belongs to the first)."""
    out: list[float] = []
    pending: list[float] = []
    for tok, sc in zip(tokens, scores, strict=False):
        if tok.endswith("-"):
            pending.append(float(sc))
            continue
        out.append(float(np.mean(pending + [sc])) if pending else float(sc))
        pending = []
    return tuple(out)


class Pipeline:
    """spectrum -> graph -> (learned | dp) -> Prediction; shared by every backend."""

    def __init__(
        self,
        builder: GraphBuilder,
        backend: Backend | None,
        search: SearchConfig = SearchConfig(),
        prep: PreprocessConfig | None = None,
        bos: int | None = None,
        cache: tuple[int, int, int, int] = (2, 2, 4, 24),
    ):
        self.builder, self.backend, self.search = builder, backend, search
        self.prep = prep or PreprocessConfig()
        self.bos = bos if bos is not None else len(builder.table.tokens)
        self.cache = cache  # (decoder layers, 2, heads, head dim) of the step models

    def graph(self, spectrum, charge: int) -> SpectrumGraph:
        mz, inten = preprocess(spectrum.mz, spectrum.intensity, spectrum.precursor_mz, self.prep)
        return self.builder.build(mz, inten, spectrum.precursor_mz, charge)

    def predict_graph(self, graph: SpectrumGraph) -> Prediction | None:
        return self.predict_graphs([graph])[0]

    def predict_graphs(self, graphs: list[SpectrumGraph]) -> list[Prediction | None]:
        preds = self._learned(graphs) if self.backend is not None else [self._dp(g) for g in graphs]
        for pred, g in zip(preds, graphs, strict=False):
            if pred is not None:
                self._check_precursor(pred, g)
        return preds

    def _dp(self, graph: SpectrumGraph) -> Prediction | None:
        out = dp_sequence(graph, self.builder)
        if out is None:
            return None
        ids, scores, path = out
        return Prediction(ids, scores, path, float(np.mean(scores)), graph=graph)

    def _learned(self, graphs: list[SpectrumGraph]) -> list[Prediction | None]:
        s, be = self.search, self.backend
        feats = pad_batch([graph_arrays(g) for g in graphs])
        mem = be.ps_encode(feats)
        if s.prunes:
            scored = self._node_logits(graphs, mem)
            graphs = [
                self.builder.subgraph(g, top_nodes(logits, s.node_budget(g.precursor_mass))) for g, logits in scored
            ]
            feats = pad_batch([graph_arrays(g) for g in graphs])
            mem = be.ps_encode(feats)
        n = feats["masses"].shape[1]
        index = {id(g): k for k, g in enumerate(graphs)}

        subsets: dict = {}

        def subset(state, axes, active):
            """The state rows of the active graphs (cached while the set is unchanged)."""
            gidx = tuple(index[id(a.graph)] for a in active)
            key = (id(state), gidx)
            if key not in subsets:
                subsets[key] = tuple(np.take(x, gidx, axis=ax) for x, ax in zip(state, axes, strict=True))
            return subsets[key], np.asarray(gidx)

        def ps_call(active, k, past):
            state, gidx = subset(mem, (0, 0, 2), active)
            reqs = [a.request(n) for a in active]
            last, mask = _pad([r[0] for r in reqs], k), _pad([r[1] for r in reqs], k)
            position = np.full(last.shape, active[0].steps, dtype=np.int64)
            return be.ps_step(*state, feats["node_mask"][gidx], last, position, mask, past)

        paths = [PathSearch(g, s.path_beam, s.max_path_steps, s.path_length_bonus) for g in graphs]
        _lockstep(paths, ps_call, self.cache)
        sf_mem = be.sf_encode(feats)

        def sf_call(active, k, past):
            state, gidx = subset(sf_mem, (2,), active)
            reqs = [a.request(self.bos) for a in active]
            token, prefix, gap = (_pad([r[j] for r in reqs], k) for j in range(3))
            return be.sf_step(
                *state,
                feats["node_mask"][gidx],
                feats["masses"][gidx],
                token,
                prefix,
                gap,
                feats["precursor"][gidx],
                past,
            )

        fills = [
            [(FillSearch(self.builder, g, path_segments(g, path), s.fill_beam), path, score) for path, score in best]
            for g, best in zip(graphs, (p.results(s.fill_paths) for p in paths), strict=True)
        ]
        _lockstep([fill for per_graph in fills for fill, _, _ in per_graph], sf_call, self.cache)
        return [self._pick(per_graph) for per_graph in fills]

    def _node_logits(self, graphs: list[SpectrumGraph], state: tuple):
        """(graph, its node head logits) from the PathSearcher's encoder state: a node head
        model's pointer keys carry each node's logit in one extra last column (export_names)."""
        d = self.cache[2] * self.cache[3]
        keys = state[1]
        if keys.shape[-1] != d + 1:
            raise ConfigError(
                "node pruning (prune_nodes, prune_per_residue) needs a model with a node head "
                "(engine train graphnovo --node-weight > 0)"
            )
        return [(g, keys[k, : g.n, -1] / node_logit_scale(d)) for k, g in enumerate(graphs)]

    def _pick(self, fills: list[tuple[FillSearch, list[int], float]]) -> Prediction | None:
        """The best finished sequence of one graph's fills, each (fill, its path, the path's
        score): precursor-matching ones first, then by the fill's log-probability (plus the
        path's when several paths were filled), plus the weighted fragment evidence."""
        s, masses = self.search, self.builder.table.masses
        candidates = [(x, path, score) for fill, path, score in fills for x in fill.done]
        if not candidates:
            return None
        g = fills[0][0].graph  # every fill of one graph
        evidence = np.zeros(len(candidates))
        if s.rescore_weight:
            evidence = s.rescore_weight * sequence_evidence(self.builder, g, [x.ids for x, _, _ in candidates])
        joint = len(fills) > 1

        def rank(k: int) -> tuple[bool, float]:
            x, _, path_score = candidates[k]
            matched = precursor_match(float(masses[x.ids].sum()), g.precursor_mass, s.precursor_ppm, s.isotopes)[0]
            return matched, x.score + (path_score if joint else 0.0) + evidence[k]

        best, path, path_score = candidates[max(range(len(candidates)), key=rank)]  # ties: the earlier
        scores = [float(np.exp(lp)) for lp in best.logps]
        return Prediction(best.ids, scores, path, float(np.mean(scores)), extra={"path_score": path_score}, graph=g)

    def _check_precursor(self, pred: Prediction, graph: SpectrumGraph) -> None:
        total = float(self.builder.table.masses[pred.ids].sum())
        ok, err = precursor_match(total, graph.precursor_mass, self.search.precursor_ppm, self.search.isotopes)
        pred.matched, pred.precursor_error_ppm = ok, err
        if not ok:  # Casanovo's convention: a precursor mismatch costs one score unit
            pred.score -= 1.0

    def predict_many(self, spectra: list) -> list[tuple[Prediction, int] | None]:
        """Best prediction per spectrum over its charge (or the configured charge range)."""
        jobs = [(k, z) for k, sp in enumerate(spectra) for z in ((sp.charge,) if sp.charge else self.search.charges)]
        graphs = [self.graph(spectra[k], z) for k, z in jobs]
        preds = self.predict_graphs(graphs)
        best: list[tuple[Prediction, int] | None] = [None] * len(spectra)
        for (k, z), pred in zip(jobs, preds, strict=False):
            if pred is not None and (best[k] is None or pred.score > best[k][0].score):
                best[k] = (pred, z)
        return best

    def predict(self, spectrum) -> tuple[Prediction, int] | None:
        return self.predict_many([spectrum])[0]

    def hits(self, spectra: Iterable, failures: list | None = None) -> Iterator:
        """Spectra -> engine PeptideHit, streamed in groups of ``batch_spectra``;
        spectra with no prediction go to ``failures``."""
        group: list = []
        for spec in spectra:
            group.append(spec)
            if len(group) >= self.search.batch_spectra:
                yield from self._group_hits(group, failures)
                group = []
        if group:
            yield from self._group_hits(group, failures)

    def _group_hits(self, group: list, failures: list | None) -> Iterator:
        from engine.interfaces import PeptideHit

        for spec, out in zip(group, self.predict_many(group), strict=False):
            if out is None:
                if failures is not None:
                    failures.append((spec.source or "", spec.ref, "no path: no sequence fills the graph"))
                continue
            pred, z = out
            tokens = self.builder.table.decode(pred.ids)
            yield PeptideHit(
                spectrum_ref=spec.ref,
                scan=spec.scan,
                peptide=to_proforma(tokens),
                score=float(pred.score),
                residue_scores=residue_aligned(tokens, pred.residue_scores),
                precursor_error_ppm=float(pred.precursor_error_ppm),
                charge=int(z),
                precursor_mz=float(spec.precursor_mz),
                source=spec.source,
            )
