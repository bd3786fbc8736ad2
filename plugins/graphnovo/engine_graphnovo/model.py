"""PathSearcher and SeqFiller (torch).

Graph encoder (Graphormer-like): attention logits = q.k + a per-head bias looked up from
the pair code (edge encoding x path encoding, graph.pair_codes), talking-heads mixing
before and after the softmax, GEGLU feed-forward, pre-norm. Unlike the reference, layers
do not share weights.

PathSearcher decodes a pointer over graph nodes; SeqFiller decodes residues while
cross-attending to graph nodes heavier than the current prefix plus one glycine.
Both expose ``encode`` and ``step`` (last-position log-probabilities) for export.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .export_names import node_logit_scale
from .graph import N_ION_TYPES, N_PAIR_CODES, N_PEAK_FEATURES

NEG = -1e9
GLYCINE = 57.021463721


@dataclass
class ModelConfig:
    d_model: int = 96
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    ff_mult: int = 2
    max_charge: int = 8
    max_steps: int = 64
    vocab: int = 25  # SeqFiller tokens (residue table size)
    # PathSearcher node head: a per-node "true prefix" logit, trained with its own loss on
    # every node and added to the pointer logits (False: models trained before it)
    node_head: bool = False
    # input features, recorded so a model is refused (graph.check_features) when the
    # graph code builds different ones
    ion_types: int = N_ION_TYPES
    peak_features: int = N_PEAK_FEATURES

    def to_dict(self) -> dict:
        return asdict(self)


def mass_encoding(mass: torch.Tensor, d: int) -> torch.Tensor:
    """Sinusoids of a mass in Da with wavelengths 0.001 .. 10000 Da."""
    half = d // 2
    exponent = torch.arange(half, dtype=torch.float32, device=mass.device) / max(half - 1, 1)
    wavelength = 1e-3 * (1e7**exponent)
    angle = mass.unsqueeze(-1).float() * (2 * math.pi / wavelength)
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class GEGLU(nn.Module):
    def __init__(self, d: int, mult: int):
        super().__init__()
        self.proj = nn.Linear(d, 2 * mult * d)
        self.out = nn.Linear(mult * d, d)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class Attention(nn.Module):
    """Multi-head attention with an additive bias and optional talking-heads mixing."""

    def __init__(self, d: int, heads: int, talking_heads: bool = False):
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.pre = nn.Linear(heads, heads, bias=False) if talking_heads else None
        self.post = nn.Linear(heads, heads, bias=False) if talking_heads else None
        if talking_heads:
            nn.init.eye_(self.pre.weight)
            nn.init.eye_(self.post.weight)

    def _split(self, x):
        # x's own batch: a batch-1 memory broadcasts against a batch of beams
        return x.view(x.shape[0], x.shape[1], self.h, self.dk).transpose(1, 2)

    def project(self, mem):
        """Keys and values of a memory, (2, G, H, n, dk): computed once per graph."""
        return torch.stack([self._split(self.k(mem)), self._split(self.v(mem))])

    def forward(self, x, mem, bias, rows=None):
        """bias: (B, H or 1, Tq, Tk) additive (NEG blocks). ``rows`` (B,) picks each
        query's memory from a smaller batch of graphs after projecting it."""
        q = self._split(self.q(x))
        k, v = self.project(mem)
        if rows is not None:
            k, v = k[rows], v[rows]
        return self._attend(q, k, v, bias, x.shape)

    def grouped(self, x, kv, bias):
        """Cross-attention of G*K one-position queries (K beams per graph, graph-major)
        to their graph's precomputed keys/values kv (2, G, H, n, dk); bias (G, 1, K, n).
        Beams of a graph share its keys: nothing is gathered per beam."""
        k, v = kv
        g = k.shape[0]
        q = self.q(x).view(g, -1, self.h, self.dk).transpose(1, 2)  # (G, H, K, dk)
        return self._attend(q, k, v, bias, (g, q.shape[2])).reshape(x.shape)

    def cached(self, x, past_k, past_v):
        """Self-attention of new positions x over the cached keys/values plus their own
        (the caller feeds one position at a time, so no causal mask is needed)."""
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        return self._attend(q, k, v, 0.0, x.shape), k, v

    def _attend(self, q, k, v, bias, shape):
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.dk)
        if self.pre is not None:
            logits = self.pre(logits.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        logits = logits + bias
        attn = torch.softmax(logits, dim=-1)
        if self.post is not None:
            attn = self.post(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        out = (attn @ v).transpose(1, 2).reshape(shape[0], shape[1], -1)
        return self.o(out)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.heads, talking_heads=True)
        self.ff = GEGLU(cfg.d_model, cfg.ff_mult)

    def forward(self, x, bias):
        h = self.n1(x)
        x = x + self.attn(h, h, bias)
        return x + self.ff(self.n2(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n1, self.n2, self.n3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attn = Attention(cfg.d_model, cfg.heads)
        self.cross = Attention(cfg.d_model, cfg.heads)
        self.ff = GEGLU(cfg.d_model, cfg.ff_mult)

    def forward(self, x, mem, self_bias, cross_bias, rows=None):
        h = self.n1(x)
        x = x + self.self_attn(h, h, self_bias)
        return self._rest(x, mem, cross_bias, rows)

    def _rest(self, x, mem, cross_bias, rows):
        x = x + self.cross(self.n2(x), mem, cross_bias, rows)
        return x + self.ff(self.n3(x))

    def cached(self, x, past_k, past_v, cross_bias, cross_kv):
        """x (G*K, 1, d): one new position per beam, beams grouped by graph."""
        a, k, v = self.self_attn.cached(self.n1(x), past_k, past_v)
        x = x + a
        x = x + self.cross.grouped(self.n2(x), cross_kv, cross_bias)
        return x + self.ff(self.n3(x)), k, v


def cross_cache(layers, memory):
    """(L, 2, G, H, n, dk): every decoder layer's cross-attention keys/values."""
    return torch.stack([layer.cross.project(memory) for layer in layers])


def run_cached(layers, x, past, cross_bias, cross_kv):
    """Decoder layers over one new position per beam (x (G*K, 1, d), K beams per graph)
    with a (L, 2, G*K, H, T, dk) self-attention cache and per-graph cross keys/values
    (L, 2, G, H, n, dk); returns the output and the extended self-attention cache."""
    present = []
    for i, layer in enumerate(layers):
        x, k, v = layer.cached(x, past[i, 0], past[i, 1], cross_bias, cross_kv[i])
        present.append(torch.stack([k, v]))
    return x, torch.stack(present)


class GraphEncoder(nn.Module):
    """Node features pooled PointNet-style over the 18 ion types, plus mass and charge
    encodings, then graph-transformer layers with pair-code biases."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.ion_type = nn.Parameter(torch.randn(cfg.ion_types, d) * 0.02)
        # shared per-ion layer, max-pool over the 18 ion types, then a dense layer: the
        # dense layer after pooling costs 18x less than before it
        self.point = nn.Linear(cfg.peak_features, d)
        self.point_out = nn.Linear(d, d)
        self.mass_proj = nn.Linear(2 * d, d)
        self.charge = nn.Embedding(cfg.max_charge + 1, d)
        self.pair_bias = nn.Embedding(N_PAIR_CODES, cfg.heads)
        nn.init.zeros_(self.pair_bias.weight)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, ions, masses, precursor, charge, pair_code, node_mask):
        d = self.cfg.d_model
        pooled = self.point_out(F.gelu(self.point(ions) + self.ion_type).amax(dim=2))  # (B, n, d)
        menc = torch.cat([mass_encoding(masses, d), mass_encoding(precursor[:, None] - masses, d)], -1)
        x = pooled + self.mass_proj(menc) + self.charge(charge.clamp(0, self.cfg.max_charge))[:, None]
        key_block = (~node_mask)[:, None, None, :].float() * NEG
        bias = self.pair_bias(pair_code).permute(0, 3, 1, 2) + key_block
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x)


def _causal(t: int, device) -> torch.Tensor:
    return torch.triu(torch.full((t, t), NEG, device=device), diagonal=1)[None, None]


class PathSearcher(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoder = GraphEncoder(cfg)
        self.step_emb = nn.Embedding(cfg.max_steps, d)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(d)
        self.pq, self.pk = nn.Linear(d, d), nn.Linear(d, d)
        self.node_score = nn.Linear(d, 1) if cfg.node_head else None

    def node_logits(self, memory):
        """(B, n) logit that each node is a true prefix mass (node head models only)."""
        return self.node_score(memory)[..., 0]

    def pointer_keys(self, memory):
        """Pointer keys (B, n, d); with a node head one more column carries each node's
        logit, so that the query's constant last column adds it to every pointer logit."""
        keys = self.pk(memory)
        if self.node_score is None:
            return keys
        return torch.cat([keys, self.node_logits(memory)[..., None] * node_logit_scale(self.cfg.d_model)], -1)

    def pointer_logits(self, x, keys):
        q = self.pq(self.norm(x))
        if self.node_score is not None:
            q = torch.cat([q, torch.ones_like(q[..., :1])], -1)
        return q @ keys.transpose(-1, -2) / math.sqrt(self.cfg.d_model)

    def encode(self, ions, masses, precursor, charge, pair_code, node_mask):
        return self.encoder(ions, masses, precursor, charge, pair_code, node_mask)

    def decode(self, memory, node_mask, path, next_mask, rows=None):
        """path (B, T) node ids (starts with the source); next_mask (B, T, n) allowed
        next nodes per step; rows (B,) graph of each path (default: its own row).
        Returns log-probabilities (B, T, n)."""
        b, t = path.shape
        if rows is None:
            rows = torch.arange(b, device=path.device)
        x = memory[rows[:, None], path]
        x = x + self.step_emb(torch.arange(t, device=path.device).clamp(max=self.cfg.max_steps - 1))[None]
        node_mask = node_mask[rows]
        cross = (~node_mask)[:, None, None, :].float() * NEG
        causal = _causal(t, path.device)
        for layer in self.layers:
            x = layer(x, memory, causal, cross, rows)
        logits = self.pointer_logits(x, self.pointer_keys(memory)[rows])
        logits = logits.masked_fill(~(next_mask & node_mask[:, None, :]), NEG)
        return torch.log_softmax(logits, dim=-1)

    def forward(self, ions, masses, precursor, charge, pair_code, node_mask, path, next_mask, nodes=False):
        """Training forward (teacher forcing): log-probabilities (B, T, n); with ``nodes``
        also the node head's logits (B, n) (None without a node head)."""
        mem = self.encode(ions, masses, precursor, charge, pair_code, node_mask)
        logp = self.decode(mem, node_mask, path, next_mask)
        if not nodes:
            return logp
        return logp, (self.node_logits(mem) if self.node_score is not None else None)

    def step(self, memory, node_mask, path, next_mask, rows):
        """Last-step log-probabilities (B, n); next_mask (B, n); rows (B,) graph ids."""
        t = path.shape[1]
        nm = next_mask[:, None, :].expand(-1, t, -1)
        return self.decode(memory, node_mask, path, nm, rows)[:, -1]

    def encode_for_steps(self, ions, masses, precursor, charge, pair_code, node_mask):
        """Per-graph state for cached steps: (memory, pointer keys, cross keys/values)."""
        memory = self.encode(ions, masses, precursor, charge, pair_code, node_mask)
        return memory, self.pointer_keys(memory), cross_cache(self.layers, memory)

    def step_cached(self, memory, keys, cross_kv, node_mask, last, position, next_mask, past):
        """One decoding step for K beams of each of G graphs: last, position (G, K),
        next_mask (G, K, n), past (L, 2, G*K, H, T, dk) with beams graph-major.
        Returns (log-probabilities (G, K, n), present)."""
        g, k = last.shape
        d = memory.shape[-1]
        x = torch.gather(memory, 1, last[..., None].expand(-1, -1, d))
        x = x + self.step_emb(position.clamp(max=self.cfg.max_steps - 1))
        cross = (~node_mask)[:, None, None, :].float() * NEG
        x, present = run_cached(self.layers, x.reshape(g * k, 1, d), past, cross, cross_kv)
        logits = self.pointer_logits(x.reshape(g, k, d), keys)
        logits = logits.masked_fill(~(next_mask & node_mask[:, None, :]), NEG)
        return torch.log_softmax(logits, dim=-1), present


class SeqFiller(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoder = GraphEncoder(cfg)
        self.tok = nn.Embedding(cfg.vocab + 1, d)  # last id = BOS
        self.mass_proj = nn.Linear(3 * d, d)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.vocab)

    @property
    def bos(self) -> int:
        return self.cfg.vocab

    def encode(self, ions, masses, precursor, charge, pair_code, node_mask):
        return self.encoder(ions, masses, precursor, charge, pair_code, node_mask)

    def decode(self, memory, node_mask, node_masses, tokens, prefix, gap, precursor, rows=None):
        """tokens (B, T) input ids (BOS first), prefix (B, T) residue mass before each
        position, gap (B, T) mass left to the next PathSearcher node (the gap being
        filled). Cross-attention sees nodes heavier than prefix + one glycine (and the
        sink); rows (B,) picks each sequence's graph. Returns log-probabilities (B, T, vocab)."""
        b, t = tokens.shape
        if rows is None:
            rows = torch.arange(b, device=tokens.device)
        x, cross = self._inputs(node_mask, node_masses, tokens, prefix, gap, precursor, rows)
        causal = _causal(t, tokens.device)
        for layer in self.layers:
            x = layer(x, memory, causal, cross, rows)
        return torch.log_softmax(self.out(self.norm(x)), dim=-1)

    def forward(self, ions, masses, precursor, charge, pair_code, node_mask, tokens, prefix, gap):
        """Training forward (teacher forcing): log-probabilities (B, T, vocab)."""
        mem = self.encode(ions, masses, precursor, charge, pair_code, node_mask)
        return self.decode(mem, node_mask, masses, tokens, prefix, gap, precursor)

    def _inputs(self, node_mask, node_masses, tokens, prefix, gap, precursor, rows):
        """Token + mass embeddings (B, T, d) and the cross-attention mass mask."""
        d = self.cfg.d_model
        node_mask, node_masses, precursor = node_mask[rows], node_masses[rows], precursor[rows]
        menc = torch.cat(
            [mass_encoding(prefix, d), mass_encoding(precursor[:, None] - prefix, d), mass_encoding(gap, d)], -1
        )
        x = self.tok(tokens) + self.mass_proj(menc)
        sink = node_masses >= (precursor[:, None] - 0.05)
        ahead = node_masses[:, None, :] > (prefix[..., None] + GLYCINE - 0.05)
        visible = (ahead | sink[:, None, :]) & node_mask[:, None, :]
        return x, (~visible)[:, None].float() * NEG

    def step(self, memory, node_mask, node_masses, tokens, prefix, gap, precursor, rows):
        return self.decode(memory, node_mask, node_masses, tokens, prefix, gap, precursor, rows)[:, -1]

    def encode_for_steps(self, ions, masses, precursor, charge, pair_code, node_mask):
        """Per-graph state for cached steps: the cross-attention keys/values."""
        return (cross_cache(self.layers, self.encode(ions, masses, precursor, charge, pair_code, node_mask)),)

    def step_cached(self, cross_kv, node_mask, node_masses, token, prefix, gap, precursor, past):
        """One step for K beams of each of G graphs: token, prefix, gap (G, K) describe
        each beam's new position; past (L, 2, G*K, H, T, dk), beams graph-major.
        Returns (log-probabilities (G, K, vocab), present)."""
        g, k = token.shape
        rows = torch.arange(g, device=token.device)
        # the K beams of a graph enter _inputs like K positions of one sequence
        x, cross = self._inputs(node_mask, node_masses, token, prefix, gap, precursor, rows)
        x, present = run_cached(self.layers, x.reshape(g * k, 1, -1), past, cross, cross_kv)
        return torch.log_softmax(self.out(self.norm(x)), dim=-1).reshape(g, k, -1), present


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class TorchBackend:
    """numpy in/out wrapper so the shared beam searches drive the torch models."""

    def __init__(self, ps: PathSearcher, sf: SeqFiller, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.ps, self.sf = ps.eval().to(self.device), sf.eval().to(self.device)

    def _t(self, *arrays):
        return [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]

    @torch.no_grad()
    def _encode(self, model, f):
        args = self._t(f["ions"], f["masses"], f["precursor"], f["charge"], f["pair_code"], f["node_mask"])
        return tuple(t.cpu().numpy() for t in model.encode_for_steps(*args))

    def ps_encode(self, feats):
        return self._encode(self.ps, feats)

    def sf_encode(self, feats):
        return self._encode(self.sf, feats)

    @torch.no_grad()
    def ps_step(self, *arrays):
        """(*state, node_mask, last, position, next_mask, rows, past) -> (logp, present)."""
        logp, present = self.ps.step_cached(*self._t(*arrays))
        return logp.cpu().numpy(), present.cpu().numpy()

    @torch.no_grad()
    def sf_step(self, *arrays):
        """(*state, node_mask, node_masses, token, prefix, gap, precursor, rows, past)."""
        logp, present = self.sf.step_cached(*self._t(*arrays))
        return logp.cpu().numpy(), present.cpu().numpy()
