"""`engine <verb> sedd` commands: sample, train, eval, export, bench, demo.
Heavy modules are imported inside each command, after argument parsing."""

from __future__ import annotations

import argparse
import contextlib
import sys

from engine.errors import EngineError, UsageError


@contextlib.contextmanager
def user_errors():
    """Bad input becomes one line: ValueError/KeyError -> usage error, missing files -> engine error."""
    try:
        yield
    except KeyError as exc:  # str(KeyError) wraps its message in quotes
        raise UsageError(str(exc.args[0]) if exc.args else "missing key") from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except FileNotFoundError as exc:
        raise EngineError(str(exc)) from exc


def parse_fixed(items) -> dict[int, str]:
    out = {}
    for item in items or []:
        pos, sep, text = item.partition("=")
        if not sep or not pos.strip().lstrip("-").isdigit():
            raise UsageError(f"--fix expects POSITION=TEXT, got {item!r}")
        out[int(pos)] = text
    return out


def _sampler(args):
    if args.artifact:
        import engine

        return engine.load_artifact(args.artifact, provider=args.provider)
    from .component import SEDDSampler

    return SEDDSampler(args.model, threads=args.threads, device=args.device)


def sample(argv, ctx):
    p = argparse.ArgumentParser(prog=ctx.prog, description="Draw texts by reversing the diffusion.")
    p.add_argument("--model", help="model folder (default: the bundled tinyshakespeare model)")
    p.add_argument("--artifact", help="run an exported ONNX artifact with onnxruntime instead")
    p.add_argument("--provider", default="auto", help="onnxruntime provider for --artifact")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--predictor", default="analytic", help="analytic (Tweedie) or euler")
    p.add_argument("--prefix")
    p.add_argument("--suffix")
    p.add_argument("--fix", action="append", metavar="POS=TEXT", help="hold TEXT at POS (repeatable)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="torch device for the network (cpu, cuda)")
    args = p.parse_args(argv)
    from engine.interfaces import SamplingConfig

    with user_errors():
        config = SamplingConfig(
            num_samples=args.num_samples,
            length=args.length,
            steps=args.steps,
            seed=args.seed,
            predictor=args.predictor,
            prefix=args.prefix,
            suffix=args.suffix,
            fixed=parse_fixed(args.fix) or None,
        )
        sampler = _sampler(args)
        bar = ctx.progress(total=args.steps, desc="sampling")
        result = sampler.sample(config, on_step=lambda i: bar.update(1))
        bar.close()
    if ctx.json:
        return {"texts": list(result.texts), "steps": args.steps, "seconds": result.stats.seconds}
    for i, text in enumerate(result.texts):
        if len(result.texts) > 1:
            ctx.echo(f"--- sample {i}")
        ctx.echo(text)
    return 0


def train(argv, ctx):
    from .training import build_parser

    args = build_parser(prog=ctx.prog).parse_args(argv)
    from .training import train as run

    with user_errors():
        return run(args, progress=lambda total, desc: ctx.progress(total=total, desc=desc), log=ctx.echo)


def eval(argv, ctx):  # noqa: A001 - the verb's name
    p = argparse.ArgumentParser(prog=ctx.prog, description="Monte Carlo ELBO on the validation split.")
    p.add_argument("--model", help="SEDD or AR model folder (default: the bundled SEDD model)")
    p.add_argument("--ar", nargs="?", const="default", help="also evaluate an AR baseline (default: bundled)")
    p.add_argument("--data", help="corpus (default: the model's training corpus in ../shared/data)")
    p.add_argument("--train-fraction", type=float, default=None, help="validation = text after this fraction")
    p.add_argument("--times", type=int, default=16, help="time samples per sequence")
    p.add_argument("--max-seqs", type=int, default=None, help="evaluate only this many sequences (evenly spaced)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    from .evaluation import evaluate_models

    with user_errors():
        return evaluate_models(
            args.model,
            args.ar,
            data=args.data,
            train_fraction=args.train_fraction,
            n_times=args.times,
            max_seqs=args.max_seqs,
            seed=args.seed,
            threads=args.threads,
        )


def export(argv, ctx):
    p = argparse.ArgumentParser(prog=ctx.prog, description="Export the score network to an engine artifact.")
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--out", required=True, help="artifact folder to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, 20)")
    args = p.parse_args(argv)
    from .component import SEDDSampler

    with user_errors():
        path = SEDDSampler(args.model).export_onnx(args.out, opset=args.opset)
    ctx.echo(f"wrote {path}")
    return {"artifact": str(path)} if ctx.json else 0


def bench(argv, ctx):
    from .bench import build_parser, run_bench

    args = build_parser(prog=ctx.prog).parse_args(argv)
    with user_errors():
        return run_bench(args, progress=ctx.progress, log=lambda m: print(m, file=sys.stderr))


def demo(argv, ctx):
    from .component import DEFAULT_MODEL

    if not (DEFAULT_MODEL / "config.json").is_file():
        ctx.echo(f"the default SEDD model is not there yet ({DEFAULT_MODEL}); train one with `engine train sedd`")
        return 1
    ctx.echo("# 64 analytic steps, 256 characters, seed 0")
    sample(["--steps", "64", "--length", "256", "--seed", "0"], ctx)
    ctx.echo("\n# infilling between a prefix and a suffix")
    return sample(
        ["--steps", "64", "--length", "160", "--seed", "1", "--prefix", "ROMEO:\n", "--suffix", "\n\nJULIET:\nAy me!"],
        ctx,
    )
