"""The torch back end of the SEDD sampler (the factory the plugin registers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .bundle import load_model_dir
from .sampler import SEDDSamplerBase

DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "default"
DEFAULT_AR = Path(__file__).resolve().parent / "weights" / "ar_baseline"


def resolve_model(model=None) -> Path:
    path = Path(model) if model else DEFAULT_MODEL
    if not (path / "config.json").is_file():
        hint = " (train one with `engine train sedd`)" if model is None else ""
        raise FileNotFoundError(f"no SEDD model at {path}{hint}")
    return path


class SEDDSampler(SEDDSamplerBase):
    """Options: model (folder; default: the bundled tinyshakespeare model), threads, device,
    dtype ("fp32" or "bf16")."""

    def __init__(self, model=None, threads: int | None = None, device: str = "cpu", dtype: str = "fp32"):
        if threads:
            torch.set_num_threads(int(threads))
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but this torch build sees no CUDA GPU")
        if dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype must be fp32 or bf16, got {dtype!r}")
        self.model_dir = resolve_model(model)
        self.net, config, *_ = load_model_dir(self.model_dir, device)
        super().__init__(config)
        self.device, self.dtype = device, dtype

    @torch.no_grad()
    def raw_output(self, x, sigma_bar):
        tokens = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        sb = torch.as_tensor(sigma_bar, dtype=torch.float32, device=self.device)
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.dtype == "bf16"):
            return self.net(tokens, sb).float().cpu().numpy()

    def export_onnx(self, dest, opset: int | None = None):
        from .export import OPSET, export_artifact

        return export_artifact(self.net, self.config, dest, opset=opset or OPSET)
