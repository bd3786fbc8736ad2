"""Training of PathSearcher and SeqFiller on simulated spectra plus real MassIVE-KB
spectra (a fixed held-out part is never trained on). Single process or torchrun DDP
(gloo); checkpoints and resume; fp16 safetensors weights at the end."""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from engine.checkpoints import load_checkpoint, save_checkpoint
from engine.datasets import shared_data
from engine.io.peptides import PeptideError, ResidueTable, parse_peptide, residue_masses
from engine.runtime import use_torch_threads

from .data import graph_arrays, pad_batch, pad_sequences, path_label, token_label
from .graph import GraphBuilder, GraphConfig, check_features, label_nodes
from .inference import top_nodes
from .model import ModelConfig, PathSearcher, SeqFiller
from .preprocess import PreprocessConfig, preprocess
from .simulator import SimConfig, modify, read_fasta, sample_charge, simulate, tryptic_peptides

DATA = shared_data()
PROTEOMES = ("ecoli_UP000000625.fasta.gz", "yeast_UP000002311.fasta.gz")
MASSIVEKB = DATA / "spectra" / "massivekb" / "massivekb_selected_500.mgf"
SIM = SimConfig()


def is_heldout(title: str, fraction: float = 0.3) -> bool:
    """Fixed split by a hash of the spectrum title: ~30% of MassIVE-KB is held out."""
    return (zlib.crc32(title.encode()) % 1000) < fraction * 1000


# Upper bounds (per mille of a second, independent hash of the title) of dev folds 0, 1 and 2 of
# the training split. Fold 0 (~30 %) is "the" dev split; folds 1 and 2 halve the rest, so one model
# per fold, trained without it, scores every training spectrum once as unseen (cross-validation).
DEV_FOLDS = (300, 650, 1000)


def dev_fold(title: str) -> int | None:
    """The dev fold (0, 1 or 2) of a MassIVE-KB training spectrum; None for held-out ones."""
    if is_heldout(title):
        return None
    h = zlib.crc32(b"dev:" + title.encode()) % 1000
    return next(i for i, hi in enumerate(DEV_FOLDS) if h < hi)


def is_dev(title: str, fold: int = 0) -> bool:
    """In dev fold ``fold``: a model trained with --hold-dev --dev-fold FOLD never sees it, so
    search settings can be chosen on real spectra it has not memorised without touching the
    held-out split."""
    return dev_fold(title) == fold


@dataclass
class TrainConfig:
    out: str = "runs/graphnovo"
    minutes: float = 60.0
    max_steps: int = 100000
    batch_size: int = 16
    lr: float = 5e-4
    warmup: int = 200
    real_fraction: float = 0.25  # share of each batch drawn from real training spectra
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 50
    max_peptides: int = 200000
    threads: int | None = None  # None: $ENGINE_THREADS, else torch's default
    use_real: bool = True  # mix in MassIVE-KB training spectra
    node_weight: float = 1.0  # weight of the node head's loss (models with a node head)
    # Node-pruning augmentation: this share of the simulated graphs is cut to a random budget of
    # PRUNE_BUDGET inner nodes, kept by a noisy true-prefix score (as inference.top_nodes keeps
    # the node head's best), so the model also learns the pruned graphs --prune-nodes searches.
    prune_fraction: float = 0.0
    init: str | None = None  # start from these weights (fine-tuning); their model config is used
    dev_fold: int | None = None  # keep this real dev fold (is_dev) out of training


PRUNE_BUDGET = (16, 64)  # inner nodes kept by the pruning augmentation (inclusive range)
# Noise of the augmentation's node score (true prefix = 1, other = 0, plus a normal draw): with
# sd 0.5 true nodes outrank others with probability ~0.92, the node head's ROC AUC on real graphs.
PRUNE_NOISE = 0.5


def pruned_for_training(builder: GraphBuilder, graph, masses: np.ndarray, rng: np.random.Generator):
    """The graph cut to a random node budget, the kept nodes chosen by a noisy oracle score."""
    score = true_nodes(graph, masses) + rng.normal(0.0, PRUNE_NOISE, graph.n)
    return builder.subgraph(graph, top_nodes(score, int(rng.integers(PRUNE_BUDGET[0], PRUNE_BUDGET[1] + 1))))


