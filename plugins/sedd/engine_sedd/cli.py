"""SEDD's own verbs, ``fn(ctx)``: train, eval, bench and demo (the core runs sample and
export). Heavy modules are imported inside each command."""

from __future__ import annotations

import attrs

from engine.errors import UsageError
from engine.interfaces import SamplingConfig

#: What ``engine demo sedd`` draws: (title, sampling config).
DEMOS = (
    ("64 steps, 256 characters, seed 0", {"length": 256, "steps": 64, "seed": 0}),
    (
        "infilling between a prefix and a suffix",
        {"length": 160, "steps": 64, "seed": 1, "prefix": "ROMEO:\n", "suffix": "\n\nJULIET:\nAy me!"},
    ),
    (
        "temperature 0.8: likelier, less varied characters (MODEL_CARD.md, Temperature)",
        {"length": 256, "steps": 64, "seed": 0, "temperature": 0.8},
    ),
    (
        "256 steps: remasking draws characters drawn early again late (MODEL_CARD.md, Remasking)",
        {"length": 256, "steps": 256, "seed": 0},
    ),
    (
        "the same with the plain step, which never revisits a character",
        {"length": 256, "steps": 256, "seed": 0, "predictor": "analytic"},
    ),
)


def _refuse(ctx, flags: tuple[str, ...], why: str) -> None:
    """A flag the command has no use for is a usage error, never dropped."""
    for flag in flags:
        if getattr(ctx.args, flag, None) is not None:
            raise UsageError(f"--{flag} does not apply to {ctx.prog} ({why})")


def train(ctx):
    """Train into the -o run folder; with --model, starting from that model's weights."""
    from .component import resolve_model
    from .training import train as run

    fixed = {"out": ctx.output, "seed": ctx.seed, "threads": ctx.threads}
    options = attrs.evolve(ctx.verb_options, **{k: v for k, v in fixed.items() if v is not None})
    start_from = resolve_model(ctx.model) if ctx.model is not None else None
    return run(
        options,
        progress=lambda total, desc: ctx.progress(total=total, desc=desc),
        log=ctx.echo,
        device=ctx.device,
        start_from=start_from,
    )


def evaluate(ctx):
    _refuse(ctx, ("device", "dtype"), "the bound is computed in fp32 on the CPU, the network by torch or onnxruntime")
    from .evaluation import evaluate_models

    seed = 0 if ctx.seed is None else ctx.seed
    artifact = ctx.load() if ctx.args.artifact is not None else None  # the bound of an export
    return evaluate_models(ctx.model, ctx.verb_options, seed=seed, threads=ctx.threads, artifact=artifact)


def bench(ctx):
    _refuse(ctx, ("artifact", "provider"), "it exports --model and times torch against onnxruntime")
    from .bench import run_bench
    from .torch_path import SEDDSampler  # noqa: F401 - needs torch: without it, one line naming the extra

    return run_bench(ctx.load(), ctx.verb_options, engine=ctx.engine, threads=ctx.threads, seed=ctx.seed, log=ctx.note)


def demo(ctx):
    """The DEMOS, on torch or (with --artifact, or without torch) on onnxruntime."""
    sampler = ctx.load()
    texts = []
    for title, values in DEMOS:
        config = SamplingConfig(**values)
        ctx.echo(f"# {title}")
        with ctx.progress(total=config.steps, desc="sampling") as bar:
            (text,) = sampler.sample(config, on_step=lambda _step, bar=bar: bar.update(1)).texts
        ctx.echo(text + "\n")
        texts.append(text)
    return {"texts": texts} if ctx.json else 0
