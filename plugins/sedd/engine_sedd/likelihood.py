"""Likelihood: SEDD's Monte Carlo ELBO (an upper bound on -log p(x0) in expectation)
and the AR baseline's exact negative log-likelihood, with standard errors and the
units people compare (nats per token, bits per character, perplexity)."""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.interfaces import ConfigError

from .losses import ar_nll, sample_times, sedd_loss


def chunk(tokens: np.ndarray, length: int, what: str = "the text") -> np.ndarray:
    """Non-overlapping sequences of `length` tokens (the tail that does not fill one is dropped)."""
    n = len(tokens) // length
    if n == 0:
        raise ConfigError(
            f"{what} holds {len(tokens)} tokens, fewer than one sequence of {length}: give a longer corpus, "
            "a lower --train-fraction or a shorter sequence length"
        )
    return np.asarray(tokens[: n * length], dtype=np.int64).reshape(n, length)


def _device(net) -> torch.device:
    """Where ``net`` runs: its parameters' device, else (an onnxruntime artifact, a test oracle) the CPU."""
    params = getattr(net, "parameters", None)
    first = next(params(), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def sedd_bounds(
    net,
    graph,
    schedule,
    seqs: np.ndarray,
    n_times: int = 16,
    batch: int = 64,
    seed: int = 0,
    eps: float = 1e-3,
    radd: bool | None = None,
) -> np.ndarray:
    """Per-sequence bound: mean over `n_times` stratified t of the score-entropy loss
    (each stratum's t is uniform in its slice, so the mean stays unbiased). (M,) nats.
    The same code serves SEDD and RADD models (``radd``: see losses.sedd_loss)."""
    if n_times < 1:
        raise ValueError("n_times must be >= 1")
    net.eval()
    device = _device(net)  # a network training on a GPU is validated there
    gen = torch.Generator(device=device).manual_seed(seed)
    x0 = torch.as_tensor(seqs, device=device).repeat_interleave(n_times, dim=0)
    t = sample_times(len(x0), eps, gen, device, stratified=n_times)  # each sequence's n_times rows: one t per slice
    out = torch.cat(
        [
            sedd_loss(net, graph, schedule, x0[i : i + batch], t=t[i : i + batch], generator=gen, eps=eps, radd=radd)
            for i in range(0, len(x0), batch)
        ]
    )
    return out.view(len(seqs), n_times).mean(1).cpu().numpy()


@torch.no_grad()
def ar_nlls(net, seqs: np.ndarray, bos: int, vocab: int, batch: int = 64) -> np.ndarray:
    net.eval()
    x0 = torch.as_tensor(seqs, device=_device(net))
    return torch.cat([ar_nll(net, x0[i : i + batch], bos, vocab) for i in range(0, len(x0), batch)]).cpu().numpy()


def chars_per_sequence(tokenizer, seqs) -> float:
    """Mean characters a row of token ids decodes to: the unit behind every bits-per-character figure."""
    return float(np.mean([tokenizer.num_chars(row) for row in np.asarray(seqs).tolist()]))


def summarize(per_seq: np.ndarray, tokens_per_seq: int, chars_per_seq: float) -> dict:
    """Mean and standard error of per-sequence nats in the usual units."""
    mean = float(np.mean(per_seq))
    se = float(np.std(per_seq, ddof=1) / math.sqrt(len(per_seq))) if len(per_seq) > 1 else float("nan")
    return {
        "sequences": int(len(per_seq)),
        "nats_per_token": mean / tokens_per_seq,
        "nats_per_token_se": se / tokens_per_seq,
        "bpc": mean / (chars_per_seq * math.log(2)),
        "bpc_se": se / (chars_per_seq * math.log(2)),
        "perplexity": math.exp(mean / tokens_per_seq),
    }
