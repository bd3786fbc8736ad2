"""Remasking (ReMDM) against the plain step at T = 1 (issue 12): AR-judged bits/char of the default model's
samples, their token entropy and the model's own bound on them, for each remasking cap and seed.

    python scripts/remasking.py --eta 0,0.05,0.1 --seeds 7 --samples 16 -o scripts/results/remasking_tune_seed7.json

``--eta 0`` is the plain sampler (the analytic predictor, as every sample before remasking); any other value is
the remdm predictor with that cap. Torch fp32, 1 thread, 256 characters.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from engine_sedd.evaluation import judge_samples, self_judge, token_entropy
from engine_sedd.torch_path import SEDDSampler

from engine.interfaces import SamplingConfig
from engine.options import comma_list


def draw(eta: float, seed: int, samples: int, steps: int, start: float) -> dict:
    sampler = SEDDSampler(threads=1, remask=eta or None, remask_start=start if eta else None)
    config = SamplingConfig(
        num_samples=samples, length=256, steps=steps, seed=seed, predictor="remdm" if eta else "analytic"
    )
    began = time.perf_counter()
    tokens = sampler.sample_tokens(config)
    seconds = time.perf_counter() - began
    return {
        "eta": eta,
        "start": start if eta else None,
        "seed": seed,
        "predictor": config.predictor,
        "seconds": seconds,
        "evals_per_sequence": float(np.mean(sampler.network_evals)),
        "ar_judged_bpc": judge_samples("default", {"x": tokens}, sampler.config["tokenizer"])["x"],
        "token_entropy_bits": token_entropy(tokens),
        "self_bound_bpc": self_judge(sampler, {"x": tokens}, n_times=8)["x"],
        "first_sample": sampler.tokenizer.decode(tokens[0].tolist()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eta", type=comma_list(float), required=True, help="remasking caps (0: the plain step)")
    parser.add_argument("--seeds", type=comma_list(int), required=True)
    parser.add_argument("--start", type=comma_list(float), default=(1.0,), help="remask once t <= START")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        for start in args.start:
            for eta in args.eta:
                rows.append(draw(eta, seed, args.samples, args.steps, start))
            print({k: v for k, v in rows[-1].items() if k != "first_sample"}, flush=True)
    out = {"samples": args.samples, "length": 256, "steps": args.steps, "temperature": 1.0, "rows": rows}
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
