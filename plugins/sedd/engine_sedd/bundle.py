"""A trained model on disk: a folder with config.json (model, graph, schedule, tokenizer,
objective, training record) and model.safetensors (EMA weights). Written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.interfaces import ConfigError

from .graphs import graph_from_config
from .model import ModelConfig, ScoreNet
from .schedules import schedule_from_config
from .text import tokenizer_from_dict

DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


def check_device(device: str) -> None:
    """A one-line ConfigError when ``device`` names CUDA and this torch sees no CUDA GPU."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but this torch build sees no CUDA GPU")


def read_config(model_dir) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a SEDD model folder (no config.json): {model_dir}")
    return json.loads(path.read_text())


def steps_in_all(cfg: dict) -> int:
    """Training steps a model's weights have seen: its run's and, for a warm start, every step of
    the model it started from (recorded as ``started_from.steps``, so chains of starts add up)."""
    return cfg.get("training", {}).get("steps", 0) + (cfg.get("started_from") or {}).get("steps", 0)


def save_model_dir(dest, net, config: dict, dtype: str = "fp32") -> Path:
    """Write ``net``'s weights in ``dtype`` and ``config`` as a model folder (see write_model_dir)."""
    state = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in net.state_dict().items()}
    return write_model_dir(dest, state, config)


def write_model_dir(dest, state: dict[str, torch.Tensor], config: dict) -> Path:
    """Write config.json + model.safetensors into a temporary sibling, then rename."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    save_file(state, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    for f in tmp.iterdir():  # mkdtemp is private (0700); a model folder is ordinary data
        f.chmod(0o644)
    tmp.chmod(0o755)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    return dest


def load_model_dir(model_dir, device="cpu"):
    """-> (net in fp32 eval mode, config dict, graph or None for AR, schedule or None, tokenizer)."""
    cfg = read_config(model_dir)
    net = ScoreNet(ModelConfig(**cfg["model"]))
    state = load_file(str(Path(model_dir) / "model.safetensors"))
    net.load_state_dict({k: v.float() for k, v in state.items()})
    net.to(device).eval()
    graph = graph_from_config(cfg["graph"]) if cfg.get("graph") else None
    schedule = schedule_from_config(cfg["schedule"]) if cfg.get("schedule") else None
    return net, cfg, graph, schedule, tokenizer_from_dict(cfg["tokenizer"])
