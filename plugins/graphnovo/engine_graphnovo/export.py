"""ONNX export of PathSearcher and SeqFiller (encode + step graphs) into an engine artifact."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from torch import nn

from engine.artifacts import quiet_exporter

from .data import graph_arrays, pad_batch
from .export_names import ENCODE_INPUTS, PS_STATE, PS_STEP_INPUTS, SF_STATE, SF_STEP_INPUTS, STEP_OUTPUTS

OPSET = 17


class _Encode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.encode_for_steps(*args)


class _Step(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.step_cached(*args)


def _sample(component) -> dict:
    from engine.kinds import probe_spectra

    spec = probe_spectra()[0]
    graph = component.pipeline.graph(spec, spec.charge)
    return pad_batch([graph_arrays(graph), graph_arrays(graph)])


def _export(module, args, names, dynamic, path: Path, outputs=("out",)) -> None:
    with quiet_exporter():
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


def _on_cpu(model: nn.Module) -> nn.Module:
    """The model on the CPU for tracing (a copy when it runs elsewhere)."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return model.eval() if on_cpu else copy.deepcopy(model).cpu().eval()


def export_artifact(component, dest: Path, overwrite: bool = False) -> Path:
    from engine.artifacts import write_component_artifact

    ps, sf = _on_cpu(component.ps), _on_cpu(component.sf)
    feats = _sample(component)
    t = {k: torch.from_numpy(v) for k, v in feats.items()}
    enc_args = [t[k] for k in ENCODE_INPUTS]
    graphs, nodes = {0: "graphs", 1: "nodes"}, {0: "graphs", 1: "nodes"}
    kv = {2: "graphs", 4: "nodes"}  # (L, 2, G, H, n, dk)
    enc_dyn = {
        "ions": nodes,
        "masses": nodes,
        "precursor": {0: "graphs"},
        "charge": {0: "graphs"},
        "pair_code": {0: "graphs", 1: "nodes", 2: "nodes2"},
        "node_mask": nodes,
        "memory": graphs,
        "keys": graphs,
        "cross_kv": kv,
    }
    n = feats["masses"].shape[1]
    with torch.no_grad():
        ps_state = ps.encode_for_steps(*enc_args)
        sf_state = sf.encode_for_steps(*enc_args)
    # steps: K beams for each of G graphs (graph-major), a (L, 2, G*K, H, T, dk) cache;
    # exported with G = 2 != K = 3 so that neither size is baked in
    cfg = ps.cfg
    g, k = feats["masses"].shape[0], 3
    last = torch.tensor([[0, 1, 2]] * g, dtype=torch.long)
    position = torch.full((g, k), 2, dtype=torch.long)
    nmask = torch.ones((g, k, n), dtype=torch.bool)
    past = torch.zeros((cfg.decoder_layers, 2, g * k, cfg.heads, 2, cfg.d_model // cfg.heads))
    token = torch.full((g, k), sf.bos, dtype=torch.long)
    prefix = torch.zeros((g, k), dtype=torch.float32)
    beam = {0: "graphs", 1: "beams"}
    step_dyn = {
        "memory": graphs,
        "keys": graphs,
        "cross_kv": kv,
        "node_mask": nodes,
        "node_masses": nodes,
        "precursor": {0: "graphs"},
        "last": beam,
        "position": beam,
        "token": beam,
        "prefix": beam,
        "gap": beam,
        "next_mask": {0: "graphs", 1: "beams", 2: "nodes"},
        "past": {2: "slots", 4: "steps"},
        "present": {2: "slots", 4: "steps1"},
    }
    ps_args = [*ps_state, t["node_mask"], last, position, nmask, past]
    sf_args = [*sf_state, t["node_mask"], t["masses"], token, prefix, prefix + 50.0, t["precursor"], past]
    ps_out = {**step_dyn, "out": {0: "graphs", 1: "beams", 2: "nodes"}}
    sf_out = {**step_dyn, "out": beam}
    graphs = [
        (_Encode(ps), enc_args, ENCODE_INPUTS, enc_dyn, "ps_encode.onnx", PS_STATE),
        (_Step(ps), ps_args, PS_STEP_INPUTS, _only(ps_out, PS_STEP_INPUTS), "ps_step.onnx", STEP_OUTPUTS),
        (_Encode(sf), enc_args, ENCODE_INPUTS, enc_dyn, "sf_encode.onnx", SF_STATE),
        (_Step(sf), sf_args, SF_STEP_INPUTS, _only(sf_out, SF_STEP_INPUTS), "sf_step.onnx", STEP_OUTPUTS),
    ]
    with tempfile.TemporaryDirectory() as tmp, component.progress(total=len(graphs), desc="export") as steps:
        tmp = Path(tmp)
        for module, args, names, dynamic, file, outputs in graphs:  # a step (and a cancellation point) each
            _export(module, args, names, dynamic, tmp / file, outputs)
            steps.update()
        models = {
            "ps_encode": {"file": "ps_encode.onnx", "inputs": ENCODE_INPUTS, "outputs": PS_STATE},
            "ps_step": {"file": "ps_step.onnx", "inputs": PS_STEP_INPUTS, "outputs": STEP_OUTPUTS},
            "sf_encode": {"file": "sf_encode.onnx", "inputs": ENCODE_INPUTS, "outputs": SF_STATE},
            "sf_step": {"file": "sf_step.onnx", "inputs": SF_STEP_INPUTS, "outputs": STEP_OUTPUTS},
        }
        files = {m["file"]: tmp / m["file"] for m in models.values()}
        return write_component_artifact(
            component,
            dest,
            files=files,
            models=models,
            opset=OPSET,
            config={"meta": component.meta},
            overwrite=overwrite,
        )


def _only(dynamic: dict, names: list[str]) -> dict:
    """Dynamic axes of the named inputs plus the step outputs."""
    return {k: v for k, v in dynamic.items() if k in names or k in STEP_OUTPUTS}
