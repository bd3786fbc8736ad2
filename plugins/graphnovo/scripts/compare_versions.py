"""Default-model versions side by side on the same spectra: 256 fresh simulated spectra (seed
12345: where the default is chosen) and the 153 held-out MassIVE-KB spectra (report only).
Learned side only; torch, 1 thread. Each model is NAME=WEIGHTS; WEIGHTS+deisotope runs those
weights on deisotoped peaks whatever their own peak processing (v2 on v3's peaks).

    python scripts/compare_versions.py v2=V2 v2-deisotoped=V2+deisotope v3=V3 > scripts/results/compare_v2_v3.json
    python scripts/compare_versions.py v3=V3 v4=V4 > scripts/results/compare_v3_v4_candidate.json
"""

from __future__ import annotations

import dataclasses
import json
import sys

from engine_graphnovo.evaluation import evaluate, heldout_spectra, simulated_spectra
from engine_graphnovo.torch_path import GraphNovoSequencer

from engine.runtime import use_torch_threads

KEYS = ("peptide_recall", "aa_precision", "aa_recall", "precursor_match", "node_precision", "node_recall")


def load(spec: str) -> GraphNovoSequencer:
    weights, _, flag = spec.partition("+")
    model = GraphNovoSequencer(model=weights)
    if flag == "deisotope":
        model.pipeline.prep = dataclasses.replace(model.pipeline.prep, deisotope=True)
    elif flag:
        raise SystemExit(f"unknown flag +{flag} (known: +deisotope)")
    return model


def main(specs: list[str]) -> dict:
    use_torch_threads(1)
    models = {name: load(spec) for name, _, spec in (s.partition("=") for s in specs)}
    sets = {"simulated (256, seed 12345)": simulated_spectra(256), "held-out MassIVE-KB (153)": heldout_spectra()}
    out = {}
    for set_name, spectra in sets.items():
        out[set_name] = {}
        for name, model in models.items():
            r = evaluate(spectra, model, None)
            searched = {"searched_graph": r["searched_graph"]} if "searched_graph" in r else {}
            out[set_name][name] = {k: r[k] for k in KEYS} | {"graph": r["graph"]} | searched
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
