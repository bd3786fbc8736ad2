"""Entry point of the Medusa plugin: hook implementations only (imports no torch)."""

from engine import hookimpl

plugin_api_version = 1


@hookimpl
def register_decoders(registry):
    registry.add(
        "medusa",
        "engine_medusa.component:MedusaDecoder",
        description="Medusa (Cai et al. 2024): extra decoding heads + tree attention; exact greedy, "
        "lossless sampling; any HF causal LM",
        capabilities=("onnx-export", "batch", "stream", "exact-greedy", "lossless-sampling"),
        default_model="engine_medusa/weights/default (heads for HuggingFaceTB/SmolLM2-135M-Instruct)",
        commands={
            "decode": "engine_medusa.cli:decode",
            "train": "engine_medusa.cli:train",
            "eval": "engine_medusa.cli:evaluate",
            "export": "engine_medusa.cli:export",
            "bench": "engine_medusa.bench:bench",
            "demo": "engine_medusa.cli:demo",
        },
        artifact_loader="engine_medusa.ort:load_artifact",
    )


@hookimpl
def register_commands(commands):
    commands.add(
        "medusa",
        "engine_medusa.cli:medusa_main",
        help="Medusa tools: tune-tree (measure head accuracies, grow and size the tree)",
    )
