"""SEDD's options, turned into CLI flags by the core: the sampler's (``--dtype``) and those of
its train, eval and bench commands. Light: attrs and engine only, never torch."""

from __future__ import annotations

import attrs

from engine.interfaces import ConfigError
from engine.options import comma_list, option


def _flag(attribute: attrs.Attribute) -> str:
    return "--" + attribute.name.replace("_", "-")


def _positive(_inst, attribute: attrs.Attribute, value) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if not values or any(v is not None and v <= 0 for v in values):
        shown = ",".join(map(str, values)) if isinstance(value, tuple) else repr(value)
        raise ConfigError(f"{_flag(attribute)} must be > 0, got {shown}")


def _fraction(_inst, attribute: attrs.Attribute, value) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise ConfigError(f"{_flag(attribute)} must be in (0, 1), got {value!r}")


def check_share(value: float, what: str) -> float:
    """``value`` as a float if it is in [0, 1], else a ConfigError naming ``what``."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what} must be in [0, 1], got {value!r}")
    return float(value)


def _share(_inst, attribute: attrs.Attribute, value) -> None:
    if value is not None:
        check_share(value, _flag(attribute))


@attrs.frozen
class SEDDOptions:
    """The sampler's own option (the sampling config is the core's sampler flags)."""

    dtype: str = option("fp32", "precision of the score network on torch", choices=("fp32", "bf16"), paths=("torch",))
    cache: bool = option(
        True,
        "reuse the last network output while no token has changed (models without time conditioning, "
        "i.e. RADD) and skip the network once nothing is masked; the tokens are the same either way",
    )
    remask: float | None = option(
        None,
        "the remdm predictor's cap on the share of unmasked tokens remasked per step, so a token drawn early "
        "can be drawn again with more context (ReMDM, the default predictor; 0: none; default 0.2)",
        type=float,
        metavar="CAP",
        validator=_share,
    )
    remask_start: float | None = option(
        None,
        "the remdm predictor remasks only once at most this share of the characters is masked; the steps "
        "before are plain ones, which skip the network more often (1: throughout; default 0.25)",
        type=float,
        metavar="SHARE",
        validator=_share,
    )


@attrs.frozen
class TrainOptions:
    """``engine train sedd``; the run folder is ``-o`` and the seed and threads the common flags
    (``out``, ``seed`` and ``threads`` are filled in from them)."""

    data: str | None = option(
        None, "text corpus, the first --train-fraction trains (default: tinyshakespeare)", type=str
    )
    train_fraction: float = option(0.9, "fraction of the corpus that trains", validator=_fraction)
    tokenizer: str = option("char", "tokeniser", choices=("char", "bpe"))
    bpe_vocab: int = option(512, "BPE vocabulary size", validator=_positive)
    objective: str = option("sedd", "sedd, or ar: the causal baseline of the same size", choices=("sedd", "ar"))
    graph: str = option("absorbing", "forward process (absorbing, uniform, or a registered one)")
    parametrisation: str = option(
        "sedd",
        "sedd: the network is conditioned on the noise level and outputs scaled ratios; radd (absorbing "
        "only, Ou et al. 2024): no time input, it outputs p0(token | unmasked tokens), so a sampler can "
        "reuse its output while no token changes",
        choices=("sedd", "radd"),
    )
    schedule: str | None = option(
        None, "noise schedule (default: loglinear for absorbing, geometric for uniform)", type=str
    )
    time_sampling: str = option(
        "uniform",
        "how a batch draws its noise levels t: uniform (independently), or stratified (one t in each 1/batch "
        "slice of the time axis; lower-variance gradients, MDLM's low-discrepancy sampler)",
        choices=("uniform", "stratified"),
    )
    length: int = option(128, "sequence length (context)", validator=_positive)
    hidden: int = option(256, "hidden width", validator=_positive)
    blocks: int = option(4, "transformer blocks", validator=_positive)
    heads: int = option(4, "attention heads", validator=_positive)
    cond: int = option(128, "width of the noise-level conditioning", validator=_positive)
    dropout: float = option(0.0, "dropout")
    batch: int = option(32, "sequences per step (per process)", validator=_positive)
    accumulate: int = option(
        1, "micro-batches of --batch per optimiser step (gradient accumulation)", validator=_positive
    )
    steps: int = option(2000, "optimiser steps", validator=_positive)
    lr: float = option(1e-3, "peak learning rate", validator=_positive)
    min_lr_ratio: float = option(0.1, "cosine decay floor, as a fraction of --lr")
    warmup: int = option(100, "linear warmup steps")
    weight_decay: float = option(0.0, "AdamW weight decay")
    clip: float = option(1.0, "gradient norm clip", validator=_positive)
    ema: float = option(0.999, "EMA decay of the saved weights")
    eval_every: int = option(250, "validate every this many steps", validator=_positive)
    eval_seqs: int = option(64, "validation sequences", validator=_positive)
    eval_times: int = option(4, "time samples per validation sequence", validator=_positive)
    ckpt_every: int = option(250, "checkpoint every this many steps", validator=_positive)
    resume: bool = option(False, "continue from OUTPUT/checkpoint.pt")
    bf16: bool = option(False, "bf16 autocast for the network")
    max_minutes: float | None = option(None, "stop (and save) after this wall time", type=float, validator=_positive)
    stop_at: int | None = option(None, "stop (and checkpoint) at this step; resume later", type=int)
    save_dtype: str = option("fp16", "precision of the saved weights", choices=("fp16", "fp32", "bf16"))
    out: str = option("runs/sedd", "run folder", cli=False)
    seed: int = option(0, "random seed", cli=False)
    threads: int | None = option(None, "torch threads", cli=False)


@attrs.frozen
class EvalOptions:
    """``engine eval sedd``: the SEDD bound next to an AR baseline's exact likelihood."""

    ar: str | None = option(
        None,
        "also evaluate an AR baseline: a model folder, or 'default' for the bundled one",
        type=str,
        metavar="MODEL",
    )
    data: str | None = option(None, "corpus (default: the model's training corpus in the shared data)", type=str)
    train_fraction: float | None = option(
        None, "validation = the text after this fraction (default: the model's)", type=float, validator=_fraction
    )
    times: int = option(16, "time samples per sequence", validator=_positive)
    max_seqs: int | None = option(
        None, "evaluate only this many sequences (evenly spaced)", type=int, validator=_positive
    )


