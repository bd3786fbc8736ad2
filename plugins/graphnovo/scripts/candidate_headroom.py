"""How often the labelled peptide is among the SeqFiller's finished, precursor-matching candidates
(the room a re-ranking of them has), and how often the pick finds it: the default weights with
the paper's ranking (no fragment evidence) at beams 10 / 10, filling the best 1 or 3 paths.
Torch, 1 thread; deterministic.

    python scripts/candidate_headroom.py > scripts/results/candidate_headroom.json
"""

from __future__ import annotations

import json

from engine_graphnovo import inference
from engine_graphnovo.decoding import precursor_match
from engine_graphnovo.evaluation import heldout_spectra, simulated_spectra
from engine_graphnovo.torch_path import GraphNovoSequencer

from engine.io.peptides import normalize_il, parse_peptide
from engine.runtime import use_torch_threads


def matching_candidates(pipeline, fills) -> list[tuple[str, ...]]:
    """The precursor-matching finished sequences of one graph's fills, I read as L."""
    s, table, g = pipeline.search, pipeline.builder.table, fills[0][0].graph
    out = []
    for fill, _, _ in fills:
        for x in fill.done:
            if precursor_match(float(table.masses[x.ids].sum()), g.precursor_mass, s.precursor_ppm, s.isotopes)[0]:
                out.append(normalize_il(table.decode(x.ids)))
    return out


def measure(spectra, paths: int) -> dict:
    model = GraphNovoSequencer(path_beam=10, fill_beam=10, fill_paths=paths, rescore_weight=0.0)
    pipeline, seen = model.pipeline, []
    pick = inference.Pipeline._pick

    def recording_pick(self, fills):
        seen.append(matching_candidates(self, fills))
        return pick(self, fills)

    inference.Pipeline._pick = recording_pick
    try:
        found = 0
        for i in range(0, len(spectra), 16):
            group = spectra[i : i + 16]
            preds = pipeline.predict_graphs([pipeline.graph(sp, sp.charge) for sp in group])
            for sp, pred in zip(group, preds, strict=True):
                true = normalize_il(parse_peptide(sp.label))
                found += pred is not None and normalize_il(pipeline.builder.table.decode(pred.ids)) == true
    finally:
        inference.Pipeline._pick = pick
    truths = [normalize_il(parse_peptide(sp.label)) for sp in spectra]
    held = sum(t in cands for t, cands in zip(truths, seen, strict=True))
    return {"spectra": len(spectra), "found": int(found), "among_matching_candidates": held}


def main() -> dict:
    use_torch_threads(1)
    sets = {"simulated (256, seed 12345)": simulated_spectra(256), "held-out MassIVE-KB (153)": heldout_spectra()}
    return {name: {f"{p} path(s)": measure(spectra, p) for p in (1, 3)} for name, spectra in sets.items()}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
