"""Entry point of the GraphNovo plugin: hook implementations only (imports no torch)."""

from engine import hookimpl

plugin_api_version = 1

_COMMANDS = "engine_graphnovo.cli:"


@hookimpl
def register_sequencers(registry):
    registry.add(
        "graphnovo",
        "engine_graphnovo.component:GraphNovoSequencer",
        description="GraphNovo de novo peptide sequencing: spectrum graph, PathSearcher, SeqFiller",
        capabilities=("onnx-export",),
        default_model="engine_graphnovo/weights/default",
        commands={verb: _COMMANDS + verb for verb in ("sequence", "train", "eval", "export", "bench", "demo")},
        artifact_loader="engine_graphnovo.ort:load_artifact",
    )
    registry.add(
        "graphnovo-dp",
        "engine_graphnovo.component:DPSequencer",
        description="Non-learned baseline: DP best path through the GraphNovo spectrum graph, knapsack fill",
        commands={"sequence": _COMMANDS + "sequence_dp", "eval": _COMMANDS + "eval_dp", "demo": _COMMANDS + "demo_dp"},
    )
