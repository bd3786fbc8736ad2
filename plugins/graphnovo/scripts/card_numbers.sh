#!/bin/bash
# Every number in MODEL_CARD.md comes from one of these targets; each writes its output to
# scripts/results/ (committed), so `git diff scripts/results` after a rerun shows what moved.
#
#   bash plugins/graphnovo/scripts/card_numbers.sh TARGET [TARGET ...]     (no target: list them)
#
# Run them one at a time on 1 thread (under `nice -n 19` on a shared machine). Recall,
# precision, node and graph statistics are deterministic; every spectra/s figure is a timing
# on this machine at the time and moves with its load (see the card). Training itself is not rerun here (75 CPU-minutes): its
# numbers are the training record in engine_graphnovo/weights/default/config.json.
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
PY=${PYTHON:-python}
R=scripts/results
export ENGINE_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$R" runs
ROOT=$(git rev-parse --show-toplevel)
V1_COMMIT=86b2417 # v1's weights and code (replaced by v2 in 1a5de66)

# the pruning grid on a dev split: dev_grid WEIGHTS OUTPUT_PREFIX [--dev-fold N]
dev_grid() {
  local weights=$1 out=$2
  shift 2
  for k in $PRUNE_GRID; do
    $E --json --quiet eval graphnovo --model "$weights" --threads 1 $V5_SEARCH --split dev "$@" \
      --prune-nodes $k > $R/$out$k.json
  done
}

# v1's tree goes outside the repository (so that no linter or test run finds a second copy of
# the code); its data path is ../shared/data of the tree, linked to the project's shared data
V1_DIR=${V1_DIR:-${TMPDIR:-/tmp}/graphnovo-v1-$V1_COMMIT}
v1_tree() {
  if [ ! -d "$V1_DIR/tree" ]; then
    mkdir -p "$V1_DIR/tree"
    git -C "$ROOT" archive $V1_COMMIT | tar -x -C "$V1_DIR/tree"
  fi
  ln -sfn "$(cd "$ROOT/.." && pwd)/shared" "$V1_DIR/shared"
}
V1_PATH="$V1_DIR/tree:$V1_DIR/tree/plugins/graphnovo"
V2_COMMIT=7b0892c # the last commit with v2 as the default (v3 replaced it after it)
V3_COMMIT=21c3a04 # the last commit with v3 as the default (v4 replaced it after it)
V4_COMMIT=dfbe0a4 # a commit with v4 as the default (the fine-tuning runs started from it)
DEFAULT=v5r3 # the default (v5 weights, pruning to 3 nodes per residue since 2026-12-06; v5k48: 48 nodes, 2026-12-03): names the files of eval, eval-beams, tune, bench
# (files of earlier defaults keep their version's name: eval_v3.json, bench_v3_beam5.json, ...)

WEIGHTS=plugins/graphnovo/engine_graphnovo/weights/default # the default weights, in the repository
V5_SEARCH="--fill-paths 2 --path-beam 2 --fill-beam 2 --path-length-bonus 2 --rescore-weight 80" # v5's search setting
PRUNE_GRID="0 24 32 48 64" # --prune-nodes K of the dev-split targets (tune_search's grid)
RESIDUE_GRID="2 2.5 3 3.5 4" # --prune-per-residue R of dev-per-residue (the card's rule)

# a former default's weights out of git (the code of today reads them: same input features);
# usage: old_weights COMMIT NAME, prints the folder
old_weights() {
  local dir="${TMPDIR:-/tmp}/graphnovo-$2-weights"
  mkdir -p "$dir"
  for f in config.json pathsearcher.safetensors seqfiller.safetensors; do
    git -C "$ROOT" show "$1:$WEIGHTS/$f" > "$dir/$f"
  done
  echo "$dir"
}