def make_example(
    builder: GraphBuilder, prep: PreprocessConfig, bos: int, tokens, mz, inten, pmz, charge, prune_rng=None
) -> dict | None:
    """One labelled spectrum -> graph features + PathSearcher and SeqFiller labels
    (``prune_rng``: the graph pruned first, ``pruned_for_training``)."""
    mz2, it2 = preprocess(mz, inten, pmz, prep)
    if mz2.size == 0:
        return None
    graph = builder.build(mz2, it2, pmz, charge)
    masses = residue_masses(tokens)
    if prune_rng is not None:
        graph = pruned_for_training(builder, graph, masses, prune_rng)
    path, nmask, target = path_label(graph, masses)
    bounds = np.append(graph.masses[path[1:]], graph.precursor_mass)
    try:
        sf_in, sf_prefix, sf_gap, sf_tgt = token_label(builder.table, tokens, bos, bounds)
    except PeptideError:
        return None
    return {
        "feats": graph_arrays(graph),
        "path": path,
        "nmask": nmask,
        "node_true": true_nodes(graph, masses),
        "target": target,
        "sf_in": sf_in,
        "sf_prefix": sf_prefix,
        "sf_gap": sf_gap,
        "sf_tgt": sf_tgt,
    }


class Examples:
    """Training examples: simulated on the fly, real ones precomputed."""

    def __init__(
        self,
        builder: GraphBuilder,
        prep: PreprocessConfig,
        rng: np.random.Generator,
        bos: int,
        sim: SimConfig = SIM,
        max_peptides: int = 200000,
        real: bool = True,
        prune_fraction: float = 0.0,
        dev_fold: int | None = None,
    ):
        self.builder, self.prep, self.rng, self.bos, self.sim = builder, prep, rng, bos, sim
        self.prune_fraction = prune_fraction
        peps: list[str] = []
        for name in PROTEOMES:
            peps += tryptic_peptides(read_fasta(DATA / "proteomes" / name))
        self.peptides = [peps[i] for i in rng.permutation(len(peps))[:max_peptides]]
        self.dev_fold = dev_fold
        self.real = self._real() if real else []

    def example(self, tokens, mz, inten, pmz, charge, prune: bool = False) -> dict | None:
        prune_rng = self.rng if prune else None
        return make_example(self.builder, self.prep, self.bos, tokens, mz, inten, pmz, charge, prune_rng)

    def simulated(self) -> dict:
        while True:
            pep = self.peptides[self.rng.integers(len(self.peptides))]
            tokens = modify(pep, self.rng, self.sim)
            z = sample_charge(len(pep), self.rng)
            mz, inten, pmz, _ = simulate(tokens, z, self.rng, self.sim)
            # no draw when the augmentation is off: earlier runs' data streams stay as they were
            prune = self.prune_fraction > 0 and self.rng.random() < self.prune_fraction
            ex = self.example(tokens, mz, inten, pmz, z, prune)
            if ex is not None:
                return ex

    def _real(self) -> list[dict]:
        from engine.io.spectra import ReaderConfig, read_spectra

        out = []
        if not MASSIVEKB.is_file():
            return out
        for s in read_spectra([MASSIVEKB], config=ReaderConfig(require_label=True)):
            fold = dev_fold(s.title or s.ref)
            if fold is None or fold == self.dev_fold:  # held out, or the dev fold held back
                continue
            ex = self.example(parse_peptide(s.label), s.mz, s.intensity, s.precursor_mz, s.charge)
            if ex is not None:
                out.append(ex)
        return out

    def batch(self, size: int, real_fraction: float) -> list[dict]:
        n_real = int(round(size * real_fraction)) if self.real else 0
        real = [self.real[i] for i in self.rng.integers(len(self.real), size=n_real)] if n_real else []
        return real + [self.simulated() for _ in range(size - n_real)]


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    feats = pad_batch([e["feats"] for e in examples])
    n = feats["masses"].shape[1]
    path, valid = pad_sequences([e["path"] for e in examples])

    def pad_n(a):
        return np.pad(a, [(0, 0), (0, n - a.shape[1])])

    nmask, _ = pad_sequences([pad_n(e["nmask"]) for e in examples], value=False)
    node_true, _ = pad_sequences([e["node_true"] for e in examples], value=False)
    target, _ = pad_sequences([pad_n(e["target"]) for e in examples], value=0.0)
    sf_in, _ = pad_sequences([e["sf_in"] for e in examples])
    sf_prefix, _ = pad_sequences([e["sf_prefix"] for e in examples], value=0.0)
    sf_gap, _ = pad_sequences([e["sf_gap"] for e in examples], value=0.0)
    sf_tgt, _ = pad_sequences([e["sf_tgt"] for e in examples], value=-100)
    out = {k: torch.from_numpy(np.asarray(v)) for k, v in feats.items()}
    out.update(
        path=torch.from_numpy(path),
        valid=torch.from_numpy(valid),
        nmask=torch.from_numpy(nmask),
        node_true=torch.from_numpy(node_true),
        target=torch.from_numpy(target),
        sf_in=torch.from_numpy(sf_in),
        sf_prefix=torch.from_numpy(sf_prefix),
        sf_gap=torch.from_numpy(sf_gap),
        sf_tgt=torch.from_numpy(sf_tgt),
    )
    return out


