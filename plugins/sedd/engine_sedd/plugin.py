"""Entry point of the SEDD plugin: hook implementations only (no torch at import)."""

from engine import hookimpl

plugin_api_version = 2


@hookimpl
def register_samplers(registry):
    registry.add(
        "sedd",
        "engine_sedd.torch_path:SEDDSampler",
        description="SEDD score-entropy discrete diffusion: parallel sampling and infilling (Lou et al. 2024)",
        capabilities=("onnx-export", "exact-parity", "infilling", "likelihood"),
        default_model="engine_sedd/weights/default (absorbing, RADD parametrisation, tinyshakespeare characters)",
        options="engine_sedd.options:SEDDOptions",
        commands={
            "train": "engine_sedd.cli:train",
            "eval": "engine_sedd.cli:evaluate",
            "bench": "engine_sedd.cli:bench",
            "demo": "engine_sedd.cli:demo",
        },
        verb_options={
            "train": "engine_sedd.options:TrainOptions",
            "eval": "engine_sedd.options:EvalOptions",
            "bench": "engine_sedd.options:BenchOptions",
        },
        artifact_loader="engine_sedd.ort_path:load_artifact",
        default_artifact="engine_sedd:artifacts/default",
    )
