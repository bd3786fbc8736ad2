"""Sequencing pipeline shared by torch, onnxruntime and the DP baseline (numpy only).

PathSearcher beam search finds the most likely source -> sink node path; SeqFiller
beam search fills each gap under the knapsack mass mask (single-residue edges forced);
the final pick prefers sequences matching the precursor within tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

import numpy as np

from .baseline import sequence_graph as dp_sequence
from .data import graph_arrays, pad_batch
from .decoding import Segment, allowed_tokens, path_segments, precursor_match
from .graph import GraphBuilder, SpectrumGraph
from .masses import to_proforma
from .preprocess import PreprocessConfig, preprocess

MAX_TOKENS = 60


class Backend(Protocol):
    def ps_encode(self, feats: dict) -> np.ndarray: ...
    def ps_step(self, memory, node_mask, path, next_mask) -> np.ndarray: ...
    def sf_encode(self, feats: dict) -> np.ndarray: ...
    def sf_step(self, memory, node_mask, node_masses, tokens, prefix, gap, precursor) -> np.ndarray: ...


@dataclass(frozen=True)
class SearchConfig:
    path_beam: int = 5
    fill_beam: int = 5
    max_path_steps: int = 48
    precursor_ppm: float = 5.0
    isotopes: tuple[int, ...] = (0,)  # e.g. (0, 1) also accepts M - 1 C13 spacing
    charges: tuple[int, ...] = (2, 3, 4)  # tried when a spectrum has no charge


@dataclass
class Prediction:
    ids: list[int]
    residue_scores: list[float]
    path: list[int]
    score: float
    precursor_error_ppm: float = 0.0
    matched: bool = False
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- PathSearcher


def path_beam_search(backend: Backend, graph: SpectrumGraph, feats: dict, memory: np.ndarray,
                     beam: int, max_steps: int) -> tuple[list[int], float]:
    """Pointer beam search under the next-node mask; a path ends at the sink."""
    sink = graph.n - 1
    allowed = graph.next_mask()
    live: list[tuple[list[int], float]] = [([0], 0.0)]
    done: list[tuple[list[int], float]] = []
    for _ in range(max_steps):
        paths = np.array([p for p, _ in live], dtype=np.int64)
        b = len(live)
        nm = allowed[paths[:, -1]]
        logp = backend.ps_step(np.repeat(memory, b, 0), np.repeat(feats["node_mask"], b, 0), paths, nm)
        total = np.array([s for _, s in live])[:, None] + logp
        total[~nm] = -np.inf
        order = np.argsort(-total, axis=None)[:beam]
        nxt = []
        for flat in order:
            i, j = divmod(int(flat), graph.n)
            if not np.isfinite(total[i, j]):
                continue
            cand = (live[i][0] + [j], float(total[i, j]))
            (done if j == sink else nxt).append(cand)
        live = nxt
        best_done = max((s for _, s in done), default=-np.inf)
        if not live or max(s for _, s in live) < best_done:  # log-probs only decrease
            break
    if not done:  # step budget spent: close the best live path at the sink
        p, s = max(live, key=lambda x: x[1])
        done.append((p + [sink], s))
    return max(done, key=lambda x: x[1])


# ---------------------------------------------------------------- SeqFiller


@dataclass
class _Beam:
    ids: list[int]
    logps: list[float]
    seg: int
    remaining: float
    prefix: list[float]
    gaps: list[float]  # mass left in the current gap before each position

    @property
    def score(self) -> float:
        return float(sum(self.logps))


def fill_beam_search(backend: Backend, builder: GraphBuilder, graph: SpectrumGraph,
                     feats: dict, memory: np.ndarray, segments: list[Segment], beam: int,
                     bos: int, final_tol: float | None = None) -> list[_Beam]:
    """Fill every gap exactly (knapsack mask), forcing single-residue edges. Residuals
    carry into the next gap; the last gap closes within ``final_tol`` (the precursor
    window) so that the whole sequence matches M."""
    masses = builder.table.masses
    tol = graph.edge_tol
    final_tol = tol if final_tol is None else final_tol
    live = [_Beam([], [], 0, segments[0].mass, [0.0], [segments[0].mass])]
    done: list[_Beam] = []
    for _ in range(MAX_TOKENS):
        b = len(live)
        tokens = np.array([[bos] + x.ids for x in live], dtype=np.int64)
        prefix = np.array([x.prefix for x in live], dtype=np.float32)
        gaps = np.array([x.gaps for x in live], dtype=np.float32)
        logp = backend.sf_step(np.repeat(memory, b, 0), np.repeat(feats["node_mask"], b, 0),
                               np.repeat(feats["masses"], b, 0), tokens, prefix, gaps,
                               np.repeat(feats["precursor"], b, 0))
        cands = []
        for i, x in enumerate(live):
            close = final_tol if x.seg == len(segments) - 1 else tol
            for t in _allowed(x, segments, builder, tol, close):
                cands.append((x.score + float(logp[i, t]), i, int(t), float(logp[i, t])))
        cands.sort(key=lambda c: -c[0])
        nxt = []
        for total, i, t, lp in cands[:beam]:
            x = live[i]
            rem, seg = x.remaining - masses[t], x.seg
            if abs(rem) <= (final_tol if seg == len(segments) - 1 else tol):  # gap closed: carry the residual into the next gap
                seg += 1
                rem = segments[seg].mass + rem if seg < len(segments) else rem
            y = _Beam(x.ids + [t], x.logps + [lp], seg, rem, x.prefix + [x.prefix[-1] + masses[t]],
                      x.gaps + [rem])
            (done if seg == len(segments) else nxt).append(y)
        live = nxt
        best_done = max((d.score for d in done), default=-np.inf)
        if not live or max(x.score for x in live) < best_done:
            break
    return done


def _allowed(x: _Beam, segments: list[Segment], builder: GraphBuilder, tol: float,
             close: float) -> np.ndarray:
    seg = segments[x.seg]
    if seg.token >= 0 and abs(x.remaining - seg.mass) <= tol:
        return np.array([seg.token])
    for widen in (1.0, 3.0):  # widened once if the mask is empty
        ok = np.flatnonzero(allowed_tokens(x.remaining, not x.ids, builder, tol * widen, close * widen))
        if ok.size:
            return ok
    return ok


# ---------------------------------------------------------------- spectra -> hits


def residue_aligned(tokens: tuple[str, ...], scores) -> tuple[float, ...]:
    """One score per residue: an N-terminal token's score is averaged into the residue
    it modifies (mzTab scores residues, and the modification belongs to the first)."""
    out: list[float] = []
    pending: list[float] = []
    for tok, sc in zip(tokens, scores):
        if tok.endswith("-"):
            pending.append(float(sc))
            continue
        out.append(float(np.mean(pending + [sc])) if pending else float(sc))
        pending = []
    return tuple(out)


class Pipeline:
    """spectrum -> graph -> (learned | dp) -> Prediction; shared by every backend."""

    def __init__(self, builder: GraphBuilder, backend: Backend | None,
                 search: SearchConfig = SearchConfig(), prep: PreprocessConfig = PreprocessConfig(),
                 bos: int | None = None):
        self.builder, self.backend, self.search, self.prep = builder, backend, search, prep
        self.bos = bos if bos is not None else len(builder.table.tokens)

    def graph(self, spectrum, charge: int) -> SpectrumGraph | None:
        mz, inten = preprocess(spectrum.mz, spectrum.intensity, spectrum.precursor_mz, self.prep)
        return self.builder.build(mz, inten, spectrum.precursor_mz, charge)

    def predict_graph(self, graph: SpectrumGraph) -> Prediction | None:
        if self.backend is None:
            out = dp_sequence(graph, self.builder)
            if out is None:
                return None
            ids, scores, path = out
            pred = Prediction(ids, scores, path, float(np.mean(scores)))
        else:
            pred = self._learned(graph)
            if pred is None:
                return None
        self._check_precursor(pred, graph)
        return pred

    def _learned(self, graph: SpectrumGraph) -> Prediction | None:
        s = self.search
        feats = pad_batch([graph_arrays(graph)])
        mem = self.backend.ps_encode(feats)
        path, path_score = path_beam_search(self.backend, graph, feats, mem, s.path_beam, s.max_path_steps)
        segments = path_segments(graph, path)
        sf_mem = self.backend.sf_encode(feats)
        ppm_tol = max(s.precursor_ppm * 1e-6 * graph.precursor_mass, 0.004)
        beams = fill_beam_search(self.backend, self.builder, graph, feats, sf_mem, segments, s.fill_beam,
                                 self.bos, final_tol=ppm_tol)
        if not beams:  # no exact fill: accept the graph's own tolerance
            beams = fill_beam_search(self.backend, self.builder, graph, feats, sf_mem, segments,
                                     s.fill_beam, self.bos)
        if not beams:
            return None
        masses = self.builder.table.masses
        ranked = sorted(beams, key=lambda x: -x.score)
        matching = [x for x in ranked if precursor_match(float(masses[x.ids].sum()), graph.precursor_mass,
                                                          s.precursor_ppm, s.isotopes)[0]]
        best = (matching or ranked)[0]
        scores = [float(np.exp(lp)) for lp in best.logps]
        return Prediction(best.ids, scores, path, float(np.mean(scores)), extra={"path_score": path_score})

    def _check_precursor(self, pred: Prediction, graph: SpectrumGraph) -> None:
        total = float(self.builder.table.masses[pred.ids].sum())
        ok, err = precursor_match(total, graph.precursor_mass, self.search.precursor_ppm, self.search.isotopes)
        pred.matched, pred.precursor_error_ppm = ok, err
        if not ok:  # Casanovo's convention: a precursor mismatch costs one score unit
            pred.score -= 1.0

    def predict(self, spectrum) -> tuple[Prediction, int] | None:
        """Best prediction over the spectrum's charge (or the configured range)."""
        charges = (spectrum.charge,) if spectrum.charge else self.search.charges
        best = None
        for z in charges:
            graph = self.graph(spectrum, z)
            if graph is None or graph.n < 2:
                continue
            pred = self.predict_graph(graph)
            if pred is not None and (best is None or pred.score > best[0].score):
                best = (pred, z)
        return best

    def hits(self, spectra: Iterable, failures: list | None = None) -> Iterator:
        """Spectra -> engine PeptideHit; spectra with no prediction go to ``failures``."""
        from engine.interfaces import PeptideHit

        for spec in spectra:
            out = self.predict(spec)
            if out is None:
                if failures is not None:
                    failures.append((spec.source or "", spec.ref, "no path: no sequence fills the graph"))
                continue
            pred, z = out
            tokens = self.builder.table.decode(pred.ids)
            yield PeptideHit(
                spectrum_ref=spec.ref, scan=spec.scan, peptide=to_proforma(tokens),
                score=float(pred.score), residue_scores=residue_aligned(tokens, pred.residue_scores),
                precursor_error_ppm=float(pred.precursor_error_ppm), charge=int(z),
                precursor_mz=float(spec.precursor_mz), source=spec.source,
            )
