"""Average the weights of trained models that share one start (a "model soup", Wortsman et al. 2022).

    python scripts/average_models.py runs/A/model runs/B/model -o runs/AB/model

Runs continued from the same weights with other data seeds stay in one basin, so their mean is a
model too, often a better one than either. The configurations must agree on the network; the mean
is taken in fp32 and stored in the inputs' dtype. The configuration is the first model's (its training
record included) plus ``averaged_from``. The folder is written like a trained one (``write_model_dir``).
"""

import argparse
import json
from pathlib import Path

import torch
from engine_sedd.bundle import write_model_dir
from safetensors.torch import load_file


def load_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def network(config: dict) -> dict:
    """What fixes the weights' meaning: the network less dropout (a training setting), its tokenizer and graph."""
    model = {k: v for k, v in config["model"].items() if k != "dropout"}
    return {"model": model, "tokenizer": config.get("tokenizer"), "graph": config.get("graph")}


def average(folders: list[Path]) -> dict[str, torch.Tensor]:
    tensors = [load_file(folder / "model.safetensors") for folder in folders]
    shapes = {name: a.shape for name, a in tensors[0].items()}
    if any({name: a.shape for name, a in t.items()} != shapes for t in tensors):
        raise SystemExit("average_models: the models hold different tensors")
    return {
        name: torch.stack([t[name].float() for t in tensors]).mean(0).to(first.dtype)
        for name, first in tensors[0].items()
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
    write_model_dir(args.output, average(args.models), config)
    print(f"average_models: wrote {args.output}")


if __name__ == "__main__":
    main()
