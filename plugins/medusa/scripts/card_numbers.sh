#!/bin/bash
# The numbers of MODEL_CARD.md, after scripts/train_default.sh; one job at a time, 1 thread.
# Each step writes scripts/results/*.json; ART is the exported default artifact.
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
ART=${ART:-runs/art-default}
OLD=${OLD:-runs/previous-heads}   # the heads this version replaced: git show <commit>:... into this folder
python scripts/compare_heads.py scripts/results/compare_heads.json \
  previous=$OLD medusa-fr8k=runs/medusa-fr8k hydra-fr8k=runs/hydra-fr8k hydra2-3k=runs/hydra2-3k
# v3's tune_tree_*_v3.json and bench_v3.json were written by the lines below with the v3 heads installed
$E export medusa -o $ART --threads 1 --force
$E --json medusa tune-tree --write-heads --threads 1 > scripts/results/tune_tree_torch.json
$E --json medusa tune-tree --artifact $ART --write-heads --threads 1 > scripts/results/tune_tree_ort.json
$E --json bench medusa --limit 10 --threads 1 --artifact $ART --quantize int4,int8 \
  --perplexity ../../../shared/data/prompts/sharegpt.jsonl > scripts/results/bench.json
python scripts/quantized_levels.py int4:0 int4:4 > scripts/results/quantized_levels.txt
$E --json bench medusa --limit 10 --threads 1 --heads $OLD > scripts/results/bench_previous.json
# how far the weight-only quantized bases are from the fp32 (= the GGUF's dequantized) weights
for q in int4 int8; do
  python -c "from engine_medusa.quantize import quantize_artifact as q; q('$ART', 'runs/art-$q', '$q', overwrite=True)"
  python scripts/gguf_closeness.py $ART runs/art-$q "$(python -c "from engine_medusa.base import resolve_base as r; print('/'.join(r('smollm2')))")" \
    > scripts/results/gguf_closeness_$q.json
