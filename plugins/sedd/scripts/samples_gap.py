"""Where the samples' gap lies (issue 12): three probes of the default model at 256 steps, T = 1.

    python scripts/samples_gap.py --other-ar runs/ar_wd01/model -o scripts/results/samples_gap.json

1. Unmasking order. The sampler unmasks a random set of positions each step (the order RADD trains
   for). Two other orders draw the same number of positions per step, each token at T = 1: left to
   right, and the positions whose likeliest token is likeliest first (MaskGIT-style confidence).
2. The model's bound on its own samples against its bound on as many validation windows: an exact
   sampler of a consistent model draws text the model rates about as likely as real text.
3. What a model of the same size can reach under the judge: T = 1 samples of an independently trained
   AR model (``--other-ar``; not the judge itself, whose own samples would flatter it), judged by the
   default AR baseline like every SEDD sample.

Explorations only: the two orders are defined here, not shipped as predictors.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from engine_sedd.bundle import load_model_dir
from engine_sedd.evaluation import judge_samples, self_judge, token_entropy, validation_sequences
from engine_sedd.extensions import PREDICTORS
from engine_sedd.sampling import AnalyticPredictor, sample_categorical
from engine_sedd.torch_path import SEDDSampler

from engine.interfaces import SamplingConfig


class _Ordered(AnalyticPredictor):
    """As many positions as the schedule unmasks this step (a binomial draw), chosen by ``order``."""

    def order(self, data: np.ndarray, masked: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update(self, score_fn, x, t, dt, rng):
        p = self.probs(score_fn, x, t, dt)
        mask, out = self.graph.mask, x.copy()
        for b in range(len(x)):
            masked = np.flatnonzero(x[b] == mask)
            if not len(masked):
                continue
            rows = p[b, masked]
            k = rng.binomial(len(masked), float(1 - np.mean(rows[:, mask] / rows.sum(-1))))
            if k:
                data = rows[:, :mask] / rows[:, :mask].sum(-1, keepdims=True)
                pick = masked[self.order(data, masked)[:k]]
                out[b, pick] = sample_categorical(p[b, pick, :mask], rng.random(k))
        return out


@PREDICTORS.register("probe-left-to-right")
class LeftToRight(_Ordered):
    def order(self, data, masked):
        return np.arange(len(masked))


@PREDICTORS.register("probe-confidence")
class Confidence(_Ordered):
    def order(self, data, masked):
        return np.argsort(-data.max(-1), kind="stable")


def judged(tokens, tokenizer_config) -> dict:
    return {
        "ar_judged_bpc": judge_samples("default", {"x": tokens}, tokenizer_config)["x"],
        "token_entropy_bits": token_entropy(tokens),
    }


@torch.no_grad()
def ar_samples(folder: str, n: int, length: int, seed: int) -> np.ndarray:
    """T = 1 ancestral samples from BOS, as the AR model was trained (random windows after BOS)."""
    net, _, _, _, tok = load_model_dir(folder)
    vocab = tok.vocab_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1), vocab, dtype=torch.long)
    for _ in range(length):
        logits = net(x, torch.zeros(n))[:, -1, :vocab].double()
        x = torch.cat([x, torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)], 1)
    return x[:, 1:].numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other-ar", required=True, help="an AR model folder other than the judge")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sampler = SEDDSampler(threads=1)
    tokenizer_config = sampler.config["tokenizer"]
    out = {"samples": args.samples, "length": 256, "steps": 256, "seed": args.seed, "orders": {}}
    for name, predictor in (("random", "analytic"), ("left_to_right", "probe-left-to-right"),
                            ("confidence", "probe-confidence")):  # fmt: skip
        start = time.perf_counter()
        config = SamplingConfig(num_samples=args.samples, length=256, steps=256, seed=args.seed, predictor=predictor)
        tokens = sampler.sample_tokens(config)
        out["orders"][name] = judged(tokens, tokenizer_config) | {"seconds": time.perf_counter() - start}
        out["orders"][name]["first_sample"] = sampler.tokenizer.decode(tokens[0].tolist())
        if name == "random":
            drawn = tokens
    validation = validation_sequences(sampler.config, sampler.tokenizer, None)[: args.samples, :256]
    out["self_bound_bpc"] = self_judge(sampler, {"samples": drawn, "validation": validation}, n_times=16)
    out["validation"] = judged(validation, tokenizer_config)
    other = ar_samples(args.other_ar, args.samples, 256, args.seed)
    out["other_ar"] = {"model": args.other_ar} | judged(other, tokenizer_config)
    out["other_ar"]["self_judged_bpc"] = judge_samples(args.other_ar, {"x": other}, tokenizer_config)["x"]
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "orders"}, indent=2))
    print({name: round(row["ar_judged_bpc"], 3) for name, row in out["orders"].items()})


if __name__ == "__main__":
    main()
