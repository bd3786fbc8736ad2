#!/bin/bash
# Issue 12: does the default pair gain from a second budget? Both shipped models continue from their
# own weights (`--model`: a warm start, fresh optimiser) with the recipe of train_radd_bf16.sh (bf16,
# dropout 0.1, batch 16, one thread), another data seed, peak lr 5e-4 (half the first run's), cosine
# over STEPS. Writes runs/radd_cont and runs/ar_cont; installing them is a separate, measured decision
# (rule in MODEL_CARD.md, "A second budget"). Run both at once, one core each:
#   OBJECTIVE=sedd bash scripts/continue_default.sh & OBJECTIVE=ar bash scripts/continue_default.sh
# Resume an interrupted run: the same command with --resume. FROM=FOLDER continues another model of the
# same configuration (a later budget from an earlier continuation); LR sets the peak learning rate,
# DROPOUT the dropout (0.1).
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
case ${OBJECTIVE:-sedd} in
  sedd) FROM=${FROM:-engine_sedd/weights/default} OUT=${OUT:-runs/radd_cont} ;;
  ar) FROM=${FROM:-engine_sedd/weights/ar_baseline} OUT=${OUT:-runs/ar_cont} ;;
esac
mkdir -p runs
$E --json train sedd --model $FROM --objective ${OBJECTIVE:-sedd} --parametrisation radd -o $OUT \
  --length 256 --hidden 256 --blocks 4 --heads 4 --cond 128 --batch 16 --lr ${LR:-5e-4} --warmup 100 --ema 0.999 \
  --eval-every 500 --eval-seqs 64 --eval-times 4 --ckpt-every 100 --threads 1 --seed 1 \
  --bf16 --dropout ${DROPOUT:-0.1} --steps ${STEPS:-4000} "$@"
