"""`engine train sedd`: AdamW with linear warmup and cosine decay, gradient clipping,
EMA weights, periodic validation bound and checkpoints, resume, single process or
torchrun DDP (gloo on CPU). `--objective ar` trains the causal baseline of the same
size with the same data, budget and optimiser."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import attrs
import numpy as np
import torch

from engine.checkpoints import load_checkpoint, save_checkpoint
from engine.datasets import shared_data
from engine.interfaces import ConfigError
from engine.runtime import use_torch_threads

from .bundle import check_device, load_model_dir, save_model_dir, steps_in_all
from .graphs import GRAPHS
from .likelihood import ar_nlls, chars_per_sequence, chunk, sedd_bounds, summarize
from .losses import ar_nll, sedd_loss
from .model import ModelConfig, ScoreNet
from .schedules import SCHEDULES
from .text import BPETokenizer, CharTokenizer, read_corpus, split_corpus

DEFAULT_DATA = shared_data("text", "tinyshakespeare.txt")
DEFAULT_SCHEDULE = {"absorbing": "loglinear", "uniform": "geometric"}
# what a model folder must share with a run that starts from its weights
_SAME_TO_START_FROM = ("objective", "model", "graph", "schedule", "tokenizer", "seq_len")


class EMA:
    def __init__(self, net, decay):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in net.parameters()]

    @torch.no_grad()
    def update(self, net, step):
        d = min(self.decay, (1 + step) / (10 + step))  # warm start: early EMA tracks the net
        torch._foreach_lerp_(self.shadow, [p.detach() for p in net.parameters()], 1 - d)

    def copy_to(self, net):
        with torch.no_grad():
            for s, p in zip(self.shadow, net.parameters(), strict=True):
                p.copy_(s)


def _to_start_from(cfg: dict) -> dict:
    """What a warm start must share with its model: all of the configuration but dropout, a
    training-time regulariser that changes no weight's shape or meaning."""
    model = {k: v for k, v in cfg["model"].items() if k != "dropout"}
    return {k: model if k == "model" else cfg.get(k) for k in _SAME_TO_START_FROM}


def _run_config(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k != "started_from"}


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    floor = args.min_lr_ratio
    return args.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def prepare_data(args):
    text = read_corpus(args.data)
    train_text, val_text = split_corpus(text, args.train_fraction)
    if args.tokenizer == "char":
        tok = CharTokenizer.from_corpus(text)
    else:
        tmp = Path(args.out) / "bpe_corpus.txt"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(train_text, encoding="utf-8")
        tok = BPETokenizer.train([tmp], args.bpe_vocab)
    train = np.asarray(tok.encode(train_text), dtype=np.int64)
    val = np.asarray(tok.encode(val_text), dtype=np.int64)
    if len(train) <= args.length:
        raise ConfigError(f"training split has {len(train)} tokens, fewer than --length {args.length}")
    return tok, train, val


def make_config(args, tok, graph, schedule) -> dict:
    states = graph.dim if graph is not None else tok.vocab_size + 1  # AR: + BOS
    model = ModelConfig(
        vocab=states,
        hidden=args.hidden,
        blocks=args.blocks,
        heads=args.heads,
        cond=args.cond,
        max_len=args.length,
        dropout=args.dropout,
        causal=args.objective == "ar",
        time_conditioning=not (args.objective == "sedd" and args.parametrisation == "radd"),
    )
    return {
        "format": "engine-sedd/1",
        "objective": args.objective,
        "model": model.to_dict(),
        "graph": graph.config() if graph is not None else None,
        "schedule": schedule.config() if schedule is not None else None,
        "tokenizer": tok.to_dict(),
        "seq_len": args.length,
    }


def validate(net, args, cfg, graph, schedule, val_seqs, tok):
    chars = chars_per_sequence(tok, val_seqs)
    if args.objective == "sedd":
        per = sedd_bounds(net, graph, schedule, val_seqs, n_times=args.eval_times, seed=args.seed)
    else:
        per = ar_nlls(net, val_seqs, bos=tok.vocab_size, vocab=tok.vocab_size)
    net.train()
    return summarize(per, val_seqs.shape[1], chars)


def _gather_states(state, world):
    """Every rank's data-generator state (so a resumed DDP run draws the same batches)."""
    if world == 1:
        return [state]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, state)
    return out


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), world
    return 0, 1


