"""`engine bench sedd`: sampling throughput of the torch and onnxruntime back ends
(samples per second at several step counts, same seeds, same tokens checked) and
validation bits per character of SEDD (bound) next to the AR baseline (exact), and the
AR baseline's bits per character on the drawn samples (quality against steps)."""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np


def build_parser(prog="engine bench sedd") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--model", help="SEDD model folder (default: bundled)")
    p.add_argument("--ar", default="default", help="AR baseline folder (default: bundled)")
    p.add_argument("--steps", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    p.add_argument("--provider", default="cpu")
    p.add_argument("--eval-seqs", type=int, default=None, help="validation sequences (default: all)")
    p.add_argument("--eval-times", type=int, default=4, help="time samples per sequence for the bound")
    p.add_argument("--data", help="corpus for the bits-per-character rows (default: the model's)")
    p.add_argument("--skip-bpc", action="store_true")
    return p


def _rate(sampler, steps, args) -> tuple[float, list]:
    from engine.interfaces import SamplingConfig

    cfg = SamplingConfig(num_samples=args.batch, length=args.length, steps=steps, seed=1234)
    start = time.perf_counter()
    result = sampler.sample(cfg)
    return args.batch / (time.perf_counter() - start), result.tokens


def run_bench(args, progress=None, log=print) -> dict:
    import torch

    import engine

    from .component import SEDDSampler

    torch.set_num_threads(args.threads)
    torch_sampler = SEDDSampler(args.model, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        log("exporting the score network to ONNX ...")
        path = torch_sampler.export_onnx(f"{tmp}/artifact")
        from engine.artifacts import read_artifact

        from .ort import load_artifact

        ort_sampler = load_artifact(read_artifact(path), provider=args.provider, threads=args.threads)
        torch_rate, ort_rate, same, drawn = {}, {}, {}, {}
        for steps in args.steps:
            torch_rate[str(steps)], a = _rate(torch_sampler, steps, args)
            ort_rate[str(steps)], b = _rate(ort_sampler, steps, args)
            same[str(steps)] = float(np.mean(np.array(a) == np.array(b)))
            drawn[str(steps)] = np.array(a)
            log(f"steps {steps}: torch {torch_rate[str(steps)]:.3f}/s, onnxruntime {ort_rate[str(steps)]:.3f}/s")
        providers = ort_sampler.providers
    out = {
        "torch_samples_per_s": torch_rate,
        "ort_samples_per_s": ort_rate,
        "speedup_ort": float(np.exp(np.mean([np.log(ort_rate[k] / torch_rate[k]) for k in torch_rate]))),
        "same_tokens_fraction": same,
        "length": args.length,
        "batch": args.batch,
        "threads": args.threads,
        "device": f"cpu ({platform.processor() or platform.machine()}), onnxruntime {providers[0]}",
        "engine_version": engine.__version__,
    }
    if not args.skip_bpc:
        from .evaluation import evaluate_models

        log("evaluating validation bits per character ...")
        ev = evaluate_models(args.model, args.ar, data=args.data, n_times=args.eval_times, max_seqs=args.eval_seqs)
        out.update(
            {
                "sedd_bpc_bound": ev["sedd_bpc"],
                "sedd_bpc_se": ev["sedd_bpc_se"],
                "ar_bpc": ev["ar_bpc"],
                "bpc_ratio": ev["bpc_ratio"],
                "eval_sequences": ev["sedd_sequences"],
                "eval_time_samples": args.eval_times,
            }
        )
        from .evaluation import judge_samples

        # the paper's "generative perplexity", with the AR baseline as the judge
        out["gen_bpc_under_ar"] = judge_samples(args.ar, drawn, torch_sampler.config["tokenizer"])
    return out
