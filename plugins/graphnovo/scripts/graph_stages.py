"""Graph settings side by side (issue 14): where the true prefixes go, prefix coverage, node
precision, graph size and the DP baseline's recall, for each peak-processing / reading /
node-budget setting, on labelled spectra:

    python scripts/graph_stages.py dev|heldout|sim|nist > scripts/results/graph_stages_SET.json

dev = the MassIVE-KB training split (choose settings here), heldout = the 153 evaluation
spectra (report only), sim = 300 fresh simulated spectra (seed 12345), nist = the ion-trap BSA
library (graph only; 0.02 Da and an ion-trap 0.5 Da tolerance).
"""

from __future__ import annotations

import json
import sys
import time
import types

import numpy as np
from engine_graphnovo.evaluation import evaluate, heldout_spectra, simulated_spectra, training_split
from engine_graphnovo.graph import READINGS, GraphBuilder, GraphConfig, graph_stats
from engine_graphnovo.graph_audit import StageTally, prefix_stages
from engine_graphnovo.inference import Pipeline
from engine_graphnovo.preprocess import PreprocessConfig, preprocess
from engine_graphnovo.training import DATA

from engine.io.peptides import ResidueTable, parse_peptide, residue_masses
from engine.io.spectra import ReaderConfig, read_spectra

ALL = tuple(READINGS)
LEGACY = {"deisotope": False}  # the v2 model's peak processing
SETTINGS = {  # name: (graph settings, peak settings)
    "v2 (paper's 4 readings, top 150, cap 128)": ({}, LEGACY),
    "cap 256, top 300": ({"max_nodes": 256}, {**LEGACY, "top_n": 300}),
    "top 10 per 100 Da window": ({}, {**LEGACY, "window_top_k": 10, "top_n": 300}),
    "deisotoped": ({}, {}),
    "deisotoped, cap 64": ({"max_nodes": 64}, {}),
    "deisotoped, cap 96": ({"max_nodes": 96}, {}),
    "deisotoped, cap 256, top 300": ({"max_nodes": 256}, {"top_n": 300}),
    "deisotoped, + 2+ b": ({"readings": ("a", "b", "b2", "y", "y2")}, {}),
    "deisotoped, + y losses, cap 256": ({"readings": ("a", "b", "y", "y2", "y-H2O", "y-NH3"), "max_nodes": 256}, {}),
    "deisotoped, all 9 readings, cap 128": ({"readings": ALL}, {}),
    "deisotoped, all 9 readings, cap 256": ({"readings": ALL, "max_nodes": 256}, {}),
    "deisotoped, all 9 readings, cap 512, top 300": ({"readings": ALL, "max_nodes": 512}, {"top_n": 300}),
    # the ceiling: every reading of every peak the processing keeps, no budget to speak of
    "deisotoped, all 9 readings, cap 1024, top 1000": ({"readings": ALL, "max_nodes": 1024}, {"top_n": 1000}),
}
NIST = {
    "v2 at 0.02 Da": ({}, LEGACY),
    "deisotoped at 0.02 Da": ({}, {}),
    "v2 at 0.5 Da (ion trap)": ({"ms2_tol": 0.5}, LEGACY),
}


def measure(spectra, graph: dict, peaks: dict, dp: bool = True) -> dict:
    builder, prep = GraphBuilder(ResidueTable(), GraphConfig(**graph)), PreprocessConfig(**peaks)
    tally, stats = StageTally(), []
    t0 = time.perf_counter()
    for s in spectra:
        rm = residue_masses(parse_peptide(s.label))
        tally.add(prefix_stages(s, rm, builder, prep))
        mz, inten = preprocess(s.mz, s.intensity, s.precursor_mz, prep)
        stats.append(graph_stats(builder.build(mz, inten, s.precursor_mz, s.charge), rm))
    nodes = [g["nodes"] for g in stats]
    out = {
        "median_nodes": float(np.median(nodes)),
        "p90_nodes": float(np.percentile(nodes, 90)),
        "mean_prefix_coverage": float(np.mean([g["prefix_coverage"] for g in stats])),
        "mean_node_precision": float(np.mean([g["node_precision"] for g in stats])),
        "prefix_stages": tally.result(),
        "audit_seconds": round(time.perf_counter() - t0, 1),
    }
    if dp:
        scores = evaluate(spectra, types.SimpleNamespace(pipeline=Pipeline(builder, None, prep=prep)), None)
        out.update({f"dp_{k}": scores[k] for k in ("peptide_recall", "aa_precision", "aa_recall")})
    return out


def labelled(spectra) -> list:
    out = []
    for s in spectra:
        try:
            parse_peptide(s.label)
        except ValueError:
            continue
        out.append(s)
    return out


def main(which: str) -> dict:
    if which == "nist":
        path = DATA / "spectra" / "nist" / "nist-bsa_consensus.msp"
        spectra = labelled(read_spectra([path], config=ReaderConfig(require_label=True)))
        table, dp = NIST, False
    else:
        load = {"dev": lambda: training_split(400), "heldout": heldout_spectra, "sim": lambda: simulated_spectra(300)}
        spectra, table, dp = labelled(load[which]()), SETTINGS, True
    result = {"set": which, "spectra": len(spectra), "settings": {}}
    for name, (graph, peaks) in table.items():
        result["settings"][name] = {"graph": graph, "peaks": peaks, **measure(spectra, graph, peaks, dp)}
        print(name, file=sys.stderr, flush=True)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=1))
