"""Non-learned baseline: dynamic programming for the best-scoring path through the
spectrum graph, each gap filled by the fewest residues the knapsack allows.

The yardstick the learned PathSearcher + SeqFiller must beat: node scores count the
peak evidence for the node, edges are penalised per residue they leave unexplained.
"""

from __future__ import annotations

import numpy as np

from .graph import GraphBuilder, SpectrumGraph

# Evidence weight per ion type (a/b/y x 1+/2+ x plain/-NH3/-H2O, graph.ion_features order).
# y outweighs b (HCD): otherwise a node and its mirror M - p + H2O, which reads the same
# two peaks with b and y swapped, would score the same.
_W = np.array(
    [
        0.4,
        0.1,
        0.1,
        0.2,
        0.05,
        0.05,  # a 1+, a 2+
        0.7,
        0.2,
        0.2,
        0.35,
        0.1,
        0.1,  # b
        1.0,
        0.25,
        0.25,
        0.5,
        0.1,
        0.1,
    ]
)  # y
RESIDUE_PENALTY = 1.0  # per residue an edge leaves between observed nodes
JUMP_PENALTY = 1.0  # extra for a jump without a matching edge
AVERAGE_RESIDUE = 110.0
NODE_COST = 0.5  # a node must be supported by more than one weak peak to pay off


def ion_evidence(ions: np.ndarray) -> np.ndarray:
    """(n,) peak evidence of n prefix masses from their (n, 18, F) ion features."""
    present, rel = ions[..., 0], ions[..., 1]
    return (present * (0.5 + rel) * _W).sum(-1)


def node_scores(graph: SpectrumGraph) -> np.ndarray:
    score = ion_evidence(graph.ions) - NODE_COST
    score[0] = score[-1] = 0.0
    return score


def sequence_evidence(builder: GraphBuilder, graph: SpectrumGraph, sequences: list[list[int]]) -> np.ndarray:
    """For each sequence, the mean peak evidence over its cleavage sites (0 without peaks or
    sites): the fragments of every prefix it implies, gaps included, read from the graph's
    spectrum. One ion-feature pass serves all sequences of a graph."""
    out = np.zeros(len(sequences))
    if graph.peaks is None:
        return out
    table = builder.table
    sites = []
    for ids in map(np.asarray, sequences):
        sites.append(np.cumsum(table.masses[ids])[:-1][~table.nterm[ids[:-1]]] if ids.size > 1 else np.zeros(0))
    counts = np.array([x.size for x in sites])
    if counts.sum() == 0:
        return out
    mz, inten = graph.peaks
    evidence = ion_evidence(builder.ion_features(np.concatenate(sites), mz, inten, graph.precursor_mass))
    has = counts > 0
    out[has] = np.add.reduceat(evidence, (np.cumsum(counts) - counts)[has]) / counts[has]
    return out


def edge_scores(graph: SpectrumGraph) -> np.ndarray:
    """(n, n) score of stepping i -> j; -inf where not allowed."""
    diff = graph.masses[None, :] - graph.masses[:, None]
    est = np.maximum(np.rint(diff / AVERAGE_RESIDUE), 1)
    score = -RESIDUE_PENALTY * (est - 1) - JUMP_PENALTY
    score[graph.src, graph.dst] = -RESIDUE_PENALTY * (graph.nres - 1)
    score[~graph.next_mask()] = -np.inf
    return score


def best_path(graph: SpectrumGraph) -> tuple[list[int], float]:
    """Highest-scoring source -> sink node path (nodes are in mass order: a DAG)."""
    n = graph.n
    ns, es = node_scores(graph), edge_scores(graph)
    best = np.full(n, -np.inf)
    back = np.zeros(n, dtype=np.int64)
    best[0] = 0.0
    for j in range(1, n):
        cand = best[:j] + es[:j, j]
        i = int(np.argmax(cand))
        best[j], back[j] = cand[i] + ns[j], i
    path = [n - 1]
    while path[-1] != 0:
        path.append(int(back[path[-1]]))
    return path[::-1], float(best[-1])


def sequence_graph(graph: SpectrumGraph, builder: GraphBuilder):
    """DP path + knapsack fill -> (tokens ids, per-residue scores, path) or None."""
    from .decoding import fill_knapsack, path_segments

    path, _score = best_path(graph)
    segments = path_segments(graph, path)
    final_tol = max(5e-6 * graph.precursor_mass, 0.004)
    filled = fill_knapsack(segments, builder, graph.edge_tol, final_tol=final_tol)
    if filled is None:  # a wrong path may not add up to M: fill each gap on its own
        filled = fill_knapsack(segments, builder, graph.edge_tol, carry_residual=False)
    if filled is None:
        return None
    ids, scores = filled
    return ids, scores, path
