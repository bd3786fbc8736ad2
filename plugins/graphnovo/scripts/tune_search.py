"""The model card's search-setting tables: `engine train graphnovo --tune` without the training.

Runs engine_graphnovo.evaluation.tune_search (path-length bonus 0/1/2/3 at beam 5, then beams
5/10/20 with the chosen bonus, then together the paths the SeqFiller fills, 1 or 2 at half the
beam, and the fragment-evidence weight 0/10/20/40/80 of its candidate ranking, on 256 fresh
simulated spectra, seed 12345) on a COPY of the weights (tune_search rewrites the config's
`search`; the shipped weights are not touched) and prints its measurements as JSON, with the
search setting it would store.

    python scripts/tune_search.py [WEIGHTS]      (default: the shipped default weights)
    python scripts/tune_search.py --store WEIGHTS    (a run's own weights: stores the setting there)
    python scripts/tune_search.py --rescore-weights 0,40,80,160,320 [--store] [WEIGHTS]   (another grid)

Peptide recall and AA precision/recall are deterministic; spectra_per_s is a torch timing on
this machine at the time (1 thread) and moves with the load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from engine.runtime import use_torch_threads


def main(argv: list[str]) -> int:
    from engine_graphnovo.component import DEFAULT_WEIGHTS
    from engine_graphnovo.evaluation import tune_search

    use_torch_threads(1)
    parser = argparse.ArgumentParser(prog="tune_search.py")
    parser.add_argument("--store", action="store_true", help="tune a run's own weights and store the setting there")
    parser.add_argument(
        "--rescore-weights", help="comma list of fragment-evidence weights to try (default: 0,10,20,40,80)"
    )
    parser.add_argument("weights", nargs="?")
    args = parser.parse_args(argv)
    store = args.store
    grid = {"rescore_weights": tuple(float(w) for w in args.rescore_weights.split(","))} if args.rescore_weights else {}
    src = Path(args.weights) if args.weights else DEFAULT_WEIGHTS
    if store and src.resolve() == DEFAULT_WEIGHTS.resolve():
        raise SystemExit("--store tunes a run's weights, not the shipped default")
    with tempfile.TemporaryDirectory() as tmp:
        weights = src if store else Path(tmp) / "weights"
        if not store:
            shutil.copytree(src, weights)
        result = tune_search(weights, log=lambda line: print(line, file=sys.stderr), **grid)
        result["stored_search"] = json.loads((weights / "config.json").read_text())["search"]
    result["weights"] = str(src)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