TARGETS="eval eval-beams tune prune headroom bench bench-repeat bench-ab int8 v1 v1-bench v1-config derived graphs budget versions v2-config v3-config v4-config v4-candidate node-ablation v4-equal-steps v5-finetune dev-prune dev-folds dev-per-residue"
target() {
  case "$1" in
  eval) # held-out table (the default's column), strata, graph statistics
    $E --json --quiet eval graphnovo --threads 1 > $R/eval_$DEFAULT.json ;;
  eval-beams) # diagnostic: the default at beams 5/5 and 20/20 on the held-out spectra
    for k in 5 20; do
      $E --json --quiet eval graphnovo --threads 1 --path-beam $k --fill-beam $k > $R/eval_${DEFAULT}_beam$k.json
    done ;;
  tune) # search-setting tables (bonus at beam 5, then beams 5/10/20, then paths x fragment-evidence
    # weight, then node pruning 0/24/32/48/64), 256 simulated spectra
    $PY scripts/tune_search.py > $R/tune_$DEFAULT.json ;;
  bench) # speed table: one run per beam, 60 held-out spectra
    for k in 5 10 20; do
      $E --json --quiet bench graphnovo --threads 1 --path-beam $k --fill-beam $k > $R/bench_${DEFAULT}_beam$k.json
    done ;;
  bench-repeat) # the default setting three times over all 153 held-out spectra (60 move too much)
    for i in 1 2 3; do
      $E --json --quiet bench graphnovo --threads 1 --limit 153 > $R/bench_${DEFAULT}_153_$i.json
    done ;;
  prune) # node pruning by the node head (--prune-nodes K): the held-out split at K = 24/32/48/64 (the
    # simulated side is the tune target's last stage), then 5 alternating bench runs of 153 spectra, off vs 32
    for k in 24 32 48 64; do
      $E --json --quiet eval graphnovo --threads 1 --prune-nodes $k > $R/eval_${DEFAULT}_prune$k.json
    done
    for i in 1 2 3 4 5; do
      for k in 0 32; do
        $E --json --quiet bench graphnovo --threads 1 --limit 153 --prune-nodes $k > $R/bench_${DEFAULT}_prune${k}_$i.json
      done
    done ;;
  headroom) # how often the labelled peptide is among the SeqFiller's precursor-matching candidates
    $PY scripts/candidate_headroom.py > $R/candidate_headroom.json ;;
  bench-ab) # 1 path at beam 10 against 2 paths at beam 5 (both with the default's rescoring), 7 runs
    # each over the 153 held-out spectra, alternating, for the median (single runs move by up to 40 %)
    for i in 1 2 3 4 5 6 7; do
      for s in "1 10" "2 5"; do
        set -- $s
        $E --json --quiet bench graphnovo --threads 1 --limit 153 --fill-paths $1 --path-beam $2 --fill-beam $2 \
          > $R/bench_ab_paths$1_$i.json
      done
    done ;;
  int8) # dynamic int8 table: 3 alternating bench runs per artifact, then the int8 eval
    $PY scripts/quantize_int8.py runs/artifact-int8 > /dev/null
    for i in 1 2 3; do
      $E --json --quiet bench graphnovo --threads 1 --artifact engine_graphnovo/artifacts/default > $R/int8_bench_fp32_$i.json
      $E --json --quiet bench graphnovo --threads 1 --artifact runs/artifact-int8 > $R/int8_bench_int8_$i.json
    done
    $E --json --quiet eval graphnovo --threads 1 --artifact runs/artifact-int8 > $R/eval_int8.json
    $PY - runs/artifact-int8 > $R/int8_sizes.json <<'EOF'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
