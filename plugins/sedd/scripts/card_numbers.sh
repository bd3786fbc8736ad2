#!/bin/bash
# Numbers for MODEL_CARD.md, run after scripts/train_default.sh (one job at a time).
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
$E --json --quiet eval sedd --ar default --times 8 --threads 1 > runs/card_eval.json 2> runs/card_eval.err
for s in 16 64 256; do
  $E --json --quiet sample sedd --steps $s --length 256 --num-samples 2 --seed 0 --threads 1 > runs/card_sample_$s.json
done
$E --json --quiet sample sedd --steps 64 --length 200 --num-samples 2 --seed 1 --threads 1 --prefix "ROMEO:
" --suffix "

JULIET:
Ay me!" > runs/card_infill.json
$E --json --quiet sample sedd --steps 64 --length 256 --num-samples 2 --seed 0 --threads 1 --predictor euler > runs/card_sample_euler64.json
$E --json --quiet bench sedd --threads 1 --eval-seqs 128 --eval-times 4 > runs/card_bench.json 2> runs/card_bench.err
echo done > runs/card_numbers.done
