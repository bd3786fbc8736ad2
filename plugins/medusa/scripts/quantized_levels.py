"""Medusa over a weight-only quantized base at MatMulNBits accuracy_level 0 (weights dequantized,
fp32 compute) and 4 (int8 compute): are its tokens the quantized base's own greedy tokens, and
how fast are both, on the first 4 dev prompts, 64 new tokens, 1 thread, the onnxruntime tree
tuned for the fp32 artifact (scripts/results/tune_tree_ort.json).

    python scripts/quantized_levels.py int4:0 int4:4 > scripts/results/quantized_levels.txt
"""

import json
import sys
import time
from pathlib import Path

from engine_medusa.data import DEV_PROMPTS
from engine_medusa.quantize import quantize_artifact

from engine.artifacts import load_artifact
from engine.interfaces import GenerationConfig
from engine.io.prompts import read_prompt_rows

art = Path("runs/art-default")
tree = json.loads(Path("scripts/results/tune_tree_ort.json").read_text())["choices"]
prompts = [r["prompt"] for r in read_prompt_rows(DEV_PROMPTS, 4)]
cfg = GenerationConfig(max_new_tokens=64)
for bits in sys.argv[1:]:
    name, level = bits.split(":")
    dest = Path(f"runs/art-{name}-level{level}")
    if not dest.exists():
        quantize_artifact(art, dest, name, accuracy_level=int(level))
    medusa = load_artifact(dest, provider="cpu", threads=1, tree=tree)
    greedy = load_artifact(dest, provider="cpu", threads=1, tree=[])
    row = {"same": 0, "med_tok": 0, "med_s": 0.0, "gre_tok": 0, "gre_s": 0.0, "steps": 0}
    for dec in (medusa, greedy):
        dec.generate(prompts[0], GenerationConfig(max_new_tokens=8))  # warm-up
    for p in prompts:
        runs = {}
        for key, dec in (("med", medusa), ("gre", greedy)):
            t = time.perf_counter()
            runs[key] = dec.generate(p, cfg)
            row[f"{key}_s"] += time.perf_counter() - t
            row[f"{key}_tok"] += len(runs[key].tokens)
        row["same"] += runs["med"].tokens == runs["gre"].tokens
        row["steps"] += runs["med"].stats.steps
    row |= {f"{k}_tps": row[f"{k}_tok"] / row[f"{k}_s"] for k in ("med", "gre")}
    print(bits, json.dumps(row), flush=True)
