"""Average the weights of trained models that share one start (a "model soup", Wortsman et al. 2022).

    python scripts/average_models.py runs/A/model runs/B/model -o runs/AB/model

Runs continued from the same weights with other data seeds stay in one basin, so their mean is a
model too, often a better one than either. The configurations must agree on the network; the mean
is taken in fp32 and stored in the inputs' dtype. The configuration is the first model's (its training
record included) plus ``averaged_from``. The output folder is written beside and renamed.
"""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def load_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def network(config: dict) -> dict:
    """What fixes the weights' meaning: the network less dropout (a training setting), its tokenizer and graph."""
    model = {k: v for k, v in config["model"].items() if k != "dropout"}
    return {"model": model, "tokenizer": config.get("tokenizer"), "graph": config.get("graph")}


def average(folders: list[Path]) -> dict[str, np.ndarray]:
    tensors = [load_file(folder / "model.safetensors") for folder in folders]
    names = set(tensors[0])
    if any({n: a.shape for n, a in t.items()} != {n: a.shape for n, a in tensors[0].items()} for t in tensors):
        raise SystemExit("average_models: the models hold different tensors")
    return {
        name: np.mean([t[name].astype(np.float32) for t in tensors], axis=0).astype(tensors[0][name].dtype)
        for name in sorted(names)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model folders (config.json + model.safetensors)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if len(args.models) < 2:
        raise SystemExit("average_models: give at least two models")
    configs = [load_config(folder) for folder in args.models]
    if any(network(c) != network(configs[0]) for c in configs):
        raise SystemExit("average_models: the models' networks differ")
    config = dict(configs[0], averaged_from=[str(folder) for folder in args.models])
    partial = args.output.with_name(args.output.name + ".new")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file(average(args.models), partial / "model.safetensors")
    (partial / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(args.output, ignore_errors=True)
    partial.rename(args.output)
    print(f"average_models: wrote {args.output}")


if __name__ == "__main__":
    main()
