"""Entry point of the SEDD plugin: hook implementations only (no torch at import)."""

from engine import hookimpl

plugin_api_version = 1


@hookimpl
def register_samplers(registry):
    registry.add(
        "sedd",
        "engine_sedd.component:SEDDSampler",
        description="SEDD score-entropy discrete diffusion: parallel sampling and infilling (Lou et al. 2024)",
        capabilities=("onnx-export", "exact-parity", "infilling", "likelihood"),
        default_model="engine_sedd/weights/default (absorbing, tinyshakespeare characters)",
        commands={
            "sample": "engine_sedd.cli:sample",
            "train": "engine_sedd.cli:train",
            "eval": "engine_sedd.cli:eval",
            "export": "engine_sedd.cli:export",
            "bench": "engine_sedd.cli:bench",
            "demo": "engine_sedd.cli:demo",
        },
        artifact_loader="engine_sedd.ort:load_artifact",
    )
