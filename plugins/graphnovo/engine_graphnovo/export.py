"""ONNX export of PathSearcher and SeqFiller (encode + step graphs) into an engine artifact."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .data import graph_arrays, pad_batch
from .export_names import ENCODE_INPUTS, PS_STEP_INPUTS, SF_STEP_INPUTS, STEP_OUTPUTS

OPSET = 17


class _Encode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.encode(*args)


class _Step(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.step_cached(*args)


def _sample(component) -> dict:
    from .component import example_spectra

    spec = example_spectra()[0]
    graph = component.pipeline.graph(spec, spec.charge)
    return pad_batch([graph_arrays(graph), graph_arrays(graph)])


def _export(module, args, names, dynamic, path: Path, outputs=("out",)) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(args),
            str(path),
            input_names=names,
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )


def export_artifact(component, dest: Path) -> Path:
    from engine.artifacts import write_artifact

    feats = _sample(component)
    t = {k: torch.from_numpy(v) for k, v in feats.items()}
    enc_args = [t[k] for k in ENCODE_INPUTS]
    n_dyn = {0: "batch", 1: "nodes"}
    enc_dyn = {
        "ions": n_dyn,
        "masses": n_dyn,
        "precursor": {0: "batch"},
        "charge": {0: "batch"},
        "pair_code": {0: "batch", 1: "nodes", 2: "nodes2"},
        "node_mask": n_dyn,
        "out": n_dyn,
    }
    b, n = feats["masses"].shape
    with torch.no_grad():
        mem = component.ps.encode(*enc_args)
    # steps take G graphs and B beams (rows (B,) names each beam's graph) plus a
    # (L, 2, B, H, T, dk) key/value cache
    cfg = component.ps.cfg
    beams = 3
    rows = torch.tensor([0, 1, 1], dtype=torch.long)
    g = t
    last = torch.tensor([0, 1, 2], dtype=torch.long)
    position = torch.full((beams,), 2, dtype=torch.long)
    nmask = torch.ones((beams, n), dtype=torch.bool)
    past = torch.zeros((cfg.decoder_layers, 2, beams, cfg.heads, 2, cfg.d_model // cfg.heads))
    token = torch.full((beams,), component.sf.bos, dtype=torch.long)
    prefix = torch.zeros((beams,), dtype=torch.float32)
    one = {0: "graphs", 1: "nodes"}
    beam = {0: "beams"}
    cache = {"past": {2: "beams", 4: "steps"}, "present": {2: "beams", 4: "steps1"}}
    ps_dyn = {
        "memory": one,
        "node_mask": one,
        "last": beam,
        "position": beam,
        "next_mask": {0: "beams", 1: "nodes"},
        "rows": beam,
        "out": {0: "beams", 1: "nodes"},
        **cache,
    }
    sf_dyn = {
        "memory": one,
        "node_mask": one,
        "node_masses": one,
        "token": beam,
        "prefix": beam,
        "gap": beam,
        "precursor": {0: "graphs"},
        "rows": beam,
        "out": beam,
        **cache,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        component.ps.eval(), component.sf.eval()
        _export(_Encode(component.ps), enc_args, ENCODE_INPUTS, enc_dyn, tmp / "ps_encode.onnx")
        _export(
            _Step(component.ps),
            [mem, g["node_mask"], last, position, nmask, rows, past],
            PS_STEP_INPUTS,
            ps_dyn,
            tmp / "ps_step.onnx",
            STEP_OUTPUTS,
        )
        _export(_Encode(component.sf), enc_args, ENCODE_INPUTS, enc_dyn, tmp / "sf_encode.onnx")
        _export(
            _Step(component.sf),
            [mem, g["node_mask"], g["masses"], token, prefix, prefix + 50.0, g["precursor"], rows, past],
            SF_STEP_INPUTS,
            sf_dyn,
            tmp / "sf_step.onnx",
            STEP_OUTPUTS,
        )
        models = {
            "ps_encode": {"file": "ps_encode.onnx", "inputs": ENCODE_INPUTS, "outputs": ["out"]},
            "ps_step": {"file": "ps_step.onnx", "inputs": PS_STEP_INPUTS, "outputs": STEP_OUTPUTS},
            "sf_encode": {"file": "sf_encode.onnx", "inputs": ENCODE_INPUTS, "outputs": ["out"]},
            "sf_step": {"file": "sf_step.onnx", "inputs": SF_STEP_INPUTS, "outputs": STEP_OUTPUTS},
        }
        files = {m["file"]: tmp / m["file"] for m in models.values()}
        return write_artifact(
            dest,
            plugin="graphnovo",
            kind="sequencer",
            component="graphnovo",
            files=files,
            models=models,
            opset=OPSET,
            config={"meta": component.meta},
            overwrite=True,
        )