files = json.loads((d / "manifest.json").read_text())["files"]
print(json.dumps({"onnx_bytes": sum(f["size"] for f in files.values()), "files": {k: f["size"] for k, f in files.items()}}, indent=2))
EOF
    ;;
  v1) # History (v1) and v1's column: v1's weights with v1's code (commit 86b2417)
    v1_tree
    PYTHONPATH=$V1_PATH $E eval graphnovo --json > $R/eval_v1.json 2> /dev/null
    PYTHONPATH=$V1_PATH $PY scripts/v1_measure.py tune > $R/tune_v1.json
    PYTHONPATH=$V1_PATH $PY scripts/v1_measure.py beams > $R/v1_beams_256.json ;;
  v1-bench) # v1's bench (60 held-out spectra, beams 5/5), v1's code
    v1_tree
    PYTHONPATH=$V1_PATH $E bench graphnovo --json --threads 1 > $R/bench_v1.json 2> /dev/null ;;
  v1-config) # v1's training record, as committed then
    git -C "$ROOT" show $V1_COMMIT:$WEIGHTS/config.json > $R/v1_config.json ;;
  graphs) # graph settings side by side: prefix stages, coverage, node precision, DP recall
    for set in dev heldout sim nist; do
      $PY scripts/graph_stages.py $set > $R/graph_stages_$set.json
    done ;;
  budget) # node budget 128/256/512 of the default artifact: graphs, recall, time per stage
    $PY scripts/node_budget.py engine_graphnovo/artifacts/default > $R/node_budget.json ;;
  v2-config) # v2's training record, as committed then
    git -C "$ROOT" show $V2_COMMIT:$WEIGHTS/config.json > $R/v2_config.json ;;
  v4-config) # v4's training record, as committed then
    git -C "$ROOT" show $V4_COMMIT:$WEIGHTS/config.json > $R/v4_config.json ;;
  v3-config) # v3's training record, as committed then
    git -C "$ROOT" show $V3_COMMIT:$WEIGHTS/config.json > $R/v3_config.json ;;
  versions) # v2, v2 on deisotoped peaks, v3: simulated (choice) and held-out (report)
    V2=$(old_weights $V2_COMMIT v2)
    $PY scripts/compare_versions.py "v2=$V2" "v2 on deisotoped peaks=$V2+deisotope" v3=$(old_weights $V3_COMMIT v3) \
      > $R/compare_v2_v3.json ;;
  v4-candidate) # the node-head run (not installed): its tuning, v3 against it, its node head, its eval
    V4=${V4:-runs/v4/weights} # engine train graphnovo --minutes 75 -o runs/v4 --threads 1
    $PY scripts/tune_search.py $V4 > $R/tune_v4_candidate.json # then store its stored_search in $V4/config.json
    $PY scripts/compare_versions.py v3=$(old_weights $V3_COMMIT v3) v4=$V4 > $R/compare_v3_v4_candidate.json
    $PY scripts/node_head.py $V4 > $R/node_head_v4_candidate.json
    $E --json --quiet eval graphnovo --model $V4 --threads 1 > $R/eval_v4_not_installed.json
    $PY scripts/path_errors.py $(old_weights $V3_COMMIT v3) > $R/path_errors_v3.json
    $PY scripts/path_errors.py $V4 > $R/path_errors_v4_not_installed.json
    cp $V4/config.json $R/v4_candidate_config.json ;;
  node-ablation) # the node head at equal budget: two 45-minute runs side by side (one core each), then
    # each tuned on simulated spectra (its stored_search copied into its config.json) and compared
    #   engine train graphnovo --minutes 45 -o runs/abl_node1 --threads 1 --node-weight 1   (and 0: runs/abl_node0)
    for w in 0 1; do $PY scripts/tune_search.py runs/abl_node$w/weights > $R/tune_node_ablation_$w.json; done
    $PY scripts/compare_versions.py "no node head, 45 min=runs/abl_node0/weights" \
      "node head, 45 min=runs/abl_node1/weights" > $R/compare_node_ablation.json
    for w in 0 1; do cp runs/abl_node$w/weights/config.json $R/node_ablation_${w}_config.json; done ;;
  v4-equal-steps) # the node-head recipe at v3's step count, two seeds, each tuned on simulated spectra (the
    # setting stored in its config), against v3:
    #   engine train graphnovo --steps 9094 --minutes 600 -o runs/v4b --threads 1   (and --seed 1 -o runs/v4b_seed1)
    for n in v4b v4b_seed1; do
      $PY scripts/tune_search.py --store runs/$n/weights > $R/tune_$n.json
      $PY scripts/node_head.py runs/$n/weights > $R/node_head_$n.json
      $E --json --quiet eval graphnovo --model runs/$n/weights --threads 1 > $R/eval_$n.json
      $PY scripts/path_errors.py runs/$n/weights > $R/path_errors_$n.json
      cp runs/$n/weights/config.json $R/${n}_config.json
    done
    $PY scripts/compare_versions.py v3=$(old_weights $V3_COMMIT v3) v4b=runs/v4b/weights \
      "v4b, seed 1=runs/v4b_seed1/weights" > $R/compare_v3_v4b.json ;;
  v5-finetune) # two fine-tuning runs from v4 (3,000 steps, one core each), each tuned on simulated
    # spectra (the setting stored in its config), their node heads, then v4 against both:
    #   engine train graphnovo --init engine_graphnovo/weights/default --steps 3000 --minutes 600 --lr 2.5e-4 \
    #     --seed 0 --threads 1 --prune-fraction 0.5 -o runs/v5_prune    (and --prune-fraction 0: runs/v5_ctrl)
    for n in v5_prune v5_ctrl; do
      $PY scripts/tune_search.py --store runs/$n/weights > $R/tune_$n.json
      $PY scripts/node_head.py runs/$n/weights > $R/node_head_$n.json
      cp runs/$n/weights/config.json $R/${n}_config.json
    done
    # v5's tuned weight (80) was the grid's largest: the same tuning with 160 and 320 as well
    $PY scripts/tune_search.py --rescore-weights 0,10,20,40,80,160,320 runs/v5_prune/weights > $R/tune_v5_wide.json
    $PY scripts/compare_versions.py v4=$(old_weights $V4_COMMIT v4) v5_prune=runs/v5_prune/weights \
      v5_ctrl=runs/v5_ctrl/weights > $R/compare_v4_v5.json ;;
  dev-prune) # pruning chosen on the real dev split, by a model that never saw it (the rule: MODEL_CARD.md):
    #   engine train graphnovo --hold-dev --prune-fraction 0.5 --steps 4000 --minutes 600 --seed 1 --threads 1 -o runs/v5_dev
    cp runs/v5_dev/weights/config.json $R/v5_dev_config.json
    local dev_model="eval graphnovo --model runs/v5_dev/weights --threads 1 $V5_SEARCH"
    dev_grid runs/v5_dev/weights dev_prune
    # reported, not used: the same model on the held-out split
    for k in 0 24 32; do
      $E --json --quiet $dev_model --prune-nodes $k > $R/dev_model_heldout_prune$k.json
    done ;;
  dev-folds) # pruning chosen on the three dev folds pooled (the rule: MODEL_CARD.md); fold 0 is dev-prune's,
    # folds 1 and 2 (N) trained by
    #   engine train graphnovo --hold-dev --dev-fold N --prune-fraction 0.5 --steps 4000 --minutes 600 --seed 1 --threads 1 -o runs/v5_devN
    # the pooled table and the chosen K: card_derived.json (dev_folds), by the derived target
    for n in 1 2; do
      cp runs/v5_dev$n/weights/config.json $R/v5_dev${n}_config.json
      dev_grid runs/v5_dev$n/weights dev${n}_prune --dev-fold $n
    done ;;
  dev-per-residue) # the node budget per residue on the three dev folds, each scored by its fold model (the
    # rule: MODEL_CARD.md "A node budget that grows with the peptide"); FOLDS="1 2" runs some folds only
    for n in ${FOLDS:-0 1 2}; do
      local weights=runs/v5_dev$n/weights
      [ "$n" = 0 ] && weights=runs/v5_dev/weights # fold 0's model (dev-prune's)
      for r in $RESIDUE_GRID; do
        $E --json --quiet eval graphnovo --model $weights --threads 1 $V5_SEARCH --split dev --dev-fold $n \
          --prune-per-residue $r > $R/dev${n}_per_residue$r.json
      done
    done ;;
  derived) # parameter counts, file sizes, training record, counts the card derives
    $PY scripts/card_derived.py > $R/card_derived.json ;;
  *) unknown_target "$1" ;;
  esac
}

. "$ROOT/scripts/card_targets.sh"
run_targets "$@"
