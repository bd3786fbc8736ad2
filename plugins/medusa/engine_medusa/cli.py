"""CLI commands: engine decode|train|eval|export|demo medusa, engine medusa tune-tree."""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import UsageError


def _parser(ctx, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=ctx.prog, description=description)


def _parse(parser, argv):
    try:
        return parser.parse_args(argv)
    except SystemExit as e:  # argparse printed its message; make it a usage error
        if e.code == 0:
            raise
        raise UsageError(f"bad arguments for {parser.prog} (see --help)") from None


def _threads(n):
    import torch

    torch.set_num_threads(max(1, int(n)))


def _model_args(p):
    p.add_argument("--model", default=None, help="base model: HF id, local dir or .gguf (default: the heads' base)")
    p.add_argument("--heads", default="default", help="heads folder, 'default' or 'none'")
    p.add_argument("--tree", default=None, help="tree as JSON rank paths, e.g. '[[0],[0,0],[1]]'")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: the CPU here is shared; more threads thrash)"
    )


def _tree_arg(text):
    if text is None:
        return None
    try:
        tree = json.loads(text)
    except json.JSONDecodeError:
        raise UsageError("--tree must be JSON, e.g. '[[0],[0,0],[1]]'") from None
    return tree


def load_decoder(args):
    """MedusaDecoder (torch) or, with --onnx ARTIFACT, the onnxruntime decoder."""
    if getattr(args, "onnx", None):
        from engine.artifacts import read_artifact

        from .ort import OrtMedusaDecoder

        return OrtMedusaDecoder(
            read_artifact(args.onnx), args.provider, threads=args.threads, tree=_tree_arg(args.tree)
        )
    _threads(args.threads)
    from .component import MedusaDecoder

    return MedusaDecoder(
        model=args.model, heads=args.heads, tree=_tree_arg(args.tree), sampling=getattr(args, "sampling", "lossless")
    )


def decode(argv, ctx):
    p = _parser(ctx, "Generate text with Medusa (greedy output equals the base model's).")
    p.add_argument("prompt", nargs="+")
    _model_args(p)
    p.add_argument("--onnx", default=None, help="run an exported artifact on onnxruntime instead")
    p.add_argument("--provider", default="auto")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[])
    p.add_argument("--sampling", default="lossless", choices=["lossless", "typical"])
    p.add_argument("--no-stream", action="store_true")
    a = _parse(p, argv)
    from engine.interfaces import GenerationConfig

    prompts = a.prompt
    if any(not p.strip() for p in prompts):  # fail before loading any model
        raise UsageError("empty prompt: give some text to continue")
    stream = None
    if len(prompts) == 1 and not a.no_stream and not ctx.json:

        def stream(piece):
            sys.stdout.write(piece)
            sys.stdout.flush()

    cfg = GenerationConfig(
        max_new_tokens=a.max_new_tokens,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=a.top_k,
        seed=a.seed,
        stop=tuple(a.stop),
        stream=stream,
    )
    dec = load_decoder(a)
    results = dec.generate_batch(prompts, cfg)
    if ctx.json:
        print(
            json.dumps(
                [
                    {
                        "prompt": pr,
                        "text": r.text,
                        "tokens": list(r.tokens),
                        "steps": r.stats.steps,
                        "tokens_per_step": round(r.stats.tokens_per_step, 3),
                        "tokens_per_s": round(r.stats.tokens_per_second, 2),
                    }
                    for pr, r in zip(prompts, results, strict=True)
                ]
            )
        )
        return 0
    for pr, r in zip(prompts, results, strict=True):
        if stream is None:
            if len(prompts) > 1:
                print(f"### {pr}")
            print(r.text)
        else:
            print()
        ctx.echo(
            f"[{r.stats.new_tokens} tokens, {r.stats.steps} steps, "
            f"{r.stats.tokens_per_step:.2f} tokens/step, {r.stats.tokens_per_second:.1f} tokens/s]"
        )
    return 0


def train(argv, ctx):
    from .train_cli import main

    return main(argv, ctx)


def export(argv, ctx):
    p = _parser(ctx, "Export base model + heads as one ONNX graph into an engine artifact.")
    p.add_argument("dest")
    _model_args(p)
    a = _parse(p, argv)
    path = load_decoder(a).export_onnx(a.dest)
    ctx.echo(f"wrote {path}")
    return {"artifact": str(path)}


def evaluate(argv, ctx):
    """Per-head accuracy and measured tokens/step on prompts (greedy)."""
    from .tuning import evaluate_heads

    p = _parser(ctx, "Measure per-head top-1/top-5 accuracy and tokens per step on prompts.")
    _model_args(p)
    p.add_argument("--prompts", default=None, help="JSONL with a 'prompt' field (default: dev.jsonl)")
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    a = _parse(p, argv)
    return evaluate_heads(load_decoder(a), a.prompts, a.limit, a.max_new_tokens, progress=ctx.progress)


def demo(argv, ctx):
    p = _parser(ctx, "Medusa on the default SmolLM2 heads, one prompt.")
    p.add_argument("prompt", nargs="?", default="Explain in two sentences why the sky is blue.")
    a = _parse(p, argv)
    return decode([a.prompt, "--max-new-tokens", "64"], ctx)


def medusa_main(argv, ctx):
    """`engine medusa tune-tree ...`"""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: engine medusa tune-tree [options]   (see engine medusa tune-tree --help)")
        return 0 if argv else 2
    if argv[0] != "tune-tree":
        raise UsageError(f"unknown medusa command {argv[0]!r} (known: tune-tree)")
    from .tuning import tune_tree_cli

    ctx.prog = f"{ctx.prog} tune-tree"
    return tune_tree_cli(argv[1:], ctx)
