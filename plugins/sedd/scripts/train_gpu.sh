#!/bin/bash
# Issue 12 on one CUDA GPU: the default pair's recipe (scripts/train_radd_bf16.sh: same model size,
# bf16 autocast, dropout 0.1, cosine over the run) with a larger batch and as many steps as fit in
# MINUTES per run: RADD, then the AR baseline with the same steps (the same budget). A 200-step
# probe measures the step time first, so the cosine schedule ends where the run ends.
# Trains only (runs/radd_gpu, runs/ar_gpu); installing a default stays a separate, measured decision.
# Resume an interrupted run with its own command plus --resume (same STEPS and BATCH).
# SIZE sets the network (default the default's; MODEL_CARD.md "A wider network: a pilot" asks for
# SIZE="--hidden 384 --blocks 6 --heads 6"), OUT_SUFFIX names its runs (runs/radd_gpu$OUT_SUFFIX).
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-64}
MINUTES=${MINUTES:-5}
SIZE=${SIZE:---hidden 256 --blocks 4 --heads 4}
MODEL="--length 256 $SIZE --cond 128 --bf16 --dropout 0.1 --seed 0"
mkdir -p runs
probe=$($E --json --quiet train sedd --parametrisation radd -o runs/gpu_probe $MODEL --batch $BATCH \
  --steps 200 --eval-every 1000000 --ckpt-every 1000000 --device $DEVICE)
STEPS=${STEPS:-$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(int(0.9 * $MINUTES * 60 * r['steps'] / r['seconds']))" "$probe")}
echo "probe: $probe; training $STEPS steps per run" >&2
COMMON="$MODEL --batch $BATCH --lr 1e-3 --warmup 200 --ema 0.999 --eval-every $(( (STEPS + 5) / 6 )) --eval-seqs 64 --eval-times 4 --ckpt-every 500 --steps $STEPS --device $DEVICE"
$E --json train sedd --objective sedd --parametrisation radd -o runs/radd_gpu${OUT_SUFFIX:-} $COMMON "$@"
$E --json train sedd --objective ar -o runs/ar_gpu${OUT_SUFFIX:-} $COMMON "$@"
