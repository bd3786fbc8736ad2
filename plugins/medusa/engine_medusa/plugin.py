"""Entry point of the Medusa plugin: hook implementations only (imports no torch)."""

from engine import hookimpl

plugin_api_version = 2


@hookimpl
def register_decoders(registry):
    registry.add(
        "medusa",
        "engine_medusa.torch_path:MedusaDecoder",
        description="Medusa (Cai et al. 2024): extra decoding heads + tree attention; exact greedy, "
        "lossless sampling; any HF causal LM",
        capabilities=("onnx-export", "batch", "stream", "exact-greedy", "lossless-sampling"),
        default_model="engine_medusa/weights/default (heads for HuggingFaceTB/SmolLM2-135M-Instruct)",
        options="engine_medusa.options:MedusaOptions",
        commands={
            "train": "engine_medusa.cli:train",
            "eval": "engine_medusa.cli:evaluate",
            "bench": "engine_medusa.cli:bench",
        },
        verb_options={
            "train": "engine_medusa.options:TrainOptions",
            "eval": "engine_medusa.options:EvalOptions",
            "bench": "engine_medusa.options:BenchOptions",
        },
        artifact_loader="engine_medusa.ort_path:load_artifact",
    )


@hookimpl
def register_commands(commands):
    commands.add(
        "medusa",
        "engine_medusa.tuning:main",
        help="Medusa tools: tune-tree (measure head accuracies, grow and size the tree)",
    )
