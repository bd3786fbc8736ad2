#!/bin/bash
# Every number in MODEL_CARD.md comes from one of these targets; each writes its output to
# scripts/results/ (committed), so `git diff scripts/results` after a rerun shows what moved.
#
#   bash plugins/sedd/scripts/card_numbers.sh TARGET [TARGET ...]     (no target: list them)
#
# Since the int8 artifact ships, `engine bench sedd` times the int8 export by default: the
# targets of earlier runs that had no int8 rows pass `--quantize none`.
# Run them one at a time on 1 thread (under `nice -n 19` on a shared machine). The
# likelihoods, samples, token agreement and network evaluation counts are deterministic at
# 1 thread (seeded); samples/s, step times and the wall times of `engine sample` depend on
# the machine's load and move between runs.
# Weights of earlier defaults come out of git history into runs/ (git-ignored).
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
PY=${PYTHON:-python}
R=scripts/results
export ENGINE_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$R" runs

ROOT=$(git rev-parse --show-toplevel)
# the RADD default of 2026-12-02 (2,500 fp32 steps) and the AR baseline of its day (e256870's),
# replaced by the bf16 runs of scripts/train_radd_bf16.sh
RADD_COMMIT=4fce870
# the SEDD-parametrised default of 2026-11-26 (2,500 steps), replaced by RADD in 4fce870
SEDD_COMMIT=e256870
# the first default and AR baseline (1,000 steps), replaced in e256870
FIRST_COMMIT=f162e8f

from_git() { # from_git COMMIT WEIGHTS_NAME DEST: a model folder as committed at COMMIT
  mkdir -p "$3"
  for f in config.json model.safetensors; do
    git -C "$ROOT" show "$1:plugins/sedd/engine_sedd/weights/$2/$f" > "$3/$f"
  done
}
ar_2500() { from_git $RADD_COMMIT ar_baseline runs/ar_2500; } # the judge of the earlier rows
radd_2500() { from_git $RADD_COMMIT default runs/radd_2500; }
sedd_2500() { from_git $SEDD_COMMIT default runs/sedd_2500; }

# infill prompt of the card and of `engine demo sedd`
PREFIX="ROMEO:
"
SUFFIX="

JULIET:
Ay me!"

samples() { # samples MODEL NAME [FLAGS]: the card's samples of MODEL ("" for the default) and their wall times (process start included)
  for s in 16 64 256; do
    /usr/bin/time -f %e -o $R/${2}sample_$s.time \
      $E --json --quiet sample sedd ${1:+--model $1} $3 --steps $s --length 256 --num-samples 2 --seed 0 --threads 1 > $R/${2}sample_$s.json
  done
  $E --json --quiet sample sedd ${1:+--model $1} $3 --steps 64 --length 200 --num-samples 2 --seed 1 --threads 1 \
    --prefix "$PREFIX" --suffix "$SUFFIX" > $R/${2}infill.json
}
BENCH_ARGS="bench sedd --threads 1 --eval-seqs 128 --eval-times 4"
# every bench and sample before "Remasking" drew with the analytic step (then the default): their targets say so
PLAIN="--predictor analytic"
BENCH="$BENCH_ARGS $PLAIN"
bound_runs() { # bound_runs RUN...: each run's training record and its bound (full split, 8 t, like eval)
  for run in "$@"; do
    cp runs/$run/model/config.json $R/${run}_config.json
    $E --json --quiet eval sedd --model runs/$run/model --times 8 --threads 1 > $R/${run}_eval.json
  done
}
average() { # average MODEL_A MODEL_B OUT: the weights' mean of two models from one start, as runs/OUT/model
  $PY scripts/average_models.py $1 $2 -o runs/$3/model
}
bound_ar() { # bound_ar RUN: an AR run's training record and its exact bits/char (full split), beside the default
  cp runs/$1/model/config.json $R/$1_config.json
  $E --json --quiet eval sedd --ar runs/$1/model --times 8 --threads 1 > $R/$1_eval.json
}

