"""A one-layer autoregressive draft over the base's features (EAGLE, Li et al. 2024; Hydra++'s
prefix attention, Ankner et al. 2024): where a Hydra head sees only the last hidden state h_t and
the tokens on its path, this draft runs one decoder layer with causal attention over the
sequence of (feature, next token) pairs, and predicts the next feature, whose projection by the
base's (frozen) LM head proposes the next token. Drafting k tokens runs the layer k times, each
time on its own previous output.

Training uses "streams" (training-time test, as in HASS and EAGLE-3): stream 0 reads the base's
true features; stream s reads stream s-1's predicted feature at each position and attends to
the true features of its chain's context plus the s earlier draft inputs of the same chain, so
one pass trains and measures every draft step at every chain start.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def rotate(x, positions, theta: float):
    """Rotary position embedding of x [B, h, L, hd] at integer positions [L] or [B, L]."""
    hd = x.shape[-1]
    freq = theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = positions.float()[..., None] * freq
    if ang.ndim == 3:  # per-row positions: broadcast over the heads
        ang = ang[:, None]
    cos, sin = ang.cos(), ang.sin()
    cos, sin = torch.cat([cos, cos], -1).to(x.dtype), torch.cat([sin, sin], -1).to(x.dtype)
    half = torch.cat([-x[..., hd // 2 :], x[..., : hd // 2]], -1)
    return x * cos + half * sin


class DraftLayer(nn.Module):
    """fc([feature; embedding(token)]) -> one pre-norm decoder layer (attention + SwiGLU)."""

    def __init__(self, d: int, n_heads: int, mlp: int, theta: float = 10000.0):
        super().__init__()
        self.d, self.h, self.theta = d, n_heads, theta
        self.fc = nn.Linear(2 * d, d, bias=False)
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.up = nn.Linear(d, 2 * mlp, bias=False)
        self.down = nn.Linear(mlp, d, bias=False)
        for w in (self.o, self.down):
            nn.init.normal_(w.weight, std=0.02 / math.sqrt(2))

    def pass_through(self):
        """Start as the identity on the feature (the output is the input feature, so the base's
        LM head proposes what the base itself chose there), as Medusa and Hydra heads start:
        the layer then learns a correction instead of rebuilding the feature from scratch."""
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[:, : self.d].copy_(torch.eye(self.d))
            self.o.weight.zero_()
            self.down.weight.zero_()

    def heads(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.h, -1).transpose(1, 2)

    def project_in(self, feature, token_embedding):
        return self.fc(torch.cat([feature, token_embedding], -1))

    def qkv_of(self, x, positions):
        q, k, v = self.qkv(self.norm1(x)).split(self.d, -1)
        return rotate(self.heads(q), positions, self.theta), rotate(self.heads(k), positions, self.theta), self.heads(v)

    def finish(self, x, attn):
        """Residual + output projection of the attention [B, h, L, hd], then the MLP."""
        b, _, n, _ = attn.shape
        x = x + self.o(attn.transpose(1, 2).reshape(b, n, self.d))
        gate, up = self.up(self.norm2(x)).chunk(2, -1)
        return x + self.down(F.silu(gate) * up)


def stream_forward(layer: DraftLayer, features, embeds, valid, streams: int):
    """Outputs [streams, B, L, d]: stream s at position p is draft step s+1 of the chain whose
    true context ends at p - s, i.e. the predicted feature of position p + 1.

    features, embeds [B, L, d]; valid [B, L] bool (padding False)."""
    b, n, _ = features.shape
    pos = torch.arange(n)
    scale = 1.0 / math.sqrt(layer.d // layer.h)
    outs, keys, values = [], [], []
    inp = features
    for s in range(streams):
        x = layer.project_in(inp, embeds)
        q, k, v = layer.qkv_of(x, pos)
        keys.append(k)
        values.append(v)
        # true context: stream-0 keys at positions <= p - s
        scores = [(q @ keys[0].transpose(-1, -2)) * scale]
        causal = pos[None, :] <= (pos[:, None] - s)
        pad = valid[:, None, None, :]
        scores[0] = scores[0].masked_fill(~(causal[None, None] & pad), float("-inf"))
        # the chain's own draft inputs: stream r's key at position p - s + r, r = 1..s
        diag = [(q * _shift(keys[r], s - r)).sum(-1, keepdim=True) * scale for r in range(1, s + 1)]
        w = torch.cat(scores + diag, -1).float().softmax(-1).nan_to_num().to(q.dtype)
        attn = w[..., :n] @ values[0]
        for i, r in enumerate(range(1, s + 1)):
            attn = attn + w[..., n + i : n + i + 1] * _shift(values[r], s - r)
        out = layer.finish(x, attn)
        outs.append(out)
        inp = _shift(out, 1)  # stream s+1 at p reads stream s's prediction made at p - 1
    return torch.stack(outs)


def _shift(x, by: int):
    """x [..., L, hd] moved `by` positions later along L (zeros in front)."""
    if by == 0:
        return x
    return F.pad(x[..., : x.shape[-2] - by, :], (0, 0, by, 0))


def layer_shape(config) -> dict:
    """The draft layer's shape for a base (its width, heads, MLP width and rotary base)."""
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    return {"n_heads": config.num_attention_heads, "mlp": config.intermediate_size, "theta": float(theta)}


