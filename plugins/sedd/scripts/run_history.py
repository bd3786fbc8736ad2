"""A run's training-time validation history (from its checkpoint) against a reference run's, at the same steps.

    python scripts/run_history.py runs/radd_wide/checkpoint.pt scripts/results/radd_bf16_config.json \
        -o scripts/results/radd_wide_pilot.json

For a run stopped before it wrote its model folder (a pilot stopped by its rule): its checkpoint holds the
validation history that its config.json would have held.
"""

import argparse
import json
from pathlib import Path

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("reference", help="a model's config.json whose training history is the reference")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    history = json.loads(Path(args.reference).read_text())["training"]["history"]
    reference = {row["step"]: row["val_bpc"] for row in history}
    shared = [row for row in state["history"] if row["step"] in reference]
    out = {
        "checkpoint": args.checkpoint,
        "reference": args.reference,
        "step": state["step"],
        "seconds": round(state["elapsed"], 1),
        "model": state["config"]["model"],
        "history": state["history"],
        "reference_val_bpc": {str(row["step"]): reference[row["step"]] for row in shared},
        "minus_reference": {str(row["step"]): round(row["val_bpc"] - reference[row["step"]], 3) for row in shared},
    }
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["minus_reference"]))


if __name__ == "__main__":
    main()