@attrs.frozen
class BenchOptions:
    """``engine bench sedd``: torch against onnxruntime, and bits per character."""

    ar: str = option("default", "AR baseline folder ('default': the bundled one)", metavar="MODEL")
    steps: tuple[int, ...] = option(
        (16, 64, 256),
        "step counts to time (comma-separated)",
        type=comma_list(int),
        metavar="N,N,...",
        validator=_positive,
    )
    length: int = option(256, "tokens per sample", validator=_positive)
    batch: int = option(8, "samples per draw", validator=_positive)
    repeats: int = option(
        1,
        "timed draws per step count and back end; samples/s is their median, each in samples_per_s_runs "
        "(the same seed: the same tokens every time)",
        metavar="N",
        validator=_positive,
    )
    eval_seqs: int | None = option(None, "validation sequences (default: all)", type=int, validator=_positive)
    eval_times: int = option(4, "time samples per sequence for the bound", validator=_positive)
    data: str | None = option(None, "corpus for the bits-per-character rows (default: the model's)", type=str)
    skip_bpc: bool = option(False, "time the samplers only")
    temperature: float = option(
        1.0, "sampling temperature of every draw (1: the model's own distribution)", validator=_positive
    )
    predictor: str | None = option(None, "update rule of every draw (default: the sampler's own)", type=str)
    # the shipped artifact is the int8 export, so the bench times it by default
    quantize: str = option(
        "int8",
        "also time this quantized export on onnxruntime and judge its samples ('none': skip)",
        choices=("int8", "none"),
    )