class DraftHeads(nn.Module):
    """The draft layer as a heads kind ("draft"): proposes with the base's frozen LM head on a
    draft vocabulary, reads the base's input embeddings (neither is saved). `num_heads` is the
    deepest draft step it was trained for (its streams); a tree may not go deeper."""

    kind = "draft"
    num_layers = 1
    share_lm_head = True

    def __init__(
        self, lm_head, num_heads: int = 4, vocab_subset=None, *, embedding, n_heads: int, mlp: int, theta: float
    ):
        super().__init__()
        d = lm_head.weight.shape[1]
        self.num_heads = num_heads
        self.layer = DraftLayer(d, n_heads, mlp, theta)
        subset = None if vocab_subset is None else torch.as_tensor(vocab_subset, dtype=torch.int64)
        self.register_buffer("vocab_subset", subset)
        object.__setattr__(self, "_lm_head", lm_head)
        object.__setattr__(self, "_embedding", embedding)
        self.register_buffer("draft_weight", self._rows(), persistent=False)

    def _rows(self):
        w = self._lm_head.weight.detach()
        return w if self.vocab_subset is None else w[self.vocab_subset]

    def refresh_draft_weight(self):
        self.draft_weight = self._rows().to(self.draft_weight.dtype)

    @property
    def draft_vocab(self) -> int:
        return 0 if self.vocab_subset is None else len(self.vocab_subset)

    @property
    def shape(self) -> dict:
        """What the config records to rebuild the layer."""
        return {"n_heads": self.layer.h, "mlp": self.layer.down.in_features, "theta": self.layer.theta}

    @property
    def kv_shape(self) -> tuple[int, int]:
        """(heads, head width) of the draft's key/value cache."""
        return self.layer.h, self.layer.d // self.layer.h

    def token_ids(self, index):
        return index if self.vocab_subset is None else self.vocab_subset[index]

    def step(self, features, tokens, positions, past_k, past_v, allowed):
        """One incremental pass: q new (feature, token) pairs [B, q] at `positions` [B, q] over a
        cache past_k/past_v [B, h, P, hd]; allowed [B, q, P + q] says which keys each query sees.
        -> predicted next features [B, q, d], their draft logits [B, q, V'], new keys and values."""
        x = self.layer.project_in(features, self._embedding(tokens).to(features.dtype))
        q, k, v = self.layer.qkv_of(x, positions)
        keys, values = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed[:, None])
        out = self.layer.finish(x, attn)
        return out, F.linear(out, self.draft_weight), k, v
