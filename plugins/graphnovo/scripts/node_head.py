"""How well the PathSearcher's node head tells true prefix nodes from the rest (v4 on): for
each spectrum set, the ROC AUC of the head's logit over all inner graph nodes (label: within
the node window of a true prefix mass, training.true_nodes), and the same for the DP
baseline's hand-made node score (baseline.node_scores) on the same nodes.

    python scripts/node_head.py WEIGHTS > scripts/results/node_head_v4_candidate.json

Sets: the 153 held-out MassIVE-KB spectra and 256 fresh simulated spectra (seed 12345).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from engine_graphnovo.baseline import node_scores
from engine_graphnovo.data import graph_arrays, pad_batch
from engine_graphnovo.evaluation import heldout_spectra, simulated_spectra
from engine_graphnovo.torch_path import GraphNovoSequencer
from engine_graphnovo.training import encode_args, true_nodes

from engine.io.peptides import parse_peptide, residue_masses
from engine.runtime import use_torch_threads


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(scores.size)
    ranks[order] = np.arange(1, scores.size + 1)
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    pos = labels.sum()
    neg = labels.size - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def measure(model: GraphNovoSequencer, spectra: list) -> dict:
    head, hand, labels = [], [], []
    for spec in spectra:
        graph = model.pipeline.graph(spec, spec.charge)
        feats = {k: torch.from_numpy(v) for k, v in pad_batch([graph_arrays(graph)]).items()}
        with torch.no_grad():
            logits = model.ps.node_logits(model.ps.encode(*encode_args(feats)))[0].numpy()
        inner = slice(1, graph.n - 1)
        head.append(logits[inner])
        hand.append(node_scores(graph)[inner])
        labels.append(true_nodes(graph, residue_masses(parse_peptide(spec.label)))[inner])
    y = np.concatenate(labels)
    return {
        "spectra": len(spectra),
        "inner_nodes": int(y.size),
        "true_fraction": float(y.mean()),
        "auc_node_head": auc(np.concatenate(head), y),
        "auc_dp_node_score": auc(np.concatenate(hand), y),
    }


def main(weights: str) -> dict:
    use_torch_threads(1)
    model = GraphNovoSequencer(model=weights)
    if model.ps.node_score is None:
        raise SystemExit(f"{weights}: this model has no node head")
    sets = {"held-out MassIVE-KB": heldout_spectra(), "simulated (seed 12345)": simulated_spectra(256)}
    return {"weights": weights} | {name: measure(model, spectra) for name, spectra in sets.items()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=1))
