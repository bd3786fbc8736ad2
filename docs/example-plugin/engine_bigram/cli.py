"""``engine sample bigram`` and ``engine demo bigram``."""

from __future__ import annotations

import argparse

from engine.errors import UsageError
from engine.interfaces import SamplingConfig


def sample(argv, ctx):
    parser = argparse.ArgumentParser(prog=ctx.prog)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--text", type=argparse.FileType("r"), help="train the bigram on this file")
    args = parser.parse_args(argv)
    from engine_bigram.sampler import DEFAULT_TEXT, BigramSampler

    try:
        config = SamplingConfig(num_samples=args.num_samples, length=args.length, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    result = BigramSampler(args.text.read() if args.text else DEFAULT_TEXT).sample(config)
    for text in result.texts:
        print(text)
    return 0


def demo(argv, ctx):
    return sample(["--seed", "0", *argv], ctx)
