"""Node budget 128 / 256 / 512 (issue 14, item 3): for an artifact on onnxruntime (1 thread),
on the held-out MassIVE-KB spectra, per budget: graph size, prefix coverage, node precision,
learned and DP peptide recall, and where the time goes (graph building, the two encoders, the
two step models, the rest of the search). Budgets above 128 also keep the 300 most intense peaks
(at 150 peaks the paper's four readings rarely make more than 256 nodes).

    python scripts/node_budget.py ARTIFACT > scripts/results/node_budget.json
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

from engine_graphnovo.component import baseline_for
from engine_graphnovo.evaluation import evaluate, heldout_spectra
from engine_graphnovo.ort_path import MODELS

import engine

BUDGETS = {128: None, 256: 300, 512: 300}  # max_nodes: top_n (None: the model's)


def timed_backend(backend, seconds: dict) -> None:
    """Wrap the backend's four calls so that their wall time adds up in ``seconds``."""
    for name in MODELS:
        call = getattr(backend, name)

        def wrapped(*args, _call=call, _name=name):
            t0 = time.perf_counter()
            try:
                return _call(*args)
            finally:
                seconds[_name] += time.perf_counter() - t0

        setattr(backend, name, wrapped)


def measure(artifact: str, budget: int, top_n: int | None, spectra: list) -> dict:
    options = {"max_nodes": budget, **({"top_n": top_n} if top_n else {})}
    learned = engine.load_artifact(artifact, provider="cpu", threads=1, **options)
    seconds: dict = defaultdict(float)
    timed_backend(learned.backend, seconds)
    builder, prep = learned.pipeline.builder, learned.pipeline.prep
    t0 = time.perf_counter()
    for s in spectra:  # graph building alone
        learned.pipeline.graph(s, s.charge)
    graph_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = list(learned.sequence(spectra))
    total_s = time.perf_counter() - t0
    in_models = {k: round(v, 3) for k, v in seconds.items()}  # of the sequencing run only
    scores = evaluate(spectra, learned, baseline_for(learned.options, learned))
    return {
        "max_nodes": builder.config.max_nodes,
        "top_n": prep.top_n,
        "graph": scores["graph"],
        "prefix_stages": scores["prefix_stages"],
        "peptide_recall": scores["peptide_recall"],
        "aa_precision": scores["aa_precision"],
        "dp_peptide_recall": scores["baseline_peptide_recall"],
        "spectra_per_s": len(spectra) / total_s,
        "hits": len(hits),
        "seconds": {"total": total_s, "graph_building": graph_s, **in_models},
    }


def main(artifact: str) -> dict:
    spectra = heldout_spectra()
    measure(artifact, 128, None, spectra[:8])  # warm-up: sessions, knapsack tables
    rows = [measure(artifact, b, top_n, spectra) for b, top_n in BUDGETS.items()]
    return {"artifact": artifact, "spectra": len(spectra), "threads": 1, "budgets": rows}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=1))