TARGETS="eval samples bench derived radd-2500-config eval-radd-2500 samples-radd-2500 bench-radd-2500 int8-radd-2500 eval-sedd eval-1000 bench-sedd-cached bench-sedd-nocache bench-sedd bf16 sedd-config bf16-run bench-7bit bench-zen4 eval-exports time-sampling b64-int8 bench-shipped bench-quiet bench-quiet-speed second-budget bench-second-budget temperature samples-temperature later-budgets bench-later-budgets fifth-budget bench-fifth-budget ar-dropout ar-dropout-cont seed-check sixth-budget bench-sixth-budget seventh-budget ar-weight-decay steps-beyond-length bench-seventh-budget eighth-budget average-probe eighth-budget-average bench-eighth-budget bench-eighth-budget-mean ninth-budget bench-ninth-budget tenth-budget bench-tenth-budget eleventh-budget bench-eleventh-budget samples-gap bench-self-bound wide-pilot remasking-tune remasking-confirm bench-remasking bench-remasking-plain remasking-late remasking-confirm-late bench-remasking-late samples-remasking export-step-timing bench-cheaper-step bench-repeats predictor-rates output-rows-ab bench-output-rows bench-default"
target() {
  case "$1" in
  eval) # likelihood table: the default and the AR baseline (full validation split, 8 t per sequence)
    $E --json --quiet eval sedd --ar default --times 8 --threads 1 > $R/eval.json ;;
  samples) # the default's samples shown in the card
    samples "" "" ;;
  bench) # speed and quality vs steps, fp32 and dynamic-int8 exports, judged by the AR baseline
    $E --json --quiet $BENCH --quantize int8 > $R/bench.json ;;
  bench-remasking) # "Remasking": the same with remdm at cap 0.1 throughout (the first stage's choice)
    $E --json --quiet $BENCH_ARGS --predictor remdm --remask 0.1 --remask-start 1 --quantize int8 > $R/bench_remasking.json ;;
  bench-remasking-late) # "Remasking", second stage: the same with remdm at its defaults (cap 0.2 from t = 0.25; it
    # ran as the then-default sampler, with bench-remasking's command, its output and when-file renamed after)
    $E --json --quiet $BENCH_ARGS --predictor remdm --quantize int8 > $R/bench_remasking_late.json ;;
  export-step-timing) # "A cheaper step": one evaluation, rotary's pairs interleaved against in halves
    $PY scripts/export_step_timing.py --rounds 10 > $R/export_step_timing.json ;;
  bench-cheaper-step) # "A cheaper step": remdm at its defaults on the export with rotary in halves, twice, the plain step between
    $E --json --quiet $BENCH_ARGS --predictor remdm --quantize int8 > $R/bench_cheaper_step_1.json
    $E --json --quiet $BENCH --quantize int8 > $R/bench_cheaper_step_plain.json
    $E --json --quiet $BENCH_ARGS --predictor remdm --quantize int8 > $R/bench_cheaper_step_2.json ;;
  bench-repeats) # "A cheaper step": remdm, then the plain step, each 256-step draw timed 5 times (medians; no bpc rows)
    $E --json --quiet $BENCH_ARGS --predictor remdm --quantize int8 --steps 256 --repeats 5 --skip-bpc > $R/bench_repeats_remdm.json
    $E --json --quiet $BENCH --quantize int8 --steps 256 --repeats 5 --skip-bpc > $R/bench_repeats_plain.json ;;
  predictor-rates) # "A cheaper step": the shipped int8 artifact, remdm and the plain step alternated, 6 draws each
    $PY scripts/predictor_rates.py --rounds 6 > $R/predictor_rates.json ;;
  output-rows-ab) # "Output rows": the artifact before output rows (restored from git) and the shipped one, alternated
    mkdir -p runs/artifact-before-rows
    for f in manifest.json score_net.onnx; do
      git show 2e3ff8c:plugins/sedd/engine_sedd/artifacts/default/$f > runs/artifact-before-rows/$f
    done
    $PY scripts/predictor_rates.py --rounds 3 --artifact runs/artifact-before-rows \
      --artifact engine_sedd/artifacts/default > $R/output_rows_ab.json ;;
  bench-output-rows) # "Output rows": remdm at its defaults on the export with output rows, twice, the plain step between
    $E --json --quiet $BENCH_ARGS --predictor remdm --quantize int8 > $R/bench_output_rows_1.json
    $E --json --quiet $BENCH --quantize int8 > $R/bench_output_rows_plain.json
    $E --json --quiet $BENCH_ARGS --predictor remdm --quantize int8 > $R/bench_output_rows_2.json ;;
  bench-default) # "Output rows": the bench as a user runs it, the default predictor, the bound on the whole validation split at 8 t
    $E --json --quiet bench sedd --threads 1 --eval-times 8 > $R/bench_default.json ;;
  bench-remasking-plain) # "Remasking": the plain step on the same machine, right after bench-remasking
    $E --json --quiet $BENCH --quantize int8 > $R/bench_remasking_plain.json ;;
  bench-7bit) # the same after dynamic int8 moved to 7-bit weights (run on an AVX2 AMD EPYC)
    $E --json --quiet $BENCH --quantize int8 > $R/bench_int8_7bit.json ;;
  time-sampling) # stratified against independent t at an equal, short budget (rule: MODEL_CARD.md), runs made by
    #   STEPS=1500 OUT=runs/ts_uniform bash scripts/train_radd_bf16.sh
    #   STEPS=1500 OUT=runs/ts_stratified bash scripts/train_radd_bf16.sh --time-sampling stratified
    for arm in uniform stratified; do
      cp runs/ts_$arm/model/config.json $R/ts_${arm}_config.json
      $E --json --quiet eval sedd --model runs/ts_$arm/model --times 8 --threads 1 > $R/ts_${arm}_eval.json
    done ;;
  eval-exports) # the bound of the shipped fp32 export and of its dynamic-int8 export (issue 15), the same
    # ELBO code and validation draws as eval, the network on onnxruntime
    # (since the shipped artifact is the int8 export, both are exported here: it must equal runs/sedd-int8)
    $E export sedd --force -o runs/sedd-fp32
    $E export sedd --quantize int8 --force -o runs/sedd-int8
    cmp runs/sedd-int8/score_net.onnx engine_sedd/artifacts/default/score_net.onnx
    $E --json --quiet eval sedd --artifact runs/sedd-fp32 --times 8 --threads 1 > $R/eval_export_fp32.json
    $E --json --quiet eval sedd --artifact runs/sedd-int8 --times 8 --threads 1 > $R/eval_export_int8.json ;;
  b64-int8) # 64 samples per draw at 256 steps, fp32 and int8 exports judged by the AR baseline (the spread of
    # the 8-sample figures); the bound rows on 16 sequences only
    $E --json bench sedd --steps 256 --batch 64 --eval-seqs 16 --eval-times 1 --quantize int8 --threads 1 \
      > $R/bench_b64_int8.json ;;
  bench-shipped | bench-quiet | bench-second-budget | bench-later-budgets | bench-fifth-budget | bench-sixth-budget | bench-seventh-budget | bench-eighth-budget \
  | bench-eighth-budget-mean | bench-ninth-budget | bench-tenth-budget | bench-eleventh-budget) # the bench as it runs with no flag
    # (fp32 and the shipped int8 export), written to bench_<name>.json: bench-shipped once the int8 artifact
    # shipped; bench-quiet again on 2026-12-04's machine (an AMD EPYC reporting CPU family 26, Zen 5);
    # bench-second-budget, bench-later-budgets, bench-fifth-budget on the default installed from runs/radd_cont,
    # runs/radd_cont3, runs/radd_cont4; bench-sixth-budget on the default installed from runs/radd_d01;
    # bench-seventh-budget on the default (and AR baseline) after the seventh budget's rule; bench-eighth-budget
    # on the default installed from runs/radd_wd01_b, bench-eighth-budget-mean from runs/radd_wd01_bc (the mean);
    # bench-ninth-budget, bench-tenth-budget, bench-eleventh-budget after those budgets' rules
    name=${1#bench-}
    $E --json --quiet $BENCH > $R/bench_${name//-/_}.json ;;
  bench-quiet-speed) # the timings of bench-quiet once more, right after it (no bits-per-character rows)
    $E --json --quiet $BENCH --skip-bpc > $R/bench_quiet_speed.json ;;
  second-budget) # "A second budget": the rule's measure of the continued pair (scripts/continue_default.sh ->
    # runs/radd_cont, runs/ar_cont), the same sequences and t strata as eval, and their training records
    for run in radd_cont ar_cont; do cp runs/$run/model/config.json $R/${run}_config.json; done
    $E --json --quiet eval sedd --model runs/radd_cont/model --ar runs/ar_cont/model --times 8 --threads 1 \
      > $R/cont_eval.json ;;
  later-budgets) # "A third and fourth budget": the rule's measure of runs/radd_cont2 (2,000 steps from the second
    # budget's model) and runs/radd_cont3 (6,000 from radd_cont2), the same sequences and t strata as eval
    bound_runs radd_cont2 radd_cont3 ;;
  fifth-budget) # "A fifth budget": the same for runs/radd_cont4 (8,000 steps from the fourth budget's model)
    bound_runs radd_cont4 ;;
  sixth-budget) # "A sixth budget at dropout 0.2": runs/radd_d02 and its dropout-0.1 control runs/radd_d01
    bound_runs radd_d02 radd_d01 ;;
  seventh-budget) # "A seventh budget with weight decay": runs/radd_wd01 (6,000 steps from the default, weight decay 0.1)
    bound_runs radd_wd01 ;;
  eighth-budget) # "An eighth budget": runs/radd_wd01_b (6,000 steps from the seventh budget's model, weight decay 0.1)
    bound_runs radd_wd01_b ;;
  ninth-budget) # "A ninth budget": runs/radd_wd01_d (6,000 steps from the eighth budget's mean, weight decay 0.1)
    bound_runs radd_wd01_d ;;
  tenth-budget) # "A tenth budget": runs/radd_wd01_e (6,000 steps from the ninth budget's run, weight decay 0.1),
    # and the mean of its weights with the ninth's (the chain's last two ends), runs/radd_wd01_ed
    bound_runs radd_wd01_e; average runs/radd_wd01_e/model runs/radd_wd01_d/model radd_wd01_ed; bound_runs radd_wd01_ed ;;
  eleventh-budget) # "An eleventh budget": runs/radd_wd01_f (6,000 steps from the tenth budget's mean, weight decay 0.1)
    bound_runs radd_wd01_f ;;
  average-probe) # "Averaging two runs": the sixth budget's two runs from one start (dropout 0.1 and 0.2), averaged
    average runs/radd_d01/model runs/radd_d02/model radd_d01_d02; bound_runs radd_d01_d02 ;;
  eighth-budget-average) # "Averaging two runs": the eighth budget's second run (seed 9), the mean of both, and
    # the AR baseline's mean with its second-budget continuation
    average runs/radd_wd01_b/model runs/radd_wd01_c/model radd_wd01_bc; bound_runs radd_wd01_c radd_wd01_bc
    average engine_sedd/weights/ar_baseline runs/ar_cont/model ar_baseline_cont; bound_ar ar_baseline_cont ;;
  ar-weight-decay) # "A seventh budget with weight decay": runs/ar_wd01 (the AR baseline's recipe, weight decay 0.1)
    bound_ar ar_wd01 ;;
  ar-dropout-cont) # "A fifth budget": runs/ar_d02_cont (4,000 steps from runs/ar_d02), the AR beside the default
    bound_ar ar_d02_cont ;;
  seed-check) # "A fifth budget": the fifth and fourth budgets' bounds again with other noise draws (seed 1)
    $E --json --quiet eval sedd --model runs/radd_cont4/model --times 8 --threads 1 --seed 1 > $R/seed1_radd_cont4_eval.json &
    fifth=$!
    $E --json --quiet eval sedd --model runs/radd_cont3/model --times 8 --threads 1 --seed 1 > $R/seed1_radd_cont3_eval.json
    wait $fifth ;;
  ar-dropout) # "The AR baseline's regularisation search": runs/ar_d02 (dropout 0.2), the AR beside the default
    bound_ar ar_d02 ;;
  samples-temperature) # "Temperature": the card's 256-step samples again at temperature 0.8
    $E --json --quiet sample sedd $PLAIN --steps 256 --length 256 --num-samples 2 --seed 0 --threads 1 --temperature 0.8 \
      > $R/sample_256_t0.8.json ;;
  temperature) # "Temperature": the default's samples at T = 1, 0.9, 0.8, 0.7, judged by the AR baseline, with
    # their token entropy (16 samples per draw; the bound rows on 32 sequences only, unchanged by T)
    for t in 1.0 0.9 0.8 0.7; do
      $E --json --quiet bench sedd $PLAIN --threads 1 --steps 64,256 --batch 16 --eval-seqs 32 --eval-times 1 \
        --quantize none --temperature $t > $R/bench_temperature_$t.json
    done ;;
  steps-beyond-length) # "More steps than characters": 256, 1,024 and 4,096 steps for 256 characters at T = 1, judged
    # by the AR baseline (16 samples per draw; the bound rows on 32 sequences only)
    $E --json --quiet bench sedd $PLAIN --threads 1 --steps 256,1024,4096 --batch 16 --eval-seqs 32 --eval-times 1 \
      --quantize none > $R/bench_steps_beyond_length.json ;;
  bench-zen4) # the same on an AMD EPYC with AVX-512 VNNI and BF16
    $E --json --quiet $BENCH --quantize int8 > $R/bench_zen4.json ;;
  radd-2500-config) # the training records of the RADD default and AR baseline of 4fce870
    for m in default:radd_2500 ar_baseline:ar_2500; do
      git -C "$ROOT" show $RADD_COMMIT:plugins/sedd/engine_sedd/weights/${m%%:*}/config.json > $R/${m##*:}_config.json
    done ;;
  eval-radd-2500) # History and "Changes": the RADD default of 4fce870 against its AR baseline
    radd_2500; ar_2500
    $E --json --quiet eval sedd --model runs/radd_2500 --ar runs/ar_2500 --times 8 --threads 1 > $R/radd_2500_eval.json ;;
  samples-radd-2500) # its samples (shown in the card until the bf16 default)
    radd_2500; samples runs/radd_2500 radd_2500_ "$PLAIN" ;;
  bench-radd-2500) # "Changes" row 3: its bench, judged by its AR baseline
    radd_2500; ar_2500
    $E --json --quiet $BENCH --model runs/radd_2500 --ar runs/ar_2500 --quantize none > $R/radd_2500_bench.json ;;
  int8-radd-2500) # its dynamic-int8 export beside fp32 on onnxruntime (16/64/256 steps, its samples judged)
    radd_2500; ar_2500
    $E --json --quiet bench sedd --model runs/radd_2500 --ar runs/ar_2500 --quantize int8 --threads 1 > $R/radd_2500_int8_bench.json ;;
  bf16-run) # issue 12: RADD with bf16 autocast, dropout 0.1, 6,000 steps (scripts/train_radd_bf16.sh ->
    # runs/radd_bf16, the default since), measured before the AR baseline was retrained: judged by ar_2500
    ar_2500
    cp runs/radd_bf16/model/config.json $R/radd_bf16_config.json
    $E --json --quiet eval sedd --model runs/radd_bf16/model --ar runs/ar_2500 --times 8 --threads 1 > $R/radd_bf16_eval.json
    $E --json --quiet $BENCH --model runs/radd_bf16/model --ar runs/ar_2500 --quantize int8 > $R/radd_bf16_bench.json ;;
  eval-sedd) # likelihood table, SEDD row (the default until issue 12), same sequences and t strata
    sedd_2500; ar_2500
    $E --json --quiet eval sedd --model runs/sedd_2500 --ar runs/ar_2500 --times 8 --threads 1 > $R/sedd_2500_eval.json ;;
  eval-1000) # History: the 1,000-step default and AR baseline of f162e8f
    from_git $FIRST_COMMIT default runs/sedd_1000
    from_git $FIRST_COMMIT ar_baseline runs/ar_1000
    $E --json --quiet eval sedd --model runs/sedd_1000 --ar runs/ar_1000 --times 8 --threads 1 > $R/first_1000_eval.json ;;
  bench-sedd-cached) # "Changes" table row 2: the SEDD model with the new sampler, 256 steps
    sedd_2500; ar_2500
    $E --json --quiet bench sedd --model runs/sedd_2500 --ar runs/ar_2500 --threads 1 --steps 256 --skip-bpc --quantize none > $R/default_bench256.json ;;
  bench-sedd-nocache) # "Changes" table row 1: network evaluations per sequence without the cache
    sedd_2500; ar_2500
    $E --json --quiet bench sedd --model runs/sedd_2500 --ar runs/ar_2500 --no-cache --threads 1 --steps 256 --skip-bpc --quantize none > $R/sedd_2500_bench256_nocache.json ;;
  bench-sedd) # History and "Changes" row 1: the SEDD default's bench (scripts/bench_result_default.json
    # was written by this command at engine 0.1.0, whose sampler had no cache; --no-cache is that sampler)
    sedd_2500; ar_2500
    $E --json --quiet $BENCH --model runs/sedd_2500 --ar runs/ar_2500 --no-cache --quantize none > scripts/bench_result_default.json ;;
  bf16) # bf16 autocast against fp32 training steps (20 each, alternated)
    $PY scripts/bf16_step_timing.py --steps 20 > $R/bf16_step_timing.json ;;
  sedd-config) # the SEDD default's training record (validation history, seconds), as committed then
    git -C "$ROOT" show $SEDD_COMMIT:plugins/sedd/engine_sedd/weights/default/config.json > $R/sedd_2500_config.json ;;
  samples-gap) # "Where the samples' gap lies": unmasking orders, the default's bound on its own samples, and an
    # independent AR model's samples (runs/ar_wd01, "A seventh budget with weight decay") under the judge
    $PY scripts/samples_gap.py --other-ar runs/ar_wd01/model --samples 32 -o $R/samples_gap.json ;;
  bench-self-bound) # "Where the samples' gap lies": the bench's sample_self_bound_bpc at 16 / 64 / 256 steps on the
    # default (fp32 rows only; the samples are the torch draws the AR judges)
    $E --json --quiet $BENCH --quantize none > $R/bench_self_bound.json ;;
  wide-pilot) # "A wider network: a pilot": runs/radd_wide's validation history (its checkpoint; the rule stopped it
    # at step 1,500) against the first 6,000-step default's at the same steps
    $PY scripts/run_history.py runs/radd_wide/checkpoint.pt $R/radd_bf16_config.json -o $R/radd_wide_pilot.json ;;
  remasking-tune) # "Remasking": the plain step (eta 0) and remdm at four caps, seeds 7 and 8, 16 samples each, 256 steps
    for seed in 7 8; do
      $PY scripts/remasking.py --eta 0,0.02,0.05,0.1,0.2 --seeds $seed --samples 16 -o $R/remasking_tune_seed$seed.json
    done ;;
  remasking-confirm) # "Remasking": the rule's draw, the gap probe's seed and size, plain step against the chosen cap
    # (the two draws ran side by side, one per core)
    $PY scripts/remasking.py --eta 0 --seeds 1234 --samples 32 -o $R/remasking_confirm_plain.json
    $PY scripts/remasking.py --eta 0.1 --seeds 1234 --samples 32 -o $R/remasking_confirm.json ;;
  remasking-late) # "Remasking", second stage: remasking only once t <= start, seeds 7 and 8 (one per core)
    for seed in 7 8; do
      $PY scripts/remasking.py --eta 0.1 --start 0.15,0.25,0.35 --seeds $seed --samples 16 -o $R/remasking_late_seed$seed.json
      $PY scripts/remasking.py --eta 0.2 --start 0.25 --seeds $seed --samples 16 -o $R/remasking_late_cap02_seed$seed.json
    done ;;
  remasking-confirm-late) # "Remasking", second stage: the rule's draw for the chosen start and cap
    $PY scripts/remasking.py --eta 0.2 --start 0.25 --seeds 1234 --samples 32 -o $R/remasking_confirm_late.json ;;
  samples-remasking) # "Samples": the card's 256-step samples again with remasking (remdm at its defaults)
    /usr/bin/time -f %e -o $R/sample_256_remdm.time \
      $E --json --quiet sample sedd --predictor remdm --steps 256 --length 256 --num-samples 2 --seed 0 --threads 1 \
      > $R/sample_256_remdm.json ;;
  derived) # every number the card derives (training table, s/step, differences, ratios, sizes, counts)
    $PY scripts/card_derived.py > $R/card_derived.json ;;
  *) unknown_target "$1" ;;
  esac
}

. "$ROOT/scripts/card_targets.sh"
run_targets "$@"
