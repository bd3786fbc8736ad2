"""The GraphNovo spectrum graph: prefix-mass nodes, knapsack feasibility, sparse edges.

Nodes are prefix RESIDUE masses (no water, no proton): each peak is read as the ions of
``GraphConfig.readings`` (the paper's four: 1+ a-ion (m/z < 250), 1+ b-ion, 1+ y-ion and 2+
y-ion (m/z > 400, charge > 2); also 2+ b and the 1+ b/y water and ammonia losses). A candidate stays
only when both it and M minus it are reachable residue sums (knapsack), candidates are
merged within tolerance, and node pairs whose mass difference matches 1-6 residues are
joined by an edge. Everything is vectorised over peaks and node pairs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from engine.interfaces import ConfigError
from engine.io.peptides import AA_MASSES, CO, H2O, NH3, PROTON, ResidueTable, residue_mass_of

from .knapsack import MAX_EDGE_RESIDUES, Knapsack, knapsack_for

JUMP_MASS = 7 * AA_MASSES["G"] + 0.04  # a next node this much heavier may skip the edge rule
N_ION_TYPES = 18
# per ion interpretation: present, relative intensity, global rank, local rank, local
# significance, mass error (the model's config records this count: models.check_features)
N_PEAK_FEATURES = 6
LEGACY_PEAK_FEATURES = 5  # models saved before the count was recorded (no local significance)
SIGNIFICANCE_SCALE = 3.0  # local significance = tanh(log(intensity / local median) / 3)
MAX_HOPS = 4


# peak readings that propose a prefix-mass node: name -> (ion, charge, neutral loss)
READINGS = {
    "a": ("a", 1, 0.0),
    "b": ("b", 1, 0.0),
    "b2": ("b", 2, 0.0),
    "b-H2O": ("b", 1, H2O),
    "b-NH3": ("b", 1, NH3),
    "y": ("y", 1, 0.0),
    "y2": ("y", 2, 0.0),
    "y-H2O": ("y", 1, H2O),
    "y-NH3": ("y", 1, NH3),
}
LEGACY_READINGS = ("a", "b", "y", "y2")  # models saved before readings were recorded


@dataclass(frozen=True)
class GraphConfig:
    ms2_tol: float = 0.02  # Da
    ms1_ppm: float = 5.0
    a_ion_max_mz: float = 250.0  # a ions are read only below this m/z
    y2_min_mz: float = 400.0  # 2+ ions are read only above this m/z (and for charge > 2)
    max_nodes: int = 128
    local_window: float = 50.0  # Da (+-), for the local intensity rank and local significance
    readings: tuple[str, ...] = LEGACY_READINGS

    def __post_init__(self):
        unknown = sorted(set(self.readings) - set(READINGS))
        if unknown or not self.readings:
            raise ConfigError(f"graph readings {unknown or '()'} unknown: choose from {', '.join(READINGS)}")
        object.__setattr__(self, "readings", tuple(self.readings))

    @classmethod
    def from_meta(cls, meta: dict) -> GraphConfig:
        """The settings a model recorded; fields it predates take their value of that time."""
        return cls(**{"readings": LEGACY_READINGS, **meta})

    def node_tol(self, mass: float) -> float:
        return self.ms2_tol + self.ms1_ppm * 1e-6 * mass

    def edge_tol(self, mass: float) -> float:
        return 2 * self.ms2_tol + self.ms1_ppm * 1e-6 * mass


@dataclass
class SpectrumGraph:
    masses: np.ndarray  # (n,) ascending; 0 = source, n-1 = sink (M)
    ions: np.ndarray  # (n, 18, N_PEAK_FEATURES) float32 peak evidence per ion type
    src: np.ndarray  # (E,) edge tails, src < dst
    dst: np.ndarray
    nres: np.ndarray  # (E,) fewest residues matching the edge (1..6)
    single: np.ndarray  # (E,) token id when exactly one single token matches, else -1
    precursor_mass: float
    charge: int
    edge_tol: float
    node_tol: float
    jump_ok: np.ndarray | None = None  # (n, n) bool: the mass difference is a residue sum
    stats: dict = field(default_factory=dict)
    peaks: tuple[np.ndarray, np.ndarray] | None = None  # the (m/z, intensity) it was built from

    @property
    def n(self) -> int:
        return int(self.masses.size)

    def adjacency(self) -> np.ndarray:
        """(n, n) bool: direct edges i -> j."""
        adj = np.zeros((self.n, self.n), dtype=bool)
        adj[self.src, self.dst] = True
        return adj

    def next_mask(self) -> np.ndarray:
        """(n, n) bool: j may follow i on a path (edge, long jump, or the sink)."""
        mask = self.adjacency()
        jump = (self.masses[None, :] - self.masses[:, None]) >= JUMP_MASS
        mask |= jump if self.jump_ok is None else jump & self.jump_ok
        mask[:, -1] = True
        mask[-1, :] = False
        mask[np.arange(self.n), np.arange(self.n)] = False
        return mask

    def pair_codes(self) -> np.ndarray:
        """(n, n) int64 code for the attention bias: edge encoding x path encoding.

        edge code: 0 none, 1..6 forward edge with k residues, 7..12 backward;
        path code: hop count 1..MAX_HOPS along edges (0 = farther or unreachable).
        Both live on sparse structures; the dense (n, n) int code is the only dense part."""
        n = self.n
        edge = np.zeros((n, n), dtype=np.int64)
        edge[self.src, self.dst] = self.nres
        edge[self.dst, self.src] = self.nres + MAX_EDGE_RESIDUES
        return edge * (MAX_HOPS + 1) + hop_counts(n, self.src, self.dst)

    def edge_index(self, a: int, b: int) -> int | None:
        """Index of the edge a -> b in the edge arrays, or None."""
        k = np.flatnonzero((self.src == a) & (self.dst == b))
        return int(k[0]) if k.size else None


N_PAIR_CODES = (2 * MAX_EDGE_RESIDUES + 1) * (MAX_HOPS + 1)


def hop_counts(n: int, src: np.ndarray, dst: np.ndarray, max_hops: int = MAX_HOPS) -> np.ndarray:
    """(n, n) undirected hop distance along the sparse edges (0 = self or > max_hops).

    Breadth-first over bit-packed reach sets: each hop ORs the rows of every node's
    neighbours (reduceat over the edge list), never a dense n x n matrix product."""
    u = np.concatenate([src, dst])
    v = np.concatenate([dst, src])
    order = np.argsort(u, kind="stable")
    u, v = u[order], v[order]
    starts = np.searchsorted(u, np.arange(n))
    has = np.bincount(u, minlength=n) > 0
    reach = np.packbits(np.eye(n, dtype=bool), axis=1)
    seen = np.eye(n, dtype=bool)
    hops = np.zeros((n, n), dtype=np.int64)
    for h in range(1, max_hops + 1):
        if u.size == 0:
            break
        spread = np.bitwise_or.reduceat(reach[v], starts[has], axis=0)
        reach = reach.copy()
        reach[has] |= spread
        now = np.unpackbits(reach, axis=1, count=n).astype(bool)
        hops[now & ~seen] = h
        seen |= now
    return hops


class GraphBuilder:
    """Builds graphs for one residue table (knapsack shared across spectra)."""

    def __init__(self, table: ResidueTable | None = None, config: GraphConfig = GraphConfig()):
        table = table or ResidueTable()
        self.table = table
        self.config = config
        self.knapsack: Knapsack = knapsack_for(tuple(table.residue_masses))
        self.token_masses = table.masses
        self.residue_ids = np.flatnonzero(~table.nterm)
        self.offsets = table.nterm_offsets

    def with_settings(self, **settings) -> GraphBuilder:
        """This builder with other graph settings, sharing its residue table and (through
        ``knapsack_for``'s cache) its knapsack."""
        return GraphBuilder(self.table, dataclasses.replace(self.config, **settings))

    # ------------------------------------------------------------ nodes
    def prefix_feasible(self, mass: np.ndarray, tol: float) -> np.ndarray:
        ok = np.zeros(mass.shape, dtype=bool)
        for off in self.offsets:  # an N-terminal modification may shift every prefix
            ok |= self.knapsack.feasible(mass - off, tol)
        return ok

    def nodes(self, mz, inten, M: float, charge: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        tol, merge = c.node_tol(M), c.edge_tol(M)
        mass, weight = peak_readings(mz, inten, M, charge, c)
        keep = (mass > merge) & (mass < M - merge)
        mass, weight = mass[keep], weight[keep]
        keep = self.prefix_feasible(mass, tol) & self.knapsack.feasible(M - mass, tol)
        mass, weight = mass[keep], weight[keep]
        order = np.argsort(mass)
        mass, weight = mass[order], weight[order]
        # merge within tolerance (not just exact duplicates): intensity-weighted centres
        cluster = np.concatenate([[0], np.cumsum(np.diff(mass) > merge)]) if mass.size else mass
        k = int(cluster[-1]) + 1 if mass.size else 0
        wsum = np.bincount(cluster.astype(np.int64), weights=weight, minlength=k)
        centre = np.bincount(cluster.astype(np.int64), weights=weight * mass, minlength=k) / np.maximum(wsum, 1e-12)
        if k > c.max_nodes - 2:  # keep the best-supported nodes
            top = np.sort(np.argsort(-wsum)[: c.max_nodes - 2])
            centre, wsum = centre[top], wsum[top]
        return np.concatenate([[0.0], centre, [M]]), np.concatenate([[1.0], wsum, [1.0]])

    # ------------------------------------------------------------ edges
    def edges(self, masses: np.ndarray, M: float):
        tol = self.config.edge_tol(M)
        n = masses.size
        i, j = np.triu_indices(n, k=1)
        diff = masses[j] - masses[i]
        keep = diff <= self.knapsack.size * 1e-3  # beyond the table no 6-residue edge exists
        i, j, diff = i[keep], j[keep], diff[keep]
        nres = self.knapsack.min_residues(diff, tol).astype(np.int64)
        src0 = i == 0
        for off in self.offsets[1:]:  # an N-terminal token counts as one more residue
            alt = self.knapsack.min_residues(diff[src0] - off, tol).astype(np.int64) + 1
            nres[src0] = np.minimum(nres[src0], alt)
        keep = (nres >= 1) & (nres <= MAX_EDGE_RESIDUES)
        i, j, diff, nres = i[keep], j[keep], diff[keep], nres[keep]
        single = self._single_tokens(diff, nres, tol)
        return i, j, nres, single

    def _single_tokens(self, diff, nres, tol) -> np.ndarray:
        rm = self.token_masses[self.residue_ids]
        hit = np.abs(diff[:, None] - rm[None, :]) <= tol
        unique = (hit.sum(1) == 1) & (nres == 1)
        out = np.full(diff.shape, -1, dtype=np.int64)
        out[unique] = self.residue_ids[hit[unique].argmax(1)]
        return out

    def jump_feasible(self, masses: np.ndarray, M: float) -> np.ndarray:
        """(n, n): can some residue multiset fill i -> j (any length; > table: assumed)?"""
        diff = masses[None, :] - masses[:, None]
        tol = self.config.edge_tol(M)
        ok = np.zeros(diff.shape, dtype=bool)
        up = diff > 0
        ok[up] = self.knapsack.feasible(diff[up], tol)
        ok[0, 1:] = self.prefix_feasible(diff[0, 1:], tol)
        return ok

    # ------------------------------------------------------------ features
    def ion_features(self, masses: np.ndarray, mz: np.ndarray, inten: np.ndarray, M: float) -> np.ndarray:
        """(n, 18, N_PEAK_FEATURES): for a/b/y x 1+/2+ x (-, -NH3, -H2O), the nearest
        peak's evidence: present, relative intensity, global rank, local rank, local
        significance, mass error / MS2 tolerance (all 0 when no peak is in tolerance)."""
        c = self.config
        pre, suf = masses[:, None], (M - masses)[:, None]
        losses = np.array([0.0, NH3, H2O])[None, :]
        singly = [pre - CO + PROTON, pre + PROTON, suf + H2O + PROTON]  # a, b, y (1+)
        theo = []
        for base in singly:
            neutral = base - PROTON
            theo.append(neutral - losses + PROTON)
            theo.append((neutral - losses + 2 * PROTON) / 2)
        theo = np.concatenate(theo, axis=1)  # (n, 18)
        feats = np.zeros(theo.shape + (N_PEAK_FEATURES,), dtype=np.float32)
        if mz.size == 0:
            return feats
        peak = _peak_features(mz, inten, c.local_window)
        pos = np.clip(np.searchsorted(mz, theo), 1, mz.size - 1)
        left, right = pos - 1, pos
        nearest = np.where(np.abs(mz[left] - theo) <= np.abs(mz[right] - theo), left, right)
        err = mz[nearest] - theo
        ok = np.abs(err) <= c.ms2_tol
        feats[..., 0] = ok
        feats[..., 1:-1] = np.where(ok[..., None], peak[nearest], 0.0)
        feats[..., -1] = np.where(ok, err / c.ms2_tol, 0.0)
        return feats

    # ------------------------------------------------------------ all
    def build(self, mz: np.ndarray, inten: np.ndarray, precursor_mz: float, charge: int) -> SpectrumGraph:
        M = residue_mass_of(precursor_mz, charge)
        masses, _support = self.nodes(mz, inten, M, charge)
        src, dst, nres, single = self.edges(masses, M)
        return SpectrumGraph(
            masses=masses,
            ions=self.ion_features(masses, mz, inten, M),
            src=src,
            dst=dst,
            nres=nres,
            single=single,
            precursor_mass=M,
            charge=int(charge),
            edge_tol=self.config.edge_tol(M),
            node_tol=self.config.node_tol(M),
            jump_ok=self.jump_feasible(masses, M),
            peaks=(mz, inten),
        )

    def subgraph(self, graph: SpectrumGraph, keep: np.ndarray) -> SpectrumGraph:
        """The graph on the nodes ``keep`` marks (source and sink always kept): the kept
        nodes' ion features, edges and jumps rebuilt among them (a path may now step over a
        removed node), the peaks it was built from."""
        keep = keep.copy()
        keep[[0, -1]] = True
        masses, M = graph.masses[keep], graph.precursor_mass
        src, dst, nres, single = self.edges(masses, M)
        return dataclasses.replace(
            graph,
            masses=masses,
            ions=graph.ions[keep],
            src=src,
            dst=dst,
            nres=nres,
            single=single,
            jump_ok=self.jump_feasible(masses, M),
            stats={},
        )


def _peak_features(mz: np.ndarray, inten: np.ndarray, window: float) -> np.ndarray:
    """(p, 4): relative intensity, global rank (1 = top), local rank within +-window,
    local significance (see ``local_significance``)."""
    n = mz.size
    rel = inten / inten.max()
    grank = np.empty(n)
    grank[np.argsort(-inten, kind="stable")] = np.arange(n)
    near = np.abs(mz[:, None] - mz[None, :]) <= window
    lrank = (near & (inten[None, :] > inten[:, None])).sum(1)
    sig = local_significance(inten, near)
    return np.stack([rel, 1.0 - grank / max(n, 1), 1.0 / (1.0 + lrank), sig], axis=1).astype(np.float32)


def local_significance(inten: np.ndarray, near: np.ndarray) -> np.ndarray:
    """tanh(log(intensity / median intensity of the peaks near it) / SIGNIFICANCE_SCALE).

    ``near`` (p, p) bool: peak j lies within the local window of peak i (the peak itself
    included, so every window holds at least one peak). The median of each row's window
    comes from one sort of a (p, p) matrix with +inf outside the window: no loop per
    peak. A peak as intense as its local median scores 0, a peak e times its median
    tanh(1/3) = 0.32; the range is (-1, 1)."""
    x = np.maximum(np.asarray(inten, dtype=np.float64), 1e-12)
    vals = np.sort(np.where(near, x[None, :], np.inf), axis=1)
    k = near.sum(1)
    rows = np.arange(x.size)
    median = 0.5 * (vals[rows, (k - 1) // 2] + vals[rows, k // 2])
    return np.tanh(np.log(x / median) / SIGNIFICANCE_SCALE)


def check_features(model: dict, source: str = "model") -> None:
    """Refuse a model whose input features differ from the ones this code builds.

    ``model`` is the ``model`` section of a weights/artifact config; models saved before
    the feature count was recorded had LEGACY_PEAK_FEATURES."""
    got = (int(model.get("ion_types", N_ION_TYPES)), int(model.get("peak_features", LEGACY_PEAK_FEATURES)))
    want = (N_ION_TYPES, N_PEAK_FEATURES)
    if got != want:
        raise ConfigError(
            f"graphnovo {source} was trained on {got[0]} ion types x {got[1]} peak features, this version "
            f"builds {want[0]} x {want[1]} (local significance added): retrain it (engine train graphnovo) "
            "or use the engine-graphnovo version it was made with"
        )


# ---------------------------------------------------------------- statistics


def true_prefixes(residue_masses: np.ndarray) -> np.ndarray:
    """Prefix masses after each residue except the last (the L - 1 cleavages)."""
    return np.cumsum(residue_masses)[:-1]


def label_nodes(graph: SpectrumGraph, residue_masses: np.ndarray) -> list[np.ndarray]:
    """For each true prefix (and the sink): the graph nodes within the node window."""
    out = []
    for p in np.append(true_prefixes(residue_masses), graph.precursor_mass):
        hit = np.flatnonzero(np.abs(graph.masses - p) <= graph.node_tol)
        hit = hit[hit > 0]
        if hit.size:
            out.append(hit)
    return out


def peak_readings(mz: np.ndarray, inten: np.ndarray, M: float, charge: int, config: GraphConfig):
    """Prefix masses of every peak under each reading of ``config.readings`` (b, y, a, 2+, losses),
    with their peak's intensity."""
    masses, weights = [], []
    for name in config.readings:
        ion, z, loss = READINGS[name]
        if ion == "a":
            ok = mz < config.a_ion_max_mz
        elif z > 1:
            ok = (mz > config.y2_min_mz) & (charge > 2)
        else:
            ok = np.ones(mz.shape, dtype=bool)
        neutral = z * (mz[ok] - PROTON) + loss  # the intact fragment's neutral mass
        masses.append({"a": neutral + CO, "b": neutral, "y": M - (neutral - H2O)}[ion])
        weights.append(inten[ok])
    return np.concatenate(masses), np.concatenate(weights)


def missing_fragmentation(
    mz: np.ndarray, residue_masses: np.ndarray, M: float, charge: int, config: GraphConfig = GraphConfig()
) -> float:
    """1 - (true prefixes explained by any a/b/y interpretation of a peak) / (L - 1)."""
    pre = true_prefixes(residue_masses)
    if pre.size == 0:
        return 0.0
    cand, _ = peak_readings(mz, np.ones_like(mz), M, charge, config)
    tol = config.node_tol(M)
    if cand.size == 0:
        return 1.0
    return float(1.0 - near_any(np.sort(cand), pre, tol).mean())


def near_any(sorted_values: np.ndarray, targets: np.ndarray, tol: float) -> np.ndarray:
    """For each target: is some value of the ascending ``sorted_values`` within ``tol``?"""
    if sorted_values.size == 0:
        return np.zeros(targets.shape, dtype=bool)
    pos = np.clip(np.searchsorted(sorted_values, targets), 1, max(sorted_values.size - 1, 1))
    lo = sorted_values[np.maximum(pos - 1, 0)]
    hi = sorted_values[np.minimum(pos, sorted_values.size - 1)]
    return np.minimum(np.abs(lo - targets), np.abs(hi - targets)) <= tol


def graph_stats(graph: SpectrumGraph, residue_masses: np.ndarray | None = None) -> dict:
    stats = {"nodes": graph.n, "edges": int(graph.src.size)}
    if residue_masses is not None and residue_masses.size > 1:
        pre = true_prefixes(residue_masses)
        inner = graph.masses[1:-1]
        d = np.abs(inner[:, None] - pre[None, :]) <= graph.node_tol if inner.size else np.zeros((0, pre.size), bool)
        stats["prefix_coverage"] = float(d.any(0).mean()) if inner.size else 0.0
        stats["node_precision"] = float(d.any(1).mean()) if inner.size else 0.0
    return stats
