"""`engine train medusa`: self-distillation (cached) then Medusa-1 or Medusa-2 training.

Runs single-process or under torchrun (e.g. `torchrun --nproc_per_node 2 -m
engine_medusa.train_cli ...`, gloo backend on the CPU): ranks shard the batches and
average gradients; rank 0 writes checkpoints and the heads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import UsageError


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--out", required=True, help="folder for heads, checkpoints and logs")
    p.add_argument("--prompts", default=None, help="JSONL prompts (default: shared/data/prompts/train.jsonl)")
    p.add_argument(
        "--mix", default="chat=427,code=300,math=250", help="prompts per category, or 'all=N' for the first N"
    )
    p.add_argument("--max-new-tokens", type=int, default=128, help="answer length in self-distillation")
    p.add_argument("--distill-batch", type=int, default=16)
    p.add_argument(
        "--distill-dtype",
        default="bfloat16",
        choices=["bfloat16", "float32"],
        help="dtype of the base while it writes the answers (bf16 is ~4x faster here)",
    )
    p.add_argument(
        "--distill-minutes",
        type=float,
        default=None,
        help="time budget for self-distillation: stop and train on what was written",
    )
    p.add_argument("--mode", default="medusa1", choices=["medusa1", "medusa2"])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--own-lm-head", action="store_true", help="each head gets its own d x V matrix")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast of the projections")
    p.add_argument("--unfreeze-last", type=int, default=2, help="Medusa-2: backbone blocks trained")
    p.add_argument("--lambda0", type=float, default=0.2)
    p.add_argument("--head-lr-mult", type=float, default=4.0)
    p.add_argument("--stage1-steps", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p


def parse_mix(text: str) -> dict:
    try:
        return {k: int(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise UsageError(f"--mix must look like chat=400,code=100, got {text!r}") from None


def main(argv, ctx=None):
    import torch

    from . import data, training
    from .base import TorchBackend, canonical_base_name, load_base

    try:
        a = parser(ctx.prog if ctx else "engine train medusa").parse_args(argv)
    except SystemExit as e:
        if e.code == 0:
            return 0
        raise UsageError("bad arguments for engine train medusa (see --help)") from None
    torch.set_num_threads(max(1, a.threads))
    progress = ctx.progress if ctx else None
    log = ctx.echo if ctx else print
    prompts_path = Path(a.prompts) if a.prompts else data.TRAIN_PROMPTS
    mix = parse_mix(a.mix)
    rows = data.read_prompts(prompts_path)
    prompts = rows[: mix["all"]] if "all" in mix else data.select_prompts(rows, mix, a.seed)
    if not prompts:
        raise UsageError(f"no prompts selected from {prompts_path} with --mix {a.mix}")
    base_name = canonical_base_name(a.base)
    model, codec = load_base(a.base)
    folder = data.distill_folder(base_name, prompts_path, mix, a.seed, a.max_new_tokens, a.distill_dtype)
    rank, _ = training.dist_info()
    if not (folder / "DONE").exists():
        if rank == 0:
            gen = model if a.distill_dtype == "float32" else _copy_as(model, torch.bfloat16)
            log(f"self-distillation: {len(prompts)} prompts -> {folder}")
            data.distill(
                TorchBackend(gen, None),
                codec,
                prompts,
                folder,
                max_new_tokens=a.max_new_tokens,
                batch_size=a.distill_batch,
                progress=progress,
                minutes=a.distill_minutes,
            )
            del gen
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
    else:
        log(f"using cached self-distillation data {folder}")
    samples = data.load_shards(folder)
    cfg = training.TrainConfig(
        mode=a.mode,
        num_heads=a.heads,
        num_layers=a.layers,
        share_lm_head=not a.own_lm_head,
        epochs=a.epochs,
        max_steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        val_fraction=a.val_fraction,
        checkpoint_every=a.checkpoint_every,
        bf16=not a.fp32,
        unfreeze_last=a.unfreeze_last,
        lambda0=a.lambda0,
        head_lr_mult=a.head_lr_mult,
        stage1_steps=a.stage1_steps,
    )
    out = Path(a.out)
    done = json.loads((folder / "DONE").read_text())
    extra = {
        "distill": {
            "folder": folder.name,
            "prompts": len(samples),
            "selected": len(prompts),
            "mix": mix,
            "batches": done.get("batches"),
            "complete": done.get("complete", True),
            "max_new_tokens": a.max_new_tokens,
            "dtype": a.distill_dtype,
            "prompts_file": prompts_path.name,
        }
    }
    if a.mode == "medusa1":
        _, report = training.train_medusa1(
            samples, model.get_output_embeddings(), cfg, out, base_name, resume=a.resume, progress=progress, log=log
        )
    else:
        prompt_ids = {str(r.get("id")): codec.encode_prompt(r["prompt"]) for r in prompts}
        seqs = training.sequences_from(samples, prompt_ids, cfg.max_len)
        _, report = training.train_medusa2(
            model, seqs, cfg, out, base_name, resume=a.resume, progress=progress, log=log
        )
    report.update(extra)
    if rank == 0:
        _merge_log(out, extra)
        acc = report["val_accuracy"]
        log("per-head val top-1: " + " ".join(f"{x:.3f}" for x in acc["top1"]))
        log("per-head val top-5: " + " ".join(f"{x:.3f}" for x in acc["top5"]))
    if torch.distributed.is_initialized():  # gloo threads still running at exit can abort the process
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {k: v for k, v in report.items() if k not in ("history",)}


def _copy_as(model, dtype):
    import copy

    return copy.deepcopy(model).to(dtype)


def _merge_log(out: Path, extra: dict):
    import os

    path = out / "train_log.json"
    log = json.loads(path.read_text())
    log.update(extra)
    tmp = out / ".train_log.json.tmp"
    tmp.write_text(json.dumps(log, indent=1))
    os.replace(tmp, path)


if __name__ == "__main__":  # torchrun entry
    result = main(sys.argv[1:])
    if isinstance(result, dict) and int(__import__("os").environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in result.items() if k in ("steps", "world_size", "val_accuracy")}))
