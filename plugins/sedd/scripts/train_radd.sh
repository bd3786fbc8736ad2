#!/bin/bash
# RADD (time-independent absorbing parametrisation, Ou et al. 2024) at the default model's budget:
# scripts/train_default.sh's SEDD recipe with --parametrisation radd (2500 steps of batch 16 x 256
# characters, one thread), then installed as the bundled default with its ONNX artifact.
# Resume an interrupted run with: bash scripts/train_radd.sh --resume
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
COMMON="--length 256 --hidden 256 --blocks 4 --heads 4 --cond 128 --batch 16 --lr 1e-3 --warmup 100 --ema 0.999 --eval-every 250 --eval-seqs 64 --eval-times 4 --ckpt-every 100 --threads 1 --seed 0 --steps ${STEPS:-2500}"
mkdir -p runs
$E --json train sedd --objective sedd --parametrisation radd -o runs/radd $COMMON "$@"
# install as the bundled default model, and the artifact the sampler runs without torch
rm -rf engine_sedd/weights/default
cp -r runs/radd/model engine_sedd/weights/default
$E --quiet export sedd --force -o engine_sedd/artifacts/default
