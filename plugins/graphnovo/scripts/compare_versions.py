"""v2 against v3 (issue 14), the same spectra for each: v2 as shipped (its own peak processing),
v2 on deisotoped peaks (v3's peak processing, v2's weights: what the new graphs alone give), and
v3, on 256 fresh simulated spectra (seed 12345: where the default is chosen) and on the 153
held-out MassIVE-KB spectra (report only). Learned side only; torch, 1 thread.

    python scripts/compare_versions.py V2_WEIGHTS V3_WEIGHTS > scripts/results/compare_v2_v3.json
"""

from __future__ import annotations

import dataclasses
import json
import sys

from engine_graphnovo.evaluation import evaluate, heldout_spectra, simulated_spectra
from engine_graphnovo.torch_path import GraphNovoSequencer

from engine.runtime import use_torch_threads

KEYS = ("peptide_recall", "aa_precision", "aa_recall", "precursor_match", "node_precision", "node_recall")


def main(v2: str, v3: str) -> dict:
    use_torch_threads(1)
    deisotoped = GraphNovoSequencer(model=v2)
    deisotoped.pipeline.prep = dataclasses.replace(deisotoped.pipeline.prep, deisotope=True)
    models = {
        "v2": GraphNovoSequencer(model=v2),
        "v2 on deisotoped peaks": deisotoped,
        "v3": GraphNovoSequencer(model=v3),
    }
    sets = {"simulated (256, seed 12345)": simulated_spectra(256), "held-out MassIVE-KB (153)": heldout_spectra()}
    out = {}
    for set_name, spectra in sets.items():
        out[set_name] = {}
        for name, model in models.items():
            r = evaluate(spectra, model, None)
            out[set_name][name] = {k: r[k] for k in KEYS} | {"graph": r["graph"]}
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3]), indent=1))