done
# The second-machine files (an AMD EPYC, AVX2 only: "The same heads on a second CPU" in the card), run
# there after the export line above, the trees cached for that device only (no --write-heads):
#   $E --json medusa tune-tree --artifact $ART --threads 1 > scripts/results/tune_tree_ort_amd.json
#   $E --json medusa tune-tree --threads 1 > scripts/results/tune_tree_torch_amd.json
#   $E --json bench medusa --limit 10 --threads 1 --artifact $ART --quantize int4,int8 > scripts/results/bench_amd.json
# The third machine (an AMD EPYC with AVX-512 VNNI and BF16): the same three lines with _zen4 names
# The fourth (an AMD EPYC of CPU family 26, Zen 5; llama-cpp-python 0.3.36 installed): the same three lines with
#   _zen5 names (tune_tree_ort_zen5.json, tune_tree_torch_zen5.json, bench_zen5.json), when_zen5.txt
#   then: $E --json medusa tune-tree --artifact <the bench's cached int4 copy> --threads 1 > scripts/results/tune_tree_ort_int4_zen5.json
# (tune_tree_ort_zen4.json, tune_tree_torch_zen4.json, bench_zen4.json), when_zen4.txt
# A Zen-4 EPYC again with the v5 heads (2026-12-05): the export line, then the same three lines with _zen4v5 names,
#   the bench with --no-llama-cpp (not built there), when_zen4v5.txt; then the int4 tune-tree line above with
#   _zen4v5 (tune_tree_ort_int4_zen4v5.json); then, llama-cpp-python 0.3.36 built there, the bench line without
#   --no-llama-cpp > bench_zen4v5_llama.json, when_zen4v5_llama.txt
# The default heads' tree.json re-tuned for v5 (2026-12-06, the Zen-4 EPYC, nothing else running): the export line and
#   the two tune-tree lines above (--write-heads), outputs > tune_tree_{torch,ort}_default_v5.json, when_default_tree_v5.txt
# The Hydra graph's shared projection quantized (2026-12-06, the Zen-4 EPYC; a format-3 $ART and the code of a385b88):
#   python -c "import engine_medusa.quantize as q; q.quantize_artifact('$ART', 'runs/art-int4', 'int4', overwrite=True);
#     q.GRAPHS = ('medusa', 'heads'); q.quantize_artifact('$ART', 'runs/art-int4-before', 'int4', overwrite=True)"
#   then engine --json medusa tune-tree --artifact runs/art-int4-before --threads 1, the same for runs/art-int4; the
#   tuned files (user cache, tuned/medusa/DIGEST/) copied to tuned_int4_{before,hydra}_zen4.json, when_int4_hydra_zen4.txt
# Hydra heads as one graph each (export format 4, 2026-12-06, the Zen-4 EPYC): tune-tree --artifact on the format-3
#   export (kept as runs/art-default-f3), on a new export line's $ART and on its int4 copy (the quantize_artifact call
#   above), tuned files copied to tuned_{ort_one_hydra_graph,ort_hydra_per_head,int4_hydra_per_head}_zen4.json; then
#   $E --json bench medusa --limit 10 --threads 1 --artifact $ART --quantize int4 --no-llama-cpp > bench_zen4_hydra_per_head.json
# Where a verification forward goes, on the fourth machine (2026-12-04, second session, nothing else running):
#   python scripts/step_profile.py $ART > scripts/results/step_profile_zen5.json
# Row invariance of whole graphs (fp32 and the bench's cached quantized copies, on the AMD EPYC):
#   python scripts/nbits_rows.py > scripts/results/nbits_rows_amd.json
#   python scripts/row_invariance.py fp32=$ART int8=CACHED_INT8 int4=CACHED_INT4 > scripts/results/row_invariance_amd.json
# 1.4x the teacher-forced data (the card's section of 2026-12-03; not installed), on one machine:
#   engine train medusa --data sharegpt --teacher-minutes 55 --prepare-only -o runs/dataN --threads 1   (twice, side by side)
#   engine --json train medusa --data sharegpt --draft-vocab 8192 --steps 3000 --batch-size 512 --checkpoint-every 100 \
#     --threads 1 --kind hydra --layers 2 -o runs/hydra2-3k-data2
#   v4: engine export medusa -o runs/art-v4; engine --json medusa tune-tree --artifact runs/art-v4; medusa tune-tree;
#       engine --json bench medusa --limit 10 --threads 1 --artifact runs/art-v4 --no-llama-cpp > $R/bench_v4_data2_cmp.json
#   candidate: engine export medusa --heads runs/hydra2-3k-data2 -o runs/art-data2; the two tune-tree lines with
#       --artifact runs/art-data2 / --heads runs/hydra2-3k-data2; its heads copied into engine_medusa/weights/default,
#       engine --json bench medusa --limit 10 --threads 1 --artifact runs/art-data2 --no-llama-cpp > $R/bench_data2.json
#       (then git checkout engine_medusa/weights/default)
#   python scripts/compare_heads.py scripts/results/compare_heads_data2.json v4=V4_HEADS data2=runs/hydra2-3k-data2
# Version 5 (twice the steps on that cache; the card's section of the second session of 2026-12-03):
#   the training line above with --steps 6000 -o runs/hydra2-6k-data2; then export to runs/art-6k, the two tune-tree
#   lines, the bench with its heads in the default folder (> $R/bench_6k.json), and
#   python scripts/compare_heads.py $R/compare_heads_6k.json v4=V4_HEADS data2-3k=runs/hydra2-3k-data2 data2-6k=runs/hydra2-6k-data2
# The one-layer draft probe (2026-12-03, third session; the first draft was trained by the probe's
# first version, whose loop is now `engine train medusa --kind draft`, same losses step for step):
#   engine --json train medusa --data sharegpt --kind draft --draft-vocab 8192 --steps 1000 --batch-size 8 \
#       --threads 1 -o runs/dl_eagle   (then: python scripts/draft_layer_probe.py save runs/dl_eagle runs/dl_eagle_heads
#       for a run of the probe's first version)
#   the same with --steps 600 --draft-init identity -o runs/dl_ident
#   python scripts/draft_layer_probe.py eval $R/draft_probe_heldout.json runs/dl_eagle_heads \
#       hydra:engine_medusa/weights/default; ... eval $R/draft_probe_heldout.json runs/dl_ident
#   the same two with $R/draft_probe_bench.json and --bench-prompts 10
# The 4,000-step draft (runs/dl_4k; resumed at step 1,100 with --resume, and at step 1,500 with --threads 2):
#   a look part-way, at its step-2,700 checkpoint: python scripts/draft_layer_probe.py save runs/dl_4k runs/dl_4k_s2700,
#   then eval $R/draft_probe_partway_bench.json runs/dl_4k_s2700 --bench-prompts 10 and
#   eval $R/draft_probe_partway_heldout.json runs/dl_4k_s2700; at its end the eval lines above on runs/dl_4k
#   its bench, beyond the rule: engine export medusa --heads runs/dl_4k -o runs/art-dl4k --threads 1 --force;
#   engine --json medusa tune-tree --artifact runs/art-dl4k --heads runs/dl_4k --write-heads --threads 1 > $R/tune_tree_ort_dl4k.json;
#   engine --json medusa tune-tree --heads runs/dl_4k --write-heads --threads 1 > $R/tune_tree_torch_dl4k.json;
#   engine --json bench medusa --limit 10 --threads 1 --heads runs/dl_4k --no-llama-cpp > $R/bench_dl4k.json
# The int4 LM head at 8 bits (2026-12-06, a Zen-4 EPYC, nothing else running): four ways to store the base side by
#   side (scripts/int4_layouts.py: int4 with a 4-bit head, int4, the exact Q4_1 / Q8_0 probe, int8), then each
#   quantized copy of the bench tree-tuned for this device, then the bench, which runs each copy on its own tree:
python scripts/int4_layouts.py $ART > scripts/results/int4_layouts.json
for q in int4 int8; do
  copy=$(python -c "from pathlib import Path; from engine_medusa.bench import quantized_for; from engine_medusa.data import cache_root; print(quantized_for(Path('$ART'), '$q', cache_root(), lambda m: None))")
  $E --json medusa tune-tree --artifact $copy --threads 1 > scripts/results/tune_tree_ort_${q}_head8_zen4.json
