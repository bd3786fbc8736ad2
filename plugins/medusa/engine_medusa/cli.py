"""Medusa's own verbs as ``fn(ctx)``: ``engine train|eval|bench medusa``.

``decode``, ``export`` and ``demo`` are the core's (:mod:`engine.jobs`); the flags of each
verb are declared in :mod:`engine_medusa.options`. ``engine medusa tune-tree`` lives in
:mod:`engine_medusa.tuning`.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import UsageError


def train(ctx):
    """Self-distillation, then Medusa-1 or Medusa-2 training into ``-o DIR``."""
    from engine.runtime import use_torch_threads

    from . import training
    from .base import DEFAULT_BASE

    if not ctx.output:
        raise UsageError(f"{ctx.prog} needs -o DIR, the folder for the heads, checkpoints and logs")
    if ctx.device not in (None, "cpu"):
        raise UsageError(f"{ctx.prog} trains on the CPU (gloo under torchrun), not on {ctx.device!r}")
    use_torch_threads(ctx.threads)
    report = training.run(
        ctx.verb_options,
        base=ctx.model or DEFAULT_BASE,
        out=Path(ctx.output),
        seed=0 if ctx.seed is None else ctx.seed,
        progress=ctx.progress,
        log=ctx.echo,
    )
    return report if os.environ.get("RANK", "0") == "0" else 0  # under torchrun, rank 0 reports


def evaluate(ctx):
    """Per-head top-1/top-5 accuracy and measured tokens per step on prompts (greedy, torch)."""
    from .tuning import evaluate_heads

    if ctx.artifact:
        raise UsageError(f"{ctx.prog} reads the heads' logits on torch: drop --artifact")
    o = ctx.verb_options
    decoder = ctx.load()
    report = evaluate_heads(decoder, o.prompts, o.limit, o.max_new_tokens, progress=ctx.progress)
    if o.heldout:
        from .base import canonical_base_name
        from .data import heldout_samples
        from .training import heldout_accuracy

        base = canonical_base_name(decoder.base_name)
        samples = heldout_samples(decoder.model, decoder.codec, base, progress=ctx.progress)
        report["sharegpt_heldout"] = heldout_accuracy(decoder.heads, samples)
    return report


def bench(ctx):
    """HF generate vs Medusa on torch, and greedy vs Medusa on onnxruntime (``--artifact``:
    that artifact, the torch side then using the default heads; else one exported once into
    the cache)."""
    from . import bench as benchmark

    decoder = ctx.load(path="torch")  # with --artifact too: the torch side is built beside it

    def load_artifact(path, tree):
        o, provider = ctx.options, ctx.provider or "cpu"
        retrieval = {"lookup": o.lookup, "chain": o.chain, "datastore": o.datastore, "chain_share": o.chain_share}
        retrieval = retrieval if tree != [] else {}  # [] is the greedy loop
        return ctx.engine.load_artifact(path, provider, ctx.threads, tree=tree, sampling=o.sampling, **retrieval)

    return benchmark.run(
        decoder,
        ctx.verb_options,
        load_artifact=load_artifact,
        artifact=ctx.artifact,
        tree=ctx.options.tree,
        threads=ctx.threads,
        log=ctx.echo,
    )
