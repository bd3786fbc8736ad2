#!/bin/bash
# Default model: absorbing SEDD then the AR baseline with the same size, data and steps.
set -e
cd /work/main/plugins/sedd
COMMON="--length 256 --hidden 256 --blocks 4 --heads 4 --cond 128 --batch 16 --lr 1e-3 --warmup 100 --ema 0.999 --eval-every 250 --eval-seqs 64 --eval-times 4 --ckpt-every 100 --threads 1 --seed 0"
timeout 70m /work/venv/bin/python -m engine_sedd.training --objective sedd --steps 1000 --max-minutes 60 --out runs/default_sedd $COMMON > runs/default_sedd.log 2>&1
STEPS=$(/work/venv/bin/python -c "import json;print(json.load(open('runs/default_sedd/model/config.json'))['training']['steps'])")
timeout 70m /work/venv/bin/python -m engine_sedd.training --objective ar --steps $STEPS --max-minutes 58 --out runs/default_ar $COMMON > runs/default_ar.log 2>&1
echo done > runs/train_default.done
# install as the bundled default model and AR baseline
rm -rf engine_sedd/weights/default engine_sedd/weights/ar_baseline
mkdir -p engine_sedd/weights
cp -r runs/default_sedd/model engine_sedd/weights/default
cp -r runs/default_ar/model engine_sedd/weights/ar_baseline
