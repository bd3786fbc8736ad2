"""Samples/s of the shipped int8 artifact (or of each ``--artifact``) with each predictor, the draws
alternated (remdm, plain, remdm, plain, ...; artifact by artifact within a round) in one process so that
changes of the machine's load hit all alike: 8 samples of 256 characters at 256 steps, seed 1234, 1
thread, as `engine bench sedd` draws them. For the model card's "A cheaper step" and "Output rows".
Prints JSON.

    python scripts/predictor_rates.py [--rounds N] [--artifact DIR --artifact DIR2 ...]

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
    p.add_argument("--artifact", action="append", help="an artifact to time (repeatable; default: the shipped one)")
    a = p.parse_args()

    from engine_sedd.component import DEFAULT_ARTIFACT

    import engine
    from engine.interfaces import SamplingConfig

    paths = a.artifact or [str(DEFAULT_ARTIFACT)]
    samplers = {path: engine.load_artifact(path, provider="cpu", threads=1) for path in paths}
    key = (lambda path, name: name) if len(paths) == 1 else (lambda path, name: f"{path}:{name}")
    rates: dict[str, list[float]] = {key(path, name): [] for name in PREDICTORS for path in paths}
    for _ in range(a.rounds):
        for name in PREDICTORS:
            config = SamplingConfig(num_samples=8, length=256, steps=256, seed=1234, predictor=name)
            for path, sampler in samplers.items():
                start = time.perf_counter()
                sampler.sample(config)
                rates[key(path, name)].append(config.num_samples / (time.perf_counter() - start))
    medians = {name: statistics.median(v) for name, v in rates.items()}
    out = {
        "machine": platform.processor() or platform.machine(),
        "artifact": [str(path) for path in paths] if a.artifact else str(DEFAULT_ARTIFACT.name),
        "samples_per_s_runs": rates,
        "samples_per_s_median": medians,
    }
    if len(paths) == 1:
        out["remdm_over_plain"] = medians["remdm"] / medians["analytic"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
