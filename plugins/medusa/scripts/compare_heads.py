"""Compare heads folders on the same measures (the model card's head table):
teacher-forced top-1/top-5 on the ShareGPT held-back split, and rank accuracy on the base's own
greedy answers to dev prompts (the calibration prompts 41-48 and the benchmark's first 10).

    python scripts/compare_heads.py OUT.json NAME=HEADS_DIR [NAME=HEADS_DIR ...]

Rows already in OUT.json under other names are kept, so a new run can be added alone.
"""

import json
import sys
import time
from pathlib import Path

import torch
from engine_medusa.base import DEFAULT_BASE, canonical_base_name
from engine_medusa.data import heldout_samples
from engine_medusa.torch_path import MedusaDecoder
from engine_medusa.training import heldout_accuracy
from engine_medusa.tuning import calibration_prompts, rank_accuracy

torch.set_num_threads(1)
out, pairs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
dev = calibration_prompts(None, 48)
sets = {"dev_bench_1_10": dev[:10], "dev_calibration_41_48": dev[40:48]}
report = json.loads(Path(out).read_text()) if Path(out).is_file() else {}
for name, folder in pairs:
    t0 = time.time()
    dec = MedusaDecoder(heads=folder, tree=[], heads_dtype="float32")
    samples = heldout_samples(dec.model, dec.codec, canonical_base_name(DEFAULT_BASE))
    row = {"heads": folder, "sharegpt_heldout": heldout_accuracy(dec.heads, samples)}
    for key, prompts in sets.items():
        _, raw = rank_accuracy(dec, prompts, 64)
        row[key] = {k: [round(x, 4) for x in raw[k]] for k in ("top1", "top5")} | {"positions": raw["positions"]}
    row["seconds"] = round(time.time() - t0, 1)
    report[name] = row
    print(name, json.dumps(row), flush=True)
with open(out, "w") as f:
    json.dump(report, f, indent=1)
