"""Where the true prefixes go: the stage of graph building at which each true prefix mass is lost.

For a labelled spectrum, each of its L - 1 true prefix masses ends in exactly one stage:

- ``no_fragment_peak``: no raw peak lies at any reading of it (graph.READINGS: a, b, y,
  2+ b and y, water and ammonia losses), so no graph can hold it (missing fragmentation);
- ``not_read``: raw peaks explain it, but only under readings the graph does not use;
- ``peak_processing``: a raw peak gives a node candidate for it, but none of the peaks left
  after peak processing (filters, deisotoping, selection) does;
- ``node_building``: a processed peak does, but no node lands within tolerance of it
  (knapsack feasibility, or merging moved the centre);
- ``node_cap``: a node holds it, but the node budget (``max_nodes``) pruned it;
- ``in_graph``: the graph has a node for it.

The counts add up to the number of true prefixes, so a change of peak processing or node
budget shows where it wins and where it loses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.io.peptides import residue_mass_of

from .graph import READINGS, GraphBuilder, near_any, peak_readings, true_prefixes
from .preprocess import PreprocessConfig, preprocess

STAGES = ("no_fragment_peak", "not_read", "peak_processing", "node_building", "node_cap", "in_graph")
UNCAPPED = 1 << 30


def prefix_stages(
    spectrum, residue_masses: np.ndarray, builder: GraphBuilder, prep: PreprocessConfig
) -> dict[str, int]:
    """Count of the spectrum's true prefixes lost at each stage (STAGES)."""
    M = residue_mass_of(spectrum.precursor_mz, spectrum.charge)
    pre = true_prefixes(residue_masses)
    tol = builder.config.node_tol(M)
    raw = np.asarray(spectrum.mz, dtype=np.float64)

    def hits(config, mz, inten) -> np.ndarray:
        return near_any(np.sort(peak_readings(mz, inten, M, spectrum.charge, config)[0]), pre, tol)

    def nodes(b: GraphBuilder, mz, inten) -> np.ndarray:
        return near_any(b.nodes(mz, inten, M, spectrum.charge)[0], pre, tol)

    mz, inten = preprocess(spectrum.mz, spectrum.intensity, spectrum.precursor_mz, prep)
    lost = [
        ~hits(dataclasses.replace(builder.config, readings=tuple(READINGS)), raw, np.ones_like(raw)),
        ~hits(builder.config, raw, np.ones_like(raw)),
        ~hits(builder.config, mz, inten),
        ~nodes(builder.with_settings(max_nodes=UNCAPPED), mz, inten),
        ~nodes(builder, mz, inten),
    ]
    stage = np.select(lost, range(len(lost)), default=len(lost))
    counts = np.bincount(stage, minlength=len(STAGES))
    return {name: int(k) for name, k in zip(STAGES, counts, strict=True)}


class StageTally:
    """Sums prefix_stages over spectra; ``result`` gives counts and fractions."""

    def __init__(self):
        self.counts = dict.fromkeys(STAGES, 0)

    def add(self, counts: dict[str, int]) -> None:
        for k, v in counts.items():
            self.counts[k] += v

    def result(self) -> dict:
        total = sum(self.counts.values())
        return {
            "true_prefixes": total,
            **{k: round(v / max(total, 1), 4) for k, v in self.counts.items()},
            "counts": dict(self.counts),
        }
