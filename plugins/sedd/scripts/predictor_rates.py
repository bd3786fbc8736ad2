"""Samples/s of the shipped int8 artifact with each predictor, the draws alternated (remdm, plain,
remdm, plain, ...) in one process so that changes of the machine's load hit both alike: 8 samples
of 256 characters at 256 steps, seed 1234, 1 thread, as `engine bench sedd` draws them. For the
model card's "A cheaper step". Prints JSON.

    python scripts/predictor_rates.py [--rounds N]

A timing on this machine at the time: it moves with the load (other jobs on the cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

PREDICTORS = ("remdm", "analytic")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=4, help="draws of each predictor")
    a = p.parse_args()

    from engine_sedd.component import DEFAULT_ARTIFACT

    import engine
    from engine.interfaces import SamplingConfig

    sampler = engine.load_artifact(DEFAULT_ARTIFACT, provider="cpu", threads=1)
    rates: dict[str, list[float]] = {name: [] for name in PREDICTORS}
    for _ in range(a.rounds):
        for name in PREDICTORS:
            config = SamplingConfig(num_samples=8, length=256, steps=256, seed=1234, predictor=name)
            start = time.perf_counter()
            sampler.sample(config)
            rates[name].append(config.num_samples / (time.perf_counter() - start))
    medians = {name: statistics.median(v) for name, v in rates.items()}
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "artifact": str(DEFAULT_ARTIFACT.name),
                "samples_per_s_runs": rates,
                "samples_per_s_median": medians,
                "remdm_over_plain": medians["remdm"] / medians["analytic"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