def encode_args(b: dict) -> tuple:
    return b["ions"], b["masses"], b["precursor"], b["charge"], b["pair_code"], b["node_mask"]


def path_loss(ps, b: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """KL(soft label || pointer distribution), averaged over label steps; and the node
    head's binary cross-entropy over the graph's inner nodes (None without a node head)."""
    nmask = b["nmask"] | ~b["valid"][..., None]  # padded steps: any node (ignored below)
    logp, node_logit = ps(*encode_args(b), b["path"], nmask, nodes=True)
    t = b["target"]
    kl = (t * (torch.log(t.clamp_min(1e-12)) - logp)).sum(-1)
    path_kl = (kl * b["valid"]).sum() / b["valid"].sum()
    if node_logit is None:
        return path_kl, None
    inner = b["node_mask"].clone()
    inner[:, 0] = False  # the source, and the sink (each graph's last real node), are given
    inner[torch.arange(inner.shape[0]), b["node_mask"].sum(1) - 1] = False
    bce = F.binary_cross_entropy_with_logits(node_logit, b["node_true"].float(), reduction="none")
    return path_kl, (bce * inner).sum() / inner.sum().clamp_min(1)


def true_nodes(graph, residue_masses: np.ndarray) -> np.ndarray:
    """(n,) bool: the nodes within the node window of a true prefix mass (the node head's label)."""
    out = np.zeros(graph.n, dtype=bool)
    for hits in label_nodes(graph, residue_masses)[:-1]:  # the last entry is the sink's
        out[hits] = True
    out[-1] = False
    return out


def fill_loss(sf, b: dict) -> torch.Tensor:
    logp = sf(*encode_args(b), b["sf_in"], b["sf_prefix"], b["sf_gap"])
    return F.nll_loss(logp.reshape(-1, logp.shape[-1]), b["sf_tgt"].reshape(-1), ignore_index=-100)


def learning_rate(cfg: TrainConfig, step: int, seconds: float) -> float:
    """Linear warm-up, then cosine to 10 % along whichever budget runs out first: the wall
    clock (``minutes``) or the step cap (``max_steps``), so a run given a step budget on a
    slower machine ends its schedule with its steps, as one given minutes does with its time."""
    done = max(seconds / (cfg.minutes * 60), step / cfg.max_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, done))) * 0.9 + 0.1
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup) * cosine


# ---------------------------------------------------------------- weights


