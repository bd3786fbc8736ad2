"""Training-step time with bf16 autocast (`engine train sedd --bf16`) against fp32, for the
model card's "Changes" section: the default recipe (RADD network, batch 16 x 256 characters,
1 thread), N timed steps each, alternated (fp32 step, bf16 step, ...) so that changes of the
machine's load hit both alike; one untimed warm-up step each first. Both trainers start from
the same seed; the losses are not compared. Prints JSON.

    python scripts/bf16_step_timing.py [--steps N]

A timing on this machine at the time: it moves with the load (other jobs on the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20, help="timed steps per precision")
    a = p.parse_args()

    import torch
    from engine_sedd.options import TrainOptions
    from engine_sedd.training import DEFAULT_DATA, Trainer

    def trainer(bf16: bool, out: str) -> Trainer:
        # scripts/train_radd.sh's recipe (the model shape and batch are what a step costs)
        args = TrainOptions(
            data=str(DEFAULT_DATA),
            objective="sedd",
            parametrisation="radd",
            length=256,
            hidden=256,
            blocks=4,
            heads=4,
            cond=128,
            batch=16,
            lr=1e-3,
            warmup=100,
            ema=0.999,
            steps=2500,
            bf16=bf16,
            out=out,
            seed=0,
            threads=1,
        )
        t = Trainer(args, log=lambda *_: None)
        t.net.train()
        return t

    with tempfile.TemporaryDirectory() as tmp:
        runs = {"fp32": trainer(False, f"{tmp}/fp32"), "bf16": trainer(True, f"{tmp}/bf16")}
        for t in runs.values():
            t.train_step()  # warm-up, not timed
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(a.steps):
            for name, t in runs.items():
                start = time.perf_counter()
                t.train_step()
                times[name].append(time.perf_counter() - start)
    mean = {k: statistics.mean(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "steps_each": a.steps,
                "mean_s": {k: round(v, 3) for k, v in mean.items()},
                "min_s": {k: round(v, 3) for k, v in low.items()},
                "speedup_mean": round(mean["fp32"] / mean["bf16"], 2),
                "speedup_min": round(low["fp32"] / low["bf16"], 2),
                "times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "finished_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
