"""`engine train sedd`: AdamW with linear warmup and cosine decay, gradient clipping,
EMA weights, periodic validation bound and checkpoints, resume, single process or
torchrun DDP (gloo on CPU). `--objective ar` trains the causal baseline of the same
size with the same data, budget and optimiser."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .bundle import save_model_dir
from .graphs import GRAPHS
from .likelihood import ar_nlls, chunk, sedd_bounds, summarize
from .losses import ar_nll, sedd_loss
from .model import ModelConfig, ScoreNet
from .schedules import SCHEDULES
from .text import BPETokenizer, CharTokenizer, read_corpus, split_corpus

DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "text" / "tinyshakespeare.txt"
DEFAULT_SCHEDULE = {"absorbing": "loglinear", "uniform": "geometric"}


def build_parser(prog="engine train sedd") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    a = p.add_argument
    a("--data", default=str(DEFAULT_DATA), help="text corpus (first --train-fraction trains)")
    a("--train-fraction", type=float, default=0.9)
    a("--tokenizer", choices=["char", "bpe"], default="char")
    a("--bpe-vocab", type=int, default=512)
    a("--objective", choices=["sedd", "ar"], default="sedd")
    a("--graph", default="absorbing")
    a("--schedule", default=None, help="default: loglinear (absorbing), geometric (uniform)")
    a("--length", type=int, default=128, help="sequence length (context)")
    a("--hidden", type=int, default=256)
    a("--blocks", type=int, default=4)
    a("--heads", type=int, default=4)
    a("--cond", type=int, default=128)
    a("--dropout", type=float, default=0.0)
    a("--batch", type=int, default=32)
    a("--steps", type=int, default=2000)
    a("--lr", type=float, default=1e-3)
    a("--min-lr-ratio", type=float, default=0.1, help="cosine decay floor")
    a("--warmup", type=int, default=100)
    a("--weight-decay", type=float, default=0.0)
    a("--clip", type=float, default=1.0)
    a("--ema", type=float, default=0.999)
    a("--eval-every", type=int, default=250)
    a("--eval-seqs", type=int, default=64)
    a("--eval-times", type=int, default=4)
    a("--ckpt-every", type=int, default=250)
    a("--out", default="runs/sedd")
    a("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    a("--seed", type=int, default=0)
    a("--threads", type=int, default=1)
    a("--bf16", action="store_true", help="bf16 autocast for the network")
    a("--max-minutes", type=float, default=None, help="stop (and save) after this wall time")
    a("--stop-at", type=int, default=None, help="stop (and checkpoint) at this step; resume later")
    a("--save-dtype", choices=["fp16", "fp32", "bf16"], default="fp16")
    return p


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
        raise ValueError(f"training split has {len(train)} tokens, fewer than --length {args.length}")
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
    chars = float(np.mean([tok.num_chars(s) for s in val_seqs]))
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


def train(args, progress=None, log=print) -> dict:
    torch.set_num_threads(args.threads)
    rank, world = _dist()
    out = Path(args.out)
    tok, train_tokens, val_tokens = prepare_data(args)
    graph = schedule = None
    if args.objective == "sedd":
        graph = GRAPHS.create(args.graph, tok.vocab_size)
        schedule = SCHEDULES.create(args.schedule or DEFAULT_SCHEDULE.get(args.graph, "loglinear"))
    cfg = make_config(args, tok, graph, schedule)
    torch.manual_seed(args.seed)
    net = ScoreNet(ModelConfig(**cfg["model"]))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay)
    ema = EMA(net, args.ema)
    step, elapsed, history = 0, 0.0, []
    ckpt = out / "checkpoint.pt"
    if args.resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, weights_only=False)
        if state["config"] != cfg:
            raise ValueError("--resume: checkpoint was trained with a different configuration")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        ema.shadow = state["ema"]
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        if "torch_rng" in state:  # older checkpoints lack the generator states
            torch.set_rng_state(state["torch_rng"])
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net)
    gen = torch.Generator().manual_seed(args.seed * 1000 + rank)
    if args.resume and rank < len(state.get("data_rng", [])):
        gen.set_state(state["data_rng"][rank])
    data = torch.from_numpy(train_tokens)
    offsets = torch.arange(args.length)
    val_seqs = chunk(val_tokens, args.length)
    val_seqs = val_seqs[np.linspace(0, len(val_seqs) - 1, min(args.eval_seqs, len(val_seqs))).astype(int)]
    bos, vocab = tok.vocab_size, tok.vocab_size
    net.train()
    start = time.time() - elapsed
    bar = progress(total=args.steps, desc=f"train {args.objective}") if progress else None
    if bar is not None and step:
        bar.update(step)
    loss_avg = None
    rng_states = []

    def save_checkpoint():
        nonlocal rng_states
        rng_states = _gather_states(gen.get_state(), world)
        if rank != 0:
            return
        out.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save(
            {
                "net": net.state_dict(),
                "opt": opt.state_dict(),
                "ema": ema.shadow,
                "step": step,
                "elapsed": time.time() - start,
                "history": history,
                "config": cfg,
                "torch_rng": torch.get_rng_state(),
                "data_rng": rng_states,
            },
            tmp,
        )
        os.replace(tmp, ckpt)

    while step < args.steps:
        if args.stop_at is not None and step >= args.stop_at:
            break
        if args.max_minutes is not None and time.time() - start > 60 * args.max_minutes:
            log(f"stopping at step {step}: --max-minutes {args.max_minutes} reached")
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        starts = torch.randint(0, len(data) - args.length, (args.batch,), generator=gen)
        x0 = data[starts[:, None] + offsets]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            if args.objective == "sedd":
                loss = sedd_loss(model, graph, schedule, x0, generator=gen).mean()
            else:
                loss = ar_nll(model, x0, bos, vocab).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        opt.step()
        ema.update(net, step)
        step += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss_per_token=f"{loss_avg / args.length:.3f}")
        if rank == 0 and (step % args.eval_every == 0 or step == args.steps):
            live = [p.detach().clone() for p in net.parameters()]
            ema.copy_to(net)
            val = validate(net, args, cfg, graph, schedule, val_seqs, tok)
            with torch.no_grad():
                for p, v in zip(net.parameters(), live, strict=True):
                    p.copy_(v)
            rec = {
                "step": step,
                "seconds": round(time.time() - start, 1),
                "train_loss_per_token": loss_avg / args.length,
                "grad_norm": float(gnorm),
                "val_bpc": val["bpc"],
                "val_bpc_se": val["bpc_se"],
            }
            history.append(rec)
            log(json.dumps(rec))
        if step % args.ckpt_every == 0:
            save_checkpoint()
    if bar is not None:
        bar.close()
    save_checkpoint()
    seconds = time.time() - start
    result = {"steps": step, "seconds": round(seconds, 1), "out": str(out / "model")}
    if rank == 0:
        ema.copy_to(net)
        cfg["training"] = {
            "data": Path(args.data).name,
            "train_fraction": args.train_fraction,
            "steps": step,
            "batch": args.batch * world,
            "lr": args.lr,
            "warmup": args.warmup,
            "clip": args.clip,
            "ema": args.ema,
            "seconds": round(seconds, 1),
            "world_size": world,
            "threads": args.threads,
            "parameters": net.num_parameters(),
            "history": history,
        }
        save_model_dir(out / "model", net, cfg, args.save_dtype)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


def main(argv=None):
    args = build_parser(prog="python -m engine_sedd.training").parse_args(argv)
    from tqdm import tqdm

    print(json.dumps(train(args, progress=lambda **kw: tqdm(mininterval=5, **kw))))


if __name__ == "__main__":
    main()