def save_weights(out_dir: Path, ps: PathSearcher, sf: SeqFiller, meta: dict) -> None:
    """fp16 safetensors + config.json, written to a temp dir then renamed (atomic)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, model in (("pathsearcher", ps), ("seqfiller", sf)):
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / f"{name}.safetensors"))
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + ".old")
        out_dir.rename(old)
        tmp.rename(out_dir)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(out_dir)


def load_weights(weights_dir: Path):
    """-> (PathSearcher, SeqFiller, meta) in fp32 eval mode."""
    weights_dir = Path(weights_dir)
    meta = json.loads((weights_dir / "config.json").read_text())
    check_features(meta["model"], f"model at {weights_dir}")
    cfg = ModelConfig(**meta["model"])
    ps, sf = PathSearcher(cfg), SeqFiller(cfg)
    for name, model in (("pathsearcher", ps), ("seqfiller", sf)):
        state = {k: v.float() for k, v in load_file(str(weights_dir / f"{name}.safetensors")).items()}
        model.load_state_dict(state)
        model.eval()
    return ps, sf, meta


# ---------------------------------------------------------------- loop


def _dist_setup() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank() if world > 1 else 0), world


def train(
    cfg: TrainConfig, model_cfg: ModelConfig | None = None, resume: bool = False, progress=None, log=print
) -> dict:
    use_torch_threads(cfg.threads)
    rank, world = _dist_setup()
    table, gcfg, prep = ResidueTable(), GraphConfig(), PreprocessConfig()
    model_cfg = model_cfg or ModelConfig(vocab=len(table.tokens))
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    ps, sf = PathSearcher(model_cfg), SeqFiller(model_cfg)
    init_meta = None
    if cfg.init:
        ps, sf, init_meta = load_weights(Path(cfg.init))
        model_cfg = ps.cfg
        ps, sf = ps.train(), sf.train()  # load_weights gives fp32 models in eval mode
    rng = np.random.default_rng(cfg.seed + 1000 * rank)
    builder = GraphBuilder(table, gcfg)
    examples = Examples(
        builder,
        prep,
        rng,
        bos=model_cfg.vocab,
        max_peptides=cfg.max_peptides,
        real=cfg.use_real,
        prune_fraction=cfg.prune_fraction,
        dev_fold=cfg.dev_fold,
    )
    params = list(ps.parameters()) + list(sf.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    out = Path(cfg.out)
    ckpt = out / "checkpoint.pt"
    step, seconds = 0, 0.0
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
        ps.load_state_dict(state["ps"])
        sf.load_state_dict(state["sf"])
        opt.load_state_dict(state["opt"])
        step, seconds = state["step"], state["seconds"]
        rng.bit_generator.state = state["rng"][rank] if rank < len(state["rng"]) else rng.bit_generator.state
        log(f"resumed at step {step}")
    tps, tsf = ps, sf
    if world > 1:
        tps = torch.nn.parallel.DistributedDataParallel(ps)
        tsf = torch.nn.parallel.DistributedDataParallel(sf)
    start = time.time() - seconds
    history = []
    bar = progress(total=cfg.max_steps, desc="train graphnovo") if progress and rank == 0 else None
    while step < cfg.max_steps and (time.time() - start) < cfg.minutes * 60:
        lr = learning_rate(cfg, step, time.time() - start)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = collate(examples.batch(cfg.batch_size, cfg.real_fraction))
        (lp, ln), lf = path_loss(tps, batch), fill_loss(tsf, batch)
        opt.zero_grad()
        (lp + lf + (cfg.node_weight * ln if ln is not None else 0.0)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        history.append((lp.item(), lf.item(), ln.item() if ln is not None else float("nan")))
        if bar is not None:
            bar.update(1)
        if rank == 0 and step % cfg.log_every == 0:
            a = np.mean(history[-cfg.log_every :], axis=0)
            node = f" node_bce {a[2]:.4f}" if model_cfg.node_head else ""
            log(f"step {step} path_kl {a[0]:.4f} fill_ce {a[1]:.4f}{node} lr {lr:.2e} {time.time() - start:.0f}s")
        if rank == 0 and step % cfg.checkpoint_every == 0:
            _checkpoint(ckpt, ps, sf, opt, step, time.time() - start, rng)
    seconds = time.time() - start
    if rank == 0:
        _checkpoint(ckpt, ps, sf, opt, step, seconds, rng)
    last = np.mean(history[-cfg.log_every :], axis=0) if history else (float("nan"),) * 3
    meta = {
        "model": model_cfg.to_dict(),
        "residues": list(table.tokens),
        "graph": asdict(gcfg),
        "preprocess": asdict(prep),
        "training": {
            "steps": step,
            "seconds": round(seconds, 1),
            "batch_size": cfg.batch_size,
            "world_size": world,
            "lr": cfg.lr,
            "real_fraction": cfg.real_fraction,
            "real_train_spectra": len(examples.real),
            "final_path_kl": float(last[0]),
            "final_fill_ce": float(last[1]),
            **({"node_weight": cfg.node_weight, "final_node_bce": float(last[2])} if model_cfg.node_head else {}),
            "seed": cfg.seed,
            **({"prune_fraction": cfg.prune_fraction} if cfg.prune_fraction else {}),
            **({"real_dev_held_out": True, "real_dev_fold": cfg.dev_fold} if cfg.dev_fold is not None else {}),
            **({"init": cfg.init, "init_training": init_meta["training"]} if init_meta else {}),
        },
    }
    if rank == 0:
        save_weights(out / "weights", ps, sf, meta)
    if world > 1:  # replicas must agree after synchronised updates
        checksum = sum(float(p.double().sum()) for p in params)
        print(f"rank {rank} parameter checksum {checksum:.10e}", flush=True)
        dist.barrier()
        dist.destroy_process_group()
    return meta


def _checkpoint(path: Path, ps, sf, opt, step: int, seconds: float, rng) -> None:
    state = {
        "ps": ps.state_dict(),
        "sf": sf.state_dict(),
        "opt": opt.state_dict(),
        "step": step,
        "seconds": seconds,
        "rng": [rng.bit_generator.state],
    }
    save_checkpoint(state, path)