done
$E --json bench medusa --limit 10 --threads 1 --artifact $ART --quantize int4,int8 \
  --perplexity ../../../shared/data/prompts/sharegpt.jsonl > scripts/results/bench_zen4_head8.json
# The default heads' onnxruntime tree re-tuned on the export-format-4 artifact (2026-12-06, 03:09 UTC):
#   $E --json medusa tune-tree --artifact $ART --write-heads --threads 1 > scripts/results/tune_tree_ort_default_v5_f4.json
# Export format 5, grouped-query attention without repeating the cache (2026-12-06, 03:26-03:37 UTC, the Zen-4 EPYC):
#   the export line above, then the fp32 tune-tree line without --write-heads > tune_tree_ort_grouped_kv_zen4.json, the
#   int4/int8 loop of "The int4 LM head at 8 bits" with _grouped_kv_zen4 names, the bench line > bench_zen4_grouped_kv.json
#   (when_zen4_grouped_kv.txt); then scripts/row_counts.py as the card gives it > row_counts_grouped_kv_zen4.json
#   A second run of that bench line at 04:01-04:09 UTC > bench_zen4_grouped_kv_2.json (when_zen4_grouped_kv_2.txt)
# Export format 6, norms fused and parallel MatMuls merged (2026-12-06, the Zen-4 EPYC; when_zen4_f6.txt):
#   $E export medusa -o runs/art-f6 --threads 1 --force, the int4/int8 loop above with ART=runs/art-f6 and
#   _f6_zen4 names (tune_tree_ort_int{4,8}_f6_zen4.json), the bench line with ART=runs/art-f6 > bench_zen4_f6.json
#   Then, with the rotary fusion added (the committed format 6; runs/art-f6 exported again) and the bench taking the
#   prompts in turn: the same export, int4/int8 loop (_f6_rotary_zen4 names) and bench line > bench_zen4_f6_rotary.json,
#   and the bench line twice more > bench_zen4_f6_rotary_2.json, bench_zen4_f6_rotary_3.json (the second with the
#   bench reporting *_prefill_ms). bench_zen4_f6_interleaved.json: the bench line on the
#   norms+merges export, the bench taking the prompts in turn (before the rotary pass).
#   The card's node counts (format 5 -> 6: 1,838 -> 1,014): for a in runs/art-default runs/art-f6; do python -c
#   "import onnx; print(len(onnx.load('$a/medusa.onnx', load_external_data=False).graph.node))"; done
# Heads for quantized artifacts (2026-12-06, the Zen-4 EPYC, nothing else running; times in when_zen4_sd.txt;
#   P=../../../shared/data/prompts/sharegpt.jsonl): the
#   fine-tuned heads (train_default.sh step 5, runs/hydra-sd-int4) exported and their copies tuned and benched on
#   every row first (installed by hand as the default for those two runs only):
#   $E export medusa --heads runs/hydra-sd-int4 -o runs/art-sd --threads 1
#   $E --json medusa tune-tree --artifact <int4 | int8 copy | runs/art-sd> --threads 1 > tune_tree_ort_{int4,int8,fp32}_sd_zen4.json
#   $E --json bench medusa --limit 10 --threads 1 --artifact runs/art-sd --quantize int4,int8 --perplexity $P > bench_zen4_sd.json
#   $E --json medusa tune-tree --write-heads --threads 1 > tune_tree_torch_default_sd.json (the torch tuner: no tree)
#   $E --json medusa tune-tree --artifact runs/art-sd --write-heads --threads 1 > tune_tree_ort_default_sd.json
#   the bench line again > bench_zen4_sd_2.json; then the default heads restored, the fine-tuned ones installed as
#   weights/quantized (tree.json: {"onnxruntime": <tune_tree_ort_int4_sd_zen4.json>}), and as shipped:
#   $E --json bench medusa --limit 10 --threads 1 --quantize int4,int8 --perplexity $P > bench_zen4_quantized_heads.json
#   (and twice more at 09:01 and 11:00 UTC > bench_zen4_quantized_heads_2.json, bench_zen4_quantized_heads_3.json)
# Blocks of 128 (2026-12-06, third session; the Zen-4 EPYC, nothing else running; P as above):
#   $E --json bench medusa --limit 10 --threads 1 --quantize int4,int4-b128 --perplexity $P > bench_zen4_b128.json
#   $E --json bench medusa --limit 10 --threads 1 --quantize int4,int8 --perplexity $P > bench_zen4_quantized_heads_4.json
#   (and once more in a later session, 15:42 UTC, > bench_zen4_quantized_heads_5.json, when_zen4_quantized_heads_5.txt)
# Prompt lookup (2026-12-06, fourth session; the Zen-4 EPYC, nothing else running; INT4 = the int4 copy the bench
#   makes of the default artifact, ~/.cache/engine-medusa/artifacts/medusa-int4-*, FP32 = the bench's fp32 export):
#   python scripts/prompt_lookup.py $INT4 > prompt_lookup_int4_zen4.json   (deterministic)
#   python scripts/lookup_ab.py $INT4 > lookup_ab_int4_zen4.json   (when_lookup_ab_int4_zen4.txt)
#   python scripts/lookup_ab.py $FP32 --rounds 1 > lookup_ab_fp32_zen4.json
#   then, lookup the default: the bench line of "Blocks of 128" (--quantize int4,int8) > bench_zen4_lookup.json,
#   and again right after > bench_zen4_lookup_2.json (when_zen4_lookup_2.txt), bench_zen4_lookup_3.json (_3.txt)
# Twice the self-distilled data (2026-12-06, later; the Zen-4 EPYC): the two --prepare-only lines of train_default.sh
#   step 5 again with --distill-minutes 34 (the set completed: 188 of 188 shards), then
#   $E --json train medusa $sd --kind hydra --init-heads engine_medusa/weights/default --steps 2400 --batch-size 512 \
#     --lr 5e-4 --checkpoint-every 100 --threads 1 -o runs/hydra-sd2-int4   (train_log.json -> train_log_sd2_int4.json)
#   $E export medusa --heads runs/hydra-sd2-int4 --quantize int4 -o runs/art-sd2-int4 --threads 2
#   python scripts/chain_acceptance.py shipped=<the bench's int4 copy> all_188_shards=runs/art-sd2-int4 \
#     v5=<the int4 copy of the v5 heads' format-6 export> > scripts/results/chain_acceptance_sd2_int4.json
#   Heads from scratch on the same data, 2 and 4 blocks, side by side (one core each):
#   $E --json train medusa $sd --kind hydra --layers {2,4} --draft-vocab 8192 --steps 1800 --batch-size 512 \
#     --checkpoint-every 100 --threads 1 -o runs/hydra-sdL{2,4}   (train_log.json -> train_log_sd_scratch_L{2,4}.json)
#   $E export medusa --heads runs/hydra-sdL{2,4} --quantize int4 -o runs/art-sdL{2,4}-int4 --threads 1
#   python scripts/chain_acceptance.py scratch_2_blocks=runs/art-sdL2-int4 scratch_4_blocks=runs/art-sdL4-int4 \
#     > scripts/results/chain_acceptance_sd_layers.json
#   python scripts/chain_acceptance.py shipped=<the bench's int4 copy> v5=<the v5 heads' int4 copy> --dev 80 \
#     --by-category > scripts/results/chain_acceptance_dev_categories.json
#
# "A retrieved chain beside the heads" and "Where issue 11's targets lie" (2026-12-06, fifth session, Zen 4, 1 thread):
#   $E export medusa -o runs/art-default --threads 1 --force
#   $E --json train medusa --data sharegpt --datastore-only -o runs/ds            (runs/ds/datastore.npy)
#   python scripts/prompt_lookup.py runs/art-default --store 20000 > scripts/results/prompt_lookup_fp32_store_zen4.json
#   C='{"default": {"tree": [[0],[1],[2],[3]], "lookup": 2}, "heads2_chain2": {"tree": [[0],[1]], "chain": 2},
#      "heads1_chain4": {"tree": [[0]], "chain": 4}, "heads2_chain4": {"tree": [[0],[1]], "chain": 4}}'
#   python scripts/lookup_ab.py runs/art-default --configs "$C" --datastore runs/ds/datastore.npy --skip 10 --dev 16 \
#     --held 20 --rounds 3 > scripts/results/chain_ab_calibration_zen4.json
#   python scripts/lookup_ab.py runs/art-default --configs '{"default": {"tree": [[0],[1],[2],[3]], "lookup": 2},
#     "heads1_chain4": {"tree": [[0]], "chain": 4}}' --datastore runs/ds/datastore.npy --dev 10 --rounds 3 \
#     > scripts/results/chain_ab_bench_zen4.json
#   $E --json medusa tune-tree --artifact runs/art-default --threads 1 --max-nodes 32   (its cached payload, under
#     ~/.cache/engine/tuned/medusa/DIGEST/, -> scripts/results/tune_tree_ort_fp32_32nodes_zen4.json)
#   python scripts/speedup_ceiling.py scripts/results/tune_tree_ort_fp32_32nodes_zen4.json --measure runs/art-default \
#     > scripts/results/speedup_ceiling_zen4.json
#   python scripts/prompt_lookup.py runs/art-default --store 20000 --skip 10 --dev 16 --held 20 --shares 0,0.1,0.3,0.5 \
#     --latency scripts/results/tune_tree_ort_fp32_32nodes_zen4.json > scripts/results/prompt_lookup_fp32_share_calibration_zen4.json
#   C2='{"default": {"tree": [[0],[1],[2],[3]], "lookup": 2}, "heads1_chain4_share05": {"tree": [[0]], "chain": 4, "chain_share": 0.5}}'
#   python scripts/lookup_ab.py runs/art-default --configs "$C2" --datastore runs/ds/datastore.npy --skip 10 --dev 16 --held 20 \
#     --rounds 3 > scripts/results/share_ab_calibration_zen4.json
#   python scripts/lookup_ab.py runs/art-default --configs "$C2" --datastore runs/ds/datastore.npy --dev 10 --rounds 3 \
#     > scripts/results/share_ab_bench_zen4.json
#   $E --json train medusa --data sharegpt --datastore-only -o engine_medusa/weights/default   (the shipped datastore)
#   $E --json bench medusa --limit 10 --threads 1 --no-llama-cpp > scripts/results/bench_zen4_chain.json
