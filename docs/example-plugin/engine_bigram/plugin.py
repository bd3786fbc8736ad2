"""Entry-point module: hook implementations only, no heavy imports."""

from engine import hookimpl

plugin_api_version = 2


@hookimpl
def register_samplers(registry):
    registry.add(
        "bigram",
        "engine_bigram.sampler:BigramSampler",
        description="character bigram sampler (example plugin)",
        capabilities=("onnx-export", "exact-parity"),
        default_model="built from a short built-in text, or from the text file given with --model",
        options="engine_bigram.options:BigramOptions",
        artifact_loader="engine_bigram.sampler:load_artifact",
    )
