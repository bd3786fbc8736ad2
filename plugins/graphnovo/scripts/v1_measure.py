"""The model card's v1 numbers, measured with v1's own code (commit 86b2417).

v1's weights have 5 peak features; today's code refuses them ("retrain it"), so
scripts/card_numbers.sh v1 extracts the tree of 86b2417 and runs this file with that tree
first on PYTHONPATH. Prints JSON.

    python scripts/v1_measure.py tune     # v1's bonus choice: 0/1/2/3 on 96 simulated spectra
    python scripts/v1_measure.py beams    # v1 at beams 5/10/20 on the 256 simulated spectra v2 was tuned on
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    import engine_graphnovo
    import torch
    from engine_graphnovo.component import DEFAULT_WEIGHTS, GraphNovoSequencer
    from engine_graphnovo.evaluation import evaluate, simulated_spectra, tune_search

    torch.set_num_threads(1)
    out: dict = {"code": str(Path(engine_graphnovo.__file__).parent), "weights": str(DEFAULT_WEIGHTS)}
    if argv[:1] == ["tune"]:
        with tempfile.TemporaryDirectory() as tmp:  # tune_search rewrites the config: use a copy
            weights = Path(tmp) / "weights"
            shutil.copytree(DEFAULT_WEIGHTS, weights)
            out.update(tune_search(weights, log=lambda line: print(line, file=sys.stderr)))
    elif argv[:1] == ["beams"]:
        spectra = simulated_spectra(256)
        out["spectra"] = len(spectra)
        for k in (5, 10, 20):
            comp = GraphNovoSequencer(DEFAULT_WEIGHTS, path_beam=k, fill_beam=k)
            out[str(k)] = evaluate(spectra, comp, None)
            out["path_length_bonus"] = comp.pipeline.search.path_length_bonus
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
