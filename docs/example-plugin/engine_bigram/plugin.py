"""Entry-point module: hook implementations only, no heavy imports."""

from engine import hookimpl

plugin_api_version = 1


@hookimpl
def register_samplers(registry):
    registry.add(
        "bigram",
        "engine_bigram.sampler:BigramSampler",
        description="character bigram sampler (example plugin)",
        capabilities=("onnx-export", "exact-parity"),
        default_model="built from the text it is given",
        commands={"sample": "engine_bigram.cli:sample", "demo": "engine_bigram.cli:demo"},
        artifact_loader="engine_bigram.sampler:load_artifact",
    )
