#!/bin/bash
# The SEDD-parametrised model (the default until issue 12) and the AR baseline with the same size,
# data and steps, trained side by side (one thread each); installs the AR baseline. The default
# model is RADD now: scripts/train_radd.sh trains and installs it.
set -e
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2500}
E=${ENGINE:-engine}
COMMON="--length 256 --hidden 256 --blocks 4 --heads 4 --cond 128 --batch 16 --lr 1e-3 --warmup 100 --ema 0.999 --eval-every 250 --eval-seqs 64 --eval-times 4 --ckpt-every 100 --threads 1 --seed 0 --steps $STEPS"
mkdir -p runs
$E --json train sedd --objective sedd -o runs/default_sedd $COMMON > runs/default_sedd.log 2>&1 &
SEDD=$!
$E --json train sedd --objective ar -o runs/default_ar $COMMON > runs/default_ar.log 2>&1 &
AR=$!
wait $SEDD
wait $AR
# install the AR baseline (runs/default_sedd/model stays a run folder)
rm -rf engine_sedd/weights/ar_baseline
mkdir -p engine_sedd/weights
cp -r runs/default_ar/model engine_sedd/weights/ar_baseline
