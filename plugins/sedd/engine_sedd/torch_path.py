"""The torch back end of the SEDD sampler (the factory the plugin registers)."""

from __future__ import annotations

import numpy as np
import torch

from engine.interfaces import ConfigError
from engine.runtime import use_torch_threads

from .bundle import check_device, load_model_dir
from .component import SEDDSamplerBase, resolve_model

DTYPES = ("fp32", "bf16")


class SEDDSampler(SEDDSamplerBase):
    """The sampler on torch. ``model``: a model folder (default: the bundled tinyshakespeare
    model); ``device``: a torch device (default: the CPU); ``dtype``: fp32, or bf16 autocast;
    ``cache``: reuse network outputs (see :class:`engine_sedd.component.CachedNetwork`); ``remask``,
    ``remask_start``: the remdm predictor's cap and start (see :class:`engine_sedd.sampling.RemaskingPredictor`)."""

    def __init__(
        self,
        *,
        model=None,
        device: str | None = None,
        threads: int | None = None,
        dtype: str = "fp32",
        cache: bool = True,
        remask: float | None = None,
        remask_start: float | None = None,
    ):
        use_torch_threads(threads)
        device = str(device or "cpu")
        check_device(device)
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be fp32 or bf16, got {dtype!r}")
        self.model_dir = resolve_model(model)
        self.net, config, *_ = load_model_dir(self.model_dir, device)
        super().__init__(config, cache=cache, remask=remask, remask_start=remask_start)
        self.device, self.dtype = device, dtype

    def raw_output(self, x, sigma_bar):
        return self.raw_output_at(x, sigma_bar, None)

    @torch.no_grad()
    def raw_output_at(self, x, sigma_bar, rows):
        tokens = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        sb = torch.as_tensor(sigma_bar, dtype=torch.float32, device=self.device)
        at = None if rows is None else torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(self.device)
        kind = torch.device(self.device).type
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=self.dtype == "bf16"):
            return self.net(tokens, sb, at).float().cpu().numpy()

    def export_onnx(self, dest, *, overwrite: bool = False, opset: int | None = None, quantize: str | None = None):
        """Write the score network (fp32 on the CPU, or ``quantize="int8"``) and the model config
        as an engine artifact."""
        from .export import export_artifact

        return export_artifact(self, dest, opset=opset, overwrite=overwrite, quantize=quantize)
