"""Score network: a DiT-style bidirectional transformer conditioned on sigma_bar
(adaLN-Zero), rotary positions, scaled_dot_product_attention (no flash-attn), LayerNorm
without bias, GELU MLP. With ``causal=True`` the same network (same parameter count) is
the autoregressive baseline, conditioned on a constant sigma_bar = 0. With
``time_conditioning=False`` (RADD, Ou et al. 2024) the network ignores sigma_bar the same
way (a constant 0, the same parameter count) and its output is read as logits of the clean
data at masked positions (see graphs.log_concrete_score)."""

from __future__ import annotations

import math
from copy import deepcopy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.interfaces import ConfigError


@dataclass
class ModelConfig:
    vocab: int  # output/input states N (absorbing: data tokens + MASK)
    hidden: int = 256
    blocks: int = 4
    heads: int = 4
    cond: int = 128
    max_len: int = 256
    dropout: float = 0.0
    causal: bool = False
    mlp_ratio: int = 4
    time_conditioning: bool = True  # False: RADD, the output does not depend on sigma_bar

    def __post_init__(self):
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ConfigError("hidden / heads must be an even integer")

    def to_dict(self) -> dict:
        return asdict(self)


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias, computed in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.layer_norm(x.float(), (x.shape[-1],), self.weight.float()).to(x.dtype)


class SigmaEmbedder(nn.Module):
    """Sinusoidal embedding of sigma_bar followed by an MLP."""

    def __init__(self, cond: int, freq: int = 256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, cond), nn.SiLU(), nn.Linear(cond, cond))

    def forward(self, sigma):
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def rotary(x, base: float = 10000.0, halves: bool = False):
    """Rotary position embedding on (B, H, L, D); cos/sin built from the actual length
    so an exported graph keeps a dynamic sequence axis. Dimension pairs rotate together:
    (2i, 2i + 1), or with ``halves`` (i, i + D/2), the same rotation once the dimensions are
    reordered evens-then-odds (see ScoreNet.with_rotary_halves); contiguous halves are cheaper
    to slice in an exported graph."""
    length, dim = x.shape[-2], x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=x.device) / dim)
    ang = torch.arange(length, dtype=torch.float32, device=x.device)[:, None] * inv[None]
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    if halves:
        x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.hidden
        self.heads, self.causal, self.dropout = cfg.heads, cfg.causal, cfg.dropout
        self.rotary_halves = False  # True only in ScoreNet.with_rotary_halves's reordered copy
        self.norm1, self.norm2 = LayerNorm(d), LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(approximate="tanh"), nn.Linear(cfg.mlp_ratio * d, d)
        )
        self.adaLN_modulation = nn.Linear(cfg.cond, 6 * d)
        nn.init.zeros_(self.adaLN_modulation.weight)  # adaLN-Zero: blocks start as identity
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x, c, rows=None):
        """``rows`` (B, M): compute the block's output only at these positions (queries, MLP), every
        position still a key and a value; returns (B, M, d) instead of (B, L, d)."""
        b, n, d = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        q, k, v = (
            self.qkv(modulate(self.norm1(x), sh1, sc1))
            .view(b, n, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        p = self.dropout if self.training else 0.0
        q, k = rotary(q, halves=self.rotary_halves), rotary(k, halves=self.rotary_halves)
        if rows is not None:
            if self.causal:
                raise ConfigError("output rows apply to the bidirectional network, not the causal baseline")
            q = q.gather(2, rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1]))
            x = x.gather(1, rows[..., None].expand(-1, -1, d))
        h = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        h = self.attn_out(h.transpose(1, 2).reshape(b, x.shape[1], d))
        x = x + g1 * F.dropout(h, p, self.training)
        h = self.mlp(modulate(self.norm2(x), sh2, sc2))
        return x + g2 * F.dropout(h, p, self.training)


class ScoreNet(nn.Module):
    """(tokens (B, L) int64, sigma_bar (B,) float[, rows (B, M) int64]) -> raw output (B, L, N) float32,
    or (B, M, N) at the positions ``rows`` names: a sampler on the absorbing graph reads the output only at
    masked positions, so the last block computes its queries, MLP and the output layer only there (the
    blocks before still run everywhere: every position is a key of the next). The graph's sigma scaling
    and the x_t entry are applied outside (graphs.finalize_log_score)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        nn.init.kaiming_uniform_(self.embed.weight, a=math.sqrt(5))
        self.sigma_map = SigmaEmbedder(cfg.cond)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.blocks))
        self.norm_final = LayerNorm(cfg.hidden)
        self.final_modulation = nn.Linear(cfg.cond, 2 * cfg.hidden)
        self.output = nn.Linear(cfg.hidden, cfg.vocab)
        for lin in (
            self.final_modulation,
            self.output,
        ):  # zero init: initial scores are exact ratios of a uniform model
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, tokens, sigma_bar, rows=None):
        if not self.cfg.time_conditioning:
            sigma_bar = torch.zeros_like(sigma_bar)  # keeps the input in an exported graph
        x = self.embed(tokens)
        c = F.silu(self.sigma_map(sigma_bar))
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, c, rows if i == last else None)
        shift, scale = self.final_modulation(c)[:, None].chunk(2, dim=2)
        return self.output(modulate(self.norm_final(x), shift, scale)).float()

    def with_rotary_halves(self) -> ScoreNet:
        """A copy computing the same function with rotary's pairs in contiguous halves (for export: the
        strided slices took 6 % of an int8 evaluation on onnxruntime, MODEL_CARD.md "A cheaper step").
        Each head's query and key dimensions are reordered evens-then-odds in the qkv weight, so pair
        (2i, 2i + 1) lands on (i, i + D/2); attention reads q and k only through their dot products,
        which the same reordering of both leaves unchanged. The values keep their order."""
        copy = deepcopy(self)
        head = self.cfg.hidden // self.cfg.heads
        evens_odds = torch.cat([torch.arange(0, head, 2), torch.arange(1, head, 2)])
        query = torch.cat([h * head + evens_odds for h in range(self.cfg.heads)])
        rows = torch.cat([query, self.cfg.hidden + query, torch.arange(2 * self.cfg.hidden, 3 * self.cfg.hidden)])
        for block in copy.blocks:
            block.qkv.weight.data = block.qkv.weight.data[rows.to(block.qkv.weight.device)].clone()
            block.rotary_halves = True
        return copy

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
