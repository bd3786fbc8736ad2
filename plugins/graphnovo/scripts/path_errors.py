"""Where the learned model loses held-out peptides: for each of the 153 held-out MassIVE-KB
spectra, whether the predicted path holds a node that is no true prefix (outside every true
prefix's node window), and if so whether the model scores the labelled path (the nodes of the
true prefixes, data.path_label) above its own (then the search lost it) or below (the model
prefers the wrong path); paths with only true nodes lose the peptide, if at all, in the gaps.

    python scripts/path_errors.py [WEIGHTS] > scripts/results/path_errors_v3.json

torch, 1 thread; the model's own search setting.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from engine_graphnovo.data import graph_arrays, pad_batch, path_label
from engine_graphnovo.evaluation import heldout_spectra
from engine_graphnovo.graph import true_prefixes
from engine_graphnovo.torch_path import GraphNovoSequencer
from engine_graphnovo.training import encode_args

from engine.io.peptides import parse_peptide, residue_masses
from engine.runtime import use_torch_threads


def path_logp(ps, graph, path: list[int]) -> float:
    """The PathSearcher's log-probability of a source-to-sink node path."""
    feats = {k: torch.from_numpy(v) for k, v in pad_batch([graph_arrays(graph)]).items()}
    allowed = torch.from_numpy(graph.next_mask()[path[:-1]])[None]
    with torch.no_grad():
        logp = ps(*encode_args(feats), torch.tensor([path[:-1]]), allowed)[0]
    return float(sum(logp[i, path[i + 1]] for i in range(len(path) - 1)))


def main(weights: str | None) -> dict:
    use_torch_threads(1)
    model = GraphNovoSequencer(model=weights)
    pipe = model.pipeline
    counts = {"spectra": 0, "correct": 0, "wrong_node_paths": 0, "model_prefers_wrong_path": 0}
    counts |= {"search_lost_better_path": 0, "true_node_paths": 0, "true_node_paths_correct": 0}
    for spec in heldout_spectra():
        true = parse_peptide(spec.label)
        masses = residue_masses(true)
        graph = pipe.graph(spec, spec.charge)
        pred = pipe.predict_graphs([graph])[0]
        tokens = pipe.builder.table.decode(pred.ids) if pred else None
        ok = tokens is not None and "".join(tokens).replace("L", "I") == "".join(true).replace("L", "I")
        counts["spectra"] += 1
        counts["correct"] += ok
        inner = graph.masses[pred.path[1:-1]] if pred else np.array([])
        pre = true_prefixes(masses)
        wrong = inner.size and not (np.abs(inner[:, None] - pre[None, :]) <= graph.node_tol).any(1).all()
        if not wrong:
            counts["true_node_paths"] += 1
            counts["true_node_paths_correct"] += ok
            continue
        counts["wrong_node_paths"] += 1
        label = [*path_label(graph, masses)[0].tolist(), graph.n - 1]
        if path_logp(model.ps, graph, label) > path_logp(model.ps, graph, pred.path):
            counts["search_lost_better_path"] += 1
        else:
            counts["model_prefers_wrong_path"] += 1
    return {"weights": weights or "the shipped default"} | counts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else None), indent=1))