def train_device(device: str | None, world: int = 1) -> torch.device:
    """The torch device a run trains on: the CPU (one process, or several under torchrun) or one GPU."""
    try:
        chosen = torch.device(device or "cpu")
    except RuntimeError:
        raise ConfigError(f"unknown torch device {device!r}; use cpu or cuda (cuda:1, ...)") from None
    if chosen.type not in ("cpu", "cuda"):
        raise ConfigError(f"training runs on the CPU or a CUDA GPU, not {device!r}")
    check_device(str(chosen))
    if chosen.type == "cuda" and world > 1:
        raise ConfigError("several processes (torchrun) train on the CPU; on a GPU run one process")
    return chosen


class Trainer:
    """One training run: model, optimiser, EMA, data stream and checkpoints, on ``device``
    (the CPU by default; random draws come from a generator on that device)."""

    def __init__(self, args, log=print, device: str | None = None, start_from=None):
        use_torch_threads(args.threads)
        self.args, self.log = args, log
        self.rank, self.world = _dist()
        self.device = train_device(device, self.world)
        self.out = Path(args.out)
        self.ckpt = self.out / "checkpoint.pt"
        self.tok, train_tokens, val_tokens = prepare_data(args)
        self.graph = self.schedule = None
        if args.objective == "sedd":
            self.graph = GRAPHS.create(args.graph, self.tok.vocab_size)
            if args.parametrisation == "radd" and not self.graph.absorbing:
                raise ConfigError(f"--parametrisation radd needs the absorbing graph, not {args.graph!r}")
            self.schedule = SCHEDULES.create(args.schedule or DEFAULT_SCHEDULE.get(args.graph, "loglinear"))
        self.cfg = make_config(args, self.tok, self.graph, self.schedule)
        torch.manual_seed(args.seed)
        self.net = ScoreNet(ModelConfig(**self.cfg["model"])).to(self.device)
        self.opt = torch.optim.AdamW(
            self.net.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay
        )
        self.ema = EMA(self.net, args.ema)
        self.gen = torch.Generator(device=self.device).manual_seed(args.seed * 1000 + self.rank)
        self.step, self.history, self.rng_states, self.loss_avg = 0, [], [], None
        self.start = time.time()
        if start_from is not None:
            self.start_from(start_from)
        if args.resume:
            self.resume()
        self.model = self.net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.net)
        self.data = torch.from_numpy(train_tokens).to(self.device)
        val = chunk(val_tokens, args.length, "the validation split")
        self.val_seqs = val[np.linspace(0, len(val) - 1, min(args.eval_seqs, len(val))).astype(int)]

    def start_from(self, model_dir):
        """Warm start: this run's network and EMA begin at the weights of ``model_dir``, a model
        folder of the same configuration (objective, network, noise, tokenizer, length; the dropout
        may differ); the optimiser, schedule and step count start afresh. The folder is on the
        run's record."""
        net, cfg, *_ = load_model_dir(model_dir)
        theirs, ours = _to_start_from(cfg), _to_start_from(self.cfg)
        differing = [k for k in _SAME_TO_START_FROM if theirs[k] != ours[k]]
        if differing:
            raise ConfigError(f"--model {model_dir}: another configuration than this run's ({', '.join(differing)})")
        self.net.load_state_dict(net.state_dict())
        self.ema = EMA(self.net, self.args.ema)
        self.cfg["started_from"] = {"model": str(model_dir), "steps": steps_in_all(cfg)}

    def resume(self):
        if not self.ckpt.is_file():
            raise ConfigError(f"--resume: no checkpoint at {self.ckpt} (start the run without --resume)")
        state = load_checkpoint(self.ckpt)
        if _run_config(state["config"]) != _run_config(self.cfg):
            raise ConfigError("--resume: checkpoint was trained with a different configuration")
        if "started_from" in state["config"]:  # a warm-started run resumes without --model
            self.cfg["started_from"] = state["config"]["started_from"]
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.ema.shadow = [s.to(self.device) for s in state["ema"]]
        self.step, self.history = state["step"], state["history"]
        self.start = time.time() - state["elapsed"]
        if "torch_rng" in state:  # older checkpoints lack the generator states
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":  # dropout's draws on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if self.rank < len(state.get("data_rng", [])):
            self.gen.set_state(state["data_rng"][self.rank])

    def loss(self, x0):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
            if self.args.objective == "sedd":
                stratified = self.args.time_sampling == "stratified"
                return sedd_loss(
                    self.model, self.graph, self.schedule, x0, generator=self.gen, stratified=stratified
                ).mean()
            return ar_nll(self.model, x0, self.tok.vocab_size, self.tok.vocab_size).mean()

    def train_step(self) -> float:
        args = self.args
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, args)
        self.opt.zero_grad(set_to_none=True)
        value = 0.0
        for k in range(args.accumulate):  # gradients add up over micro-batches
            starts = torch.randint(
                0, len(self.data) - args.length, (args.batch,), generator=self.gen, device=self.device
            )
            last = k == args.accumulate - 1
            with contextlib.nullcontext() if last or self.world == 1 else self.model.no_sync():
                window = torch.arange(args.length, device=self.device)
                loss = self.loss(self.data[starts[:, None] + window]) / args.accumulate
                loss.backward()
            value += loss.item()
        gnorm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), args.clip)
        self.opt.step()
        self.ema.update(self.net, self.step)
        self.step += 1
        self.loss_avg = value if self.loss_avg is None else 0.98 * self.loss_avg + 0.02 * value
        return float(gnorm)

    def evaluate(self, gnorm: float):
        """Validation bound (or exact NLL for AR) of the EMA weights."""
        live = [p.detach().clone() for p in self.net.parameters()]
        self.ema.copy_to(self.net)
        val = validate(self.net, self.args, self.cfg, self.graph, self.schedule, self.val_seqs, self.tok)
        with torch.no_grad():
            for p, v in zip(self.net.parameters(), live, strict=True):
                p.copy_(v)
        rec = {
            "step": self.step,
            "seconds": round(time.time() - self.start, 1),
            "train_loss_per_token": self.loss_avg / self.args.length,
            "grad_norm": gnorm,
            "val_bpc": val["bpc"],
            "val_bpc_se": val["bpc_se"],
        }
        self.history.append(rec)
        self.log(json.dumps(rec))

    def save_checkpoint(self):
        self.rng_states = _gather_states(self.gen.get_state(), self.world)
        if self.rank != 0:
            return
        state = {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "ema": self.ema.shadow,
            "step": self.step,
            "elapsed": time.time() - self.start,
            "history": self.history,
            "config": self.cfg,
            "torch_rng": torch.get_rng_state(),
            "data_rng": self.rng_states,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(state, self.ckpt)

    def should_stop(self) -> bool:
        args = self.args
        if args.stop_at is not None and self.step >= args.stop_at:
            return True
        if args.max_minutes is not None and time.time() - self.start > 60 * args.max_minutes:
            self.log(f"stopping at step {self.step}: --max-minutes {args.max_minutes} reached")
            return True
        return False

    def save_model(self, seconds: float):
        """EMA weights + config with the training record, as a model folder (rank 0)."""
        args = self.args
        self.ema.copy_to(self.net)
        self.cfg["training"] = {
            "data": Path(args.data).name,
            "train_fraction": args.train_fraction,
            "steps": self.step,
            "batch": args.batch * self.world * args.accumulate,
            "accumulate": args.accumulate,
            "bf16": args.bf16,
            "dropout": args.dropout,
            "time_sampling": args.time_sampling,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "warmup": args.warmup,
            "clip": args.clip,
            "ema": args.ema,
            "seconds": round(seconds, 1),
            "world_size": self.world,
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "parameters": self.net.num_parameters(),
            "history": self.history,
        }
        save_model_dir(self.out / "model", self.net, self.cfg, args.save_dtype)


def train(args, progress=None, log=print, device: str | None = None, start_from=None) -> dict:
    """Run the training ``args`` (an :class:`engine_sedd.options.TrainOptions`) describes, on
    ``device`` (default: the CPU), from fresh weights or from the model folder ``start_from``."""
    args = attrs.evolve(args, data=args.data or str(DEFAULT_DATA))
    t = Trainer(args, log, device, start_from)
    bar = progress(total=args.steps, desc=f"train {args.objective}") if progress else None
    if bar is not None and t.step:
        bar.update(t.step)
    t.net.train()
    while t.step < args.steps and not t.should_stop():
        gnorm = t.train_step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss_per_token=f"{t.loss_avg / args.length:.3f}")
        if t.rank == 0 and (t.step % args.eval_every == 0 or t.step == args.steps):
            t.evaluate(gnorm)
        if t.step % args.ckpt_every == 0:
            t.save_checkpoint()
    if bar is not None:
        bar.close()
    t.save_checkpoint()
    seconds = time.time() - t.start
    if t.rank == 0:
        t.save_model(seconds)
    if t.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return {"steps": t.step, "seconds": round(seconds, 1), "out": str(t.out / "model")}
