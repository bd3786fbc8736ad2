"""Share of the base's own tokens on the ShareGPT held-back split that the shipped heads' draft
vocabulary holds (MODEL_CARD.md). Needs the held-back split's cache (engine eval medusa --heldout).

    python scripts/draft_coverage.py > scripts/results/draft_coverage.json
"""

import json

import numpy as np
from engine_medusa.base import DEFAULT_BASE, canonical_base_name
from engine_medusa.component import DEFAULT_HEADS
from engine_medusa.data import TEACHER_LIMITS, load_shards, teacher_folder
from safetensors.numpy import load_file

subset = load_file(str(DEFAULT_HEADS / "heads.safetensors"))["vocab_subset"]
folder = teacher_folder(canonical_base_name(DEFAULT_BASE), "heldout", 0, *TEACHER_LIMITS.values())
tokens = np.concatenate([s[3] for s in load_shards(folder)])
inside = np.isin(tokens, subset)
print(json.dumps({"draft_vocab": len(subset), "positions": len(tokens), "coverage": round(float(inside.mean()), 4)}))
