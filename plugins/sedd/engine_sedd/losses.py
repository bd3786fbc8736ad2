"""Training objectives, per sequence in nats: SEDD's denoising score entropy (an upper
bound on -log p(x0) in expectation over t, up to the omitted prior term) and the exact
autoregressive negative log-likelihood of the causal baseline."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .graphs import Graph, log_concrete_score
from .schedules import Schedule


def sample_times(batch: int, eps: float, generator=None, device="cpu", stratified: bool | int = False) -> torch.Tensor:
    """t ~ U[eps, 1] in float64. ``stratified``: the k-th t uniform in the k-th of ``batch`` equal
    slices (MDLM's low-discrepancy sampler): every t is still U[eps, 1] at random position, so the
    batch mean of the loss stays unbiased, with less variance from the spread of t. An int n
    instead: the k-th t in the (k mod n)-th of n slices (n strata for each run of n rows)."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64, device=device)
    if stratified:
        slices = batch if stratified is True else int(stratified)
        u = (torch.arange(batch, dtype=torch.float64, device=device) % slices + u) / slices
    return eps + (1 - eps) * u


def is_radd(net) -> bool:
    """Whether ``net`` (a ScoreNet, possibly DDP-wrapped) is time-independent (RADD)."""
    cfg = getattr(getattr(net, "module", net), "cfg", None)
    return cfg is not None and not getattr(cfg, "time_conditioning", True)


def log_score(net, graph: Graph, xt, sigma_bar: np.ndarray, radd: bool = False):
    """Log concrete score (float64) of the network at noise level sigma_bar (B,)."""
    sb = torch.as_tensor(sigma_bar, dtype=torch.float32, device=xt.device)
    return log_concrete_score(graph, net(xt, sb).double(), xt, sigma_bar, radd)


def sedd_loss(
    net,
    graph: Graph,
    schedule: Schedule,
    x0,
    t=None,
    generator=None,
    eps: float = 1e-3,
    radd: bool | None = None,
    stratified: bool = False,
):
    """sigma(t) * sum_i DSE_i(x_t, x0) for x_t ~ p_t|0(. | x0), t ~ U[eps, 1]: (B,) nats.
    ``radd`` (default: read from the network's config) selects the RADD parametrisation; for it
    the same expression reduces to sigma(t) / (e^sigma_bar - 1) * sum_masked -log p0(x0_i | x_t).
    Without ``t``, ``stratified`` draws the batch's t by sample_times' strata."""
    if t is None:
        t = sample_times(x0.shape[0], eps, generator, x0.device, stratified)
    sigma_bar, sigma = schedule(t.detach().cpu().numpy())
    xt = graph.sample_transition(x0, torch.as_tensor(sigma_bar, device=x0.device), generator)
    ls = log_score(net, graph, xt, sigma_bar, is_radd(net) if radd is None else radd)
    dse = graph.score_entropy(ls, torch.as_tensor(sigma_bar, device=x0.device), xt, x0)
    return torch.as_tensor(sigma, device=x0.device) * dse.sum(-1)


def ar_nll(net, x0, bos: int, vocab: int):
    """Exact -log p(x0) of the causal baseline: inputs [BOS, x_1..x_{L-1}], softmax over
    the `vocab` data tokens. (B,) nats."""
    inp = torch.cat([torch.full_like(x0[:, :1], bos), x0[:, :-1]], dim=1)
    zero = torch.zeros(x0.shape[0], dtype=torch.float32, device=x0.device)
    logits = net(inp, zero)[..., :vocab].double()
    nll = F.cross_entropy(logits.reshape(-1, vocab), x0.reshape(-1), reduction="none")
    return nll.view(x0.shape).sum(-1)
