"""Entry point of the GraphNovo plugin: hook implementations only (imports no torch)."""

from engine import hookimpl

plugin_api_version = 2

_PKG = "engine_graphnovo"


@hookimpl
def register_sequencers(registry):
    registry.add(
        "graphnovo",
        f"{_PKG}.torch_path:GraphNovoSequencer",
        description="GraphNovo de novo peptide sequencing: spectrum graph, PathSearcher, SeqFiller",
        capabilities=("onnx-export",),
        default_model=f"{_PKG}/weights/default",
        options=f"{_PKG}.options:GraphNovoOptions",
        commands={"train": f"{_PKG}.cli:train", "eval": f"{_PKG}.cli:evaluate", "bench": f"{_PKG}.cli:bench"},
        verb_options={
            "train": f"{_PKG}.options:TrainOptions",
            "eval": f"{_PKG}.options:EvalOptions",
            "bench": f"{_PKG}.options:BenchOptions",
        },
        artifact_loader=f"{_PKG}.ort_path:load_artifact",
        default_artifact=f"{_PKG}:artifacts/default",
    )
    registry.add(
        "graphnovo-dp",
        f"{_PKG}.component:DPSequencer",
        description="Non-learned baseline: DP best path through the GraphNovo spectrum graph, knapsack fill",
        options=f"{_PKG}.options:SearchOptions",
        commands={"eval": f"{_PKG}.cli:evaluate"},
        verb_options={"eval": f"{_PKG}.options:EvalOptions"},
    )
