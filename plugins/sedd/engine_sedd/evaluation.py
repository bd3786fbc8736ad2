"""`engine eval sedd`: the SEDD bound and (optionally) the AR baseline's exact likelihood
on the same validation sequences, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.interfaces import ConfigError
from engine.runtime import use_torch_threads

from .bundle import load_model_dir
from .component import DEFAULT_AR, resolve_model
from .likelihood import ar_nlls, chars_per_sequence, chunk, sedd_bounds, summarize
from .model import ModelConfig
from .options import EvalOptions
from .text import read_corpus, split_corpus
from .training import DEFAULT_DATA


def validation_sequences(cfg: dict, tokenizer, data=None, train_fraction=None, max_seqs=None) -> np.ndarray:
    """The validation split of the model's corpus, cut into model-length sequences."""
    training = cfg.get("training", {})
    if data is None:
        data = DEFAULT_DATA.with_name(training.get("data", DEFAULT_DATA.name))
    fraction = train_fraction if train_fraction is not None else training.get("train_fraction", 0.9)
    _, val_text = split_corpus(read_corpus(data), fraction)
    seqs = chunk(np.asarray(tokenizer.encode(val_text), dtype=np.int64), cfg["seq_len"], "the validation split")
    if max_seqs is not None and max_seqs < len(seqs):
        seqs = seqs[np.linspace(0, len(seqs) - 1, max_seqs).astype(int)]
    return seqs


class ArtifactNetwork:
    """An exported score network called as the ELBO code calls the torch one, net(x_t, sigma_bar)
    -> raw output, but run on onnxruntime: the bound of an export (a quantized one too) comes from
    the very code that bounds the torch model."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.cfg = ModelConfig(**sampler.config["model"])  # losses.is_radd reads time_conditioning

    def eval(self):
        return self

    def __call__(self, xt, sigma_bar):
        import torch

        return torch.from_numpy(self.sampler.raw_output(xt.numpy(), sigma_bar.numpy()))

    def num_parameters(self) -> int | None:
        return self.sampler.config.get("training", {}).get("parameters")


def evaluate_model(model_dir, data=None, train_fraction=None, n_times=16, max_seqs=None, seed=0, artifact=None) -> dict:
    """The bound (SEDD/RADD) or exact likelihood (AR) of ``model_dir`` on the validation split;
    ``artifact`` (an onnxruntime sampler) replaces the torch network by the exported one."""
    if artifact is None:
        net, cfg, graph, schedule, tok = load_model_dir(model_dir)
    else:
        net, cfg = ArtifactNetwork(artifact), artifact.config
        graph, schedule, tok = artifact.graph, artifact.schedule, artifact.tokenizer
    seqs = validation_sequences(cfg, tok, data, train_fraction, max_seqs)
    chars = chars_per_sequence(tok, seqs)
    if cfg["objective"] == "sedd":
        per = sedd_bounds(net, graph, schedule, seqs, n_times=n_times, seed=seed)
        kind = "upper bound (Monte Carlo ELBO)"
    else:
        per = ar_nlls(net, seqs, bos=tok.vocab_size, vocab=tok.vocab_size)
        kind = "exact"
    out = {
        "model": str(model_dir if artifact is None else artifact.artifact.path),
        **({} if artifact is None else {"artifact_quantization": cfg.get("quantization", {}).get("scheme", "none")}),
        "objective": cfg["objective"],
        "likelihood": kind,
        "tokens_per_sequence": int(seqs.shape[1]),
        "parameters": net.num_parameters(),
    }
    if cfg["objective"] == "sedd":
        out["time_samples"] = n_times
    out.update(summarize(per, seqs.shape[1], chars))
    return out


def ar_model(ar=None) -> Path:
    """The AR baseline's folder: ``ar``, or the bundled one for None or "default"."""
    return resolve_model(DEFAULT_AR if ar in (None, "default") else ar)


def evaluate_models(model=None, options=None, *, seed: int = 0, threads: int | None = None, artifact=None) -> dict:
    """The bound of SEDD ``model`` (or of an exported ``artifact``, an onnxruntime sampler) and,
    with ``options.ar``, the AR baseline's exact likelihood on the same sequences (``options``:
    an :class:`engine_sedd.options.EvalOptions`)."""
    o = options or EvalOptions()
    use_torch_threads(threads)
    if o.times < 1:
        raise ConfigError("--times must be >= 1")
    source = None if artifact is not None else resolve_model(model)
    main = evaluate_model(source, o.data, o.train_fraction, o.times, o.max_seqs, seed, artifact)
    if not o.ar:
        return main
    base = evaluate_model(ar_model(o.ar), o.data, o.train_fraction, o.times, o.max_seqs, seed)
    out = {f"sedd_{k}": v for k, v in main.items()}
    out.update({f"ar_{k}": v for k, v in base.items()})
    out["bpc_ratio"] = main["bpc"] / base["bpc"]
    return out


def judge_samples(ar="default", samples: dict | None = None, tokenizer: dict | None = None) -> dict:
    """Bits per character that the AR baseline assigns to sampled token arrays (one per key):
    the paper's generative perplexity with our own AR model as the judge."""
    net, cfg, _, _, tok = load_model_dir(ar_model(ar))
    if tokenizer is not None and tokenizer != cfg["tokenizer"]:
        raise ConfigError("the AR judge uses a different tokenizer than the samples")
    out = {}
    for key, tokens in (samples or {}).items():
        nll = ar_nlls(net, np.asarray(tokens, dtype=np.int64), bos=tok.vocab_size, vocab=tok.vocab_size)
        out[key] = float(nll.mean() / (chars_per_sequence(tok, tokens) * np.log(2)))
    return out


def self_judge(sampler, samples: dict, n_times: int = 8, seed: int = 0) -> dict:
    """Bits per character of a torch SEDD sampler's own bound on token arrays (one per key). On a model whose
    factorisations agree, its samples score about its entropy, under real text's bound; the excess above
    it measures how much the orders a sample could have been drawn in disagree (MODEL_CARD.md, "Where the
    samples' gap lies")."""
    out = {}
    for key, tokens in samples.items():
        seqs = np.asarray(tokens, dtype=np.int64)
        per = sedd_bounds(sampler.net, sampler.graph, sampler.schedule, seqs, n_times=n_times, seed=seed)
        out[key] = summarize(per, seqs.shape[1], chars_per_sequence(sampler.tokenizer, seqs))["bpc"]
    return out


def token_entropy(rows) -> float:
    """Mean over rows of the entropy (bits) of each row's token histogram: how varied a sample
    is, beside how likely (a low temperature buys likelihood with variety; real text of the same
    length is the reference)."""
    rows = np.asarray(rows)
    out = []
    for row in rows:
        p = np.bincount(row) / len(row)
        p = p[p > 0]
        out.append(float(-(p * np.log2(p)).sum()))
    return float(np.mean(out))
