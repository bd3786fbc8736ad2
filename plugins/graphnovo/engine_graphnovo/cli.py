"""`engine train|eval|bench graphnovo` and `engine eval graphnovo-dp` (plugin API 2: fn(ctx)).

The core runs `sequence`, `export` and `demo`; the search and preprocessing flags are the
component's options (`options.py`), already applied by `ctx.load()`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from engine.errors import UsageError

DEFAULT_RUN = "runs/graphnovo"


def train(ctx) -> dict:
    """Train PathSearcher and SeqFiller (simulated + MassIVE-KB spectra) into -o (default runs/graphnovo)."""
    for flag in ("model", "device"):
        if getattr(ctx, flag) is not None:
            raise UsageError(f"--{flag} does not apply to {ctx.prog}: it trains new weights on the CPU")
    from engine.io.peptides import ResidueTable

    from .component import require_weights
    from .model import ModelConfig
    from .training import TrainConfig
    from .training import train as run

    o = ctx.verb_options
    if o.init:  # before any data is read or simulated
        require_weights(o.init, "--init takes a weights folder: config.json and the two .safetensors")
    out = Path(ctx.output or DEFAULT_RUN)
    cfg = TrainConfig(
        out=str(out),
        minutes=o.minutes,
        max_steps=o.steps,
        batch_size=o.batch_size,
        lr=o.lr,
        real_fraction=o.real_fraction,
        seed=0 if ctx.seed is None else ctx.seed,
        threads=ctx.threads,
        use_real=o.real,
        max_peptides=o.max_peptides,
        checkpoint_every=o.checkpoint_every,
        node_weight=o.node_weight,
        prune_fraction=o.prune_fraction,
        init=o.init,
        dev_fold=_dev_fold(o.hold_dev, o.dev_fold, "--hold-dev"),
    )
    mcfg = ModelConfig(
        d_model=o.d_model,
        encoder_layers=o.encoder_layers,
        decoder_layers=o.decoder_layers,
        node_head=o.node_weight > 0,
        vocab=len(ResidueTable().tokens),
    )
    meta = run(cfg, mcfg, resume=o.resume, progress=ctx.progress, log=ctx.echo)
    weights = out / "weights"
    tuned = {}
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 tunes/installs
    if o.tune and main_rank:
        from .evaluation import tune_search

        tuned = tune_search(weights, log=ctx.echo)
    if o.install and main_rank:
        install_default(weights)
        ctx.note("installed the weights and re-exported the shipped artifact")
    return {
        **tuned,
        "steps": meta["training"]["steps"],
        "seconds": meta["training"]["seconds"],
        "final_path_kl": meta["training"]["final_path_kl"],
        "final_fill_ce": meta["training"]["final_fill_ce"],
        "weights": str(weights),
    }


def _dev_fold(held: bool, fold: int | None, needs: str) -> int | None:
    """The dev fold a verb uses: --dev-fold (default 0) when ``held``, else None."""
    if fold is not None and not held:
        raise UsageError(f"--dev-fold picks the fold of {needs}; give that too")
    return (fold or 0) if held else None


def install_default(weights: Path) -> None:
    """Make ``weights`` the package's default model and re-export its shipped artifact."""
    from .component import DEFAULT_ARTIFACT, DEFAULT_WEIGHTS
    from .torch_path import GraphNovoSequencer

    tmp = DEFAULT_WEIGHTS.with_name("default.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(weights, tmp)
    shutil.rmtree(DEFAULT_WEIGHTS, ignore_errors=True)
    tmp.rename(DEFAULT_WEIGHTS)
    GraphNovoSequencer().export_onnx(DEFAULT_ARTIFACT, overwrite=True)


def evaluate(ctx) -> dict:
    """Labelled spectra (--spectra, default: the held-out MassIVE-KB split): the learned
    model and the DP baseline side by side, or the baseline alone for graphnovo-dp."""
    from engine.io.spectra import ReaderConfig, SkipReport, detect_format, read_spectra

    from .component import DPSequencer, baseline_for
    from .evaluation import evaluate as score
    from .evaluation import real_split

    o = ctx.verb_options
    report = SkipReport()
    if o.spectra and o.split != "heldout":
        raise UsageError("--split picks a MassIVE-KB split; --spectra gives the spectra instead")
    fold = _dev_fold(o.split == "dev", o.dev_fold, "--split dev")
    if o.spectra:
        for path in o.spectra:
            try:
                detect_format(Path(path))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        spectra = read_spectra(o.spectra, report, ReaderConfig(require_label=True), o.labels)
    elif o.labels:
        raise UsageError("--labels labels the files of --spectra; give those too")
    else:
        spectra = real_split(o.split, report, fold)
    spectra = list(spectra)[: o.limit or None]
    component = ctx.load()
    if isinstance(component, DPSequencer):
        learned, baseline = None, component
    else:
        learned, baseline = component, baseline_for(ctx.options, component)
    result = score(spectra, learned, baseline, progress=ctx.progress)
    result["skipped"] += len(report)
    result["skipped_reasons"] = report.reasons()
    result["search"] = dataclasses.asdict(component.pipeline.search)  # what was measured, stored or given
    return result


def bench(ctx) -> dict:
    """Spectra per second on held-out spectra: graph building, DP baseline, torch and
    onnxruntime end to end (with --artifact: that artifact on onnxruntime)."""
    from .component import baseline_for
    from .evaluation import bench as run

    provider = "auto" if ctx.device and ctx.device.startswith("cuda") else "cpu"
    learned = ctx.load()
    return run(
        learned, baseline_for(ctx.options, learned), ctx.verb_options.limit, threads=ctx.threads, provider=provider
    )
