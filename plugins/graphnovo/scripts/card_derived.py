"""Every number MODEL_CARD.md derives rather than reads off one result file: parameter counts and
file sizes of the shipped weights and artifact, the training records (v5: the weights' config.json,
a fine-tuning of v4; v4, v3, v2 and v1: scripts/results/v{4,3,2,1}_config.json), the simulation and
split settings the code uses, and the differences the card quotes between results in
scripts/results/.

    python scripts/card_derived.py > scripts/results/card_derived.json
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent
R = HERE / "results"
PKG = PLUGIN / "engine_graphnovo"
WEIGHTS = PKG / "weights" / "default"
ARTIFACT = PKG / "artifacts" / "default"


def load(name: str) -> dict | None:
    path = R / name
    return json.loads(path.read_text()) if path.is_file() and path.stat().st_size else None


def parameters(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def training(cfg: dict) -> dict:
    t = cfg["training"]
    real_per_batch = round(t["batch_size"] * t["real_fraction"])
    return {
        "steps": t["steps"],
        "minutes": round(t["seconds"] / 60, 1),
        "final_path_kl": round(t["final_path_kl"], 3),
        "final_fill_ce": round(t["final_fill_ce"], 3),
        "real_train_spectra": t["real_train_spectra"],
        "real_per_batch": real_per_batch,
        # each real training spectrum is drawn this many times on average
        "real_draws_per_spectrum": round(t["steps"] * real_per_batch / t["real_train_spectra"], 1),
        "search": cfg.get("search"),
        "search_tuned_on": t.get("search_tuned_on"),
    }


PRUNE_GRID = (0, 24, 32, 48, 64)  # the K of tune_search's last stage and of the dev-fold rule


def pooled_folds(names: tuple[str, ...]) -> dict | None:
    """Three dev folds' eval outputs (one file name per fold) pooled: peptides found (per fold and
    together), the DP's, AA precision (the folds' values weighted by their spectra), spectra; the
    searched graphs' node precision and coverage weighted alike."""
    folds = [load(name) for name in names]
    if not all(folds):
        return None
    spectra = sum(r["spectra"] for r in folds)
    per_fold = [round(r["peptide_recall"] * r["spectra"]) for r in folds]

    def weighted(value) -> float:
        return round(sum(value(r) * r["spectra"] for r in folds) / spectra, 4)

    def searched(key: str):  # the graphs searched (the pruned ones, where pruning made new ones)
        return lambda r: r.get("searched_graph", r["graph"])[key]

    return {
        "peptides_per_fold": per_fold,
        "peptides": sum(per_fold),
        "dp_peptides": sum(round(r["baseline_peptide_recall"] * r["spectra"]) for r in folds),
        "aa_precision": weighted(lambda r: r["aa_precision"]),
        "spectra": spectra,
        "searched_node_precision": weighted(searched("mean_node_precision")),
        "searched_coverage": weighted(searched("mean_prefix_coverage")),
    }


def rule_key(row: dict) -> tuple:
    """The dev-fold rules' key: peptides found, then AA precision."""
    return row["peptides"], row["aa_precision"]


def dev_folds() -> dict | None:
    """Node pruning on the three real dev folds pooled, and the K the card's rule chooses: most
    peptides, then AA precision, ties to the smaller K. Fold 0's results are dev-prune's
    (dev_prune{K}.json), folds 1 and 2 dev-folds' (devN_prune{K}.json)."""
    names = ("dev_prune{k}.json", "dev1_prune{k}.json", "dev2_prune{k}.json")  # folds 0, 1, 2
    table = {str(k): pooled_folds(tuple(name.format(k=k) for name in names)) for k in PRUNE_GRID}
    if not all(table.values()):
        return None
    chosen = max(PRUNE_GRID, key=lambda k: (*rule_key(table[str(k)]), -k))
    return {"by_prune_nodes": table, "chosen_prune_nodes": chosen}


RESIDUE_GRID = (2, 2.5, 3, 3.5, 4)  # the R of dev-per-residue (the card's rule)


def dev_per_residue(fixed_k: int = 48) -> dict | None:
    """The per-residue node budget on the three dev folds pooled (dev{N}_per_residue{R}.json), and
    the card's rule: the best R by peptides, then AA precision (ties to the smaller R) replaces the
    fixed K = 48 only if it beats it by that key."""
    names = {r: tuple(f"dev{n}_per_residue{r:g}.json" for n in range(3)) for r in RESIDUE_GRID}
    table = {f"{r:g}": pooled_folds(names[r]) for r in RESIDUE_GRID}
    fixed = (dev_folds() or {}).get("by_prune_nodes", {}).get(str(fixed_k))
    if not all(table.values()) or fixed is None:
        return None
    best = max(RESIDUE_GRID, key=lambda r: (*rule_key(table[f"{r:g}"]), -r))
    beats = rule_key(table[f"{best:g}"]) > rule_key(fixed)
    return {
        "by_prune_per_residue": table,
        f"prune_nodes_{fixed_k}": fixed,
        "best_prune_per_residue": best,
        "chosen": {"prune_per_residue": best} if beats else {"prune_nodes": fixed_k},
    }


def main() -> None:
    from engine_graphnovo import simulator
    from engine_graphnovo import training as train_mod
    from engine_graphnovo.inference import SearchConfig

    out: dict = {}
    cfg = json.loads((WEIGHTS / "config.json").read_text())
    ps = parameters(WEIGHTS / "pathsearcher.safetensors")
    sf = parameters(WEIGHTS / "seqfiller.safetensors")
    manifest = json.loads((ARTIFACT / "manifest.json").read_text())
    onnx_bytes = sum(f["size"] for f in manifest["files"].values())
    out["model"] = {
        "pathsearcher_parameters": ps,
        "seqfiller_parameters": sf,
        "parameters_millions": [round(ps / 1e6, 3), round(sf / 1e6, 3), round((ps + sf) / 1e6, 2)],
        "weights_bytes": sum(p.stat().st_size for p in WEIGHTS.iterdir() if p.is_file()),
        "ion_types": cfg["model"]["ion_types"],
        "peak_features": cfg["model"]["peak_features"],
        "residue_tokens": cfg["model"]["vocab"],
        "d_model": cfg["model"]["d_model"],
        "local_window": cfg["graph"]["local_window"],
        "max_nodes": cfg["graph"]["max_nodes"],
        "top_n": cfg["preprocess"]["top_n"],
        "decoder_max_steps": cfg["model"]["max_steps"],
        "max_path_steps": SearchConfig().max_path_steps,
        "local_significance_at_e_and_1_over_e": [round(math.tanh(1 / 3), 2), round(math.tanh(-1 / 3), 2)],
    }
    out["artifact"] = {
        "onnx_bytes": onnx_bytes,
        "with_manifest_bytes": onnx_bytes + (ARTIFACT / "manifest.json").stat().st_size,
        "opset": manifest["opset"],
        "created": manifest["created"],
        "producer": {k: manifest["producer"].get(k) for k in ("torch", "onnx", "onnxruntime")},
    }
    out["training_v5"] = training(cfg)
    if v4cfg := load("v4_config.json"):
        out["training_v4"] = training(v4cfg)
    v3cfg, v2cfg, v1cfg = load("v3_config.json"), load("v2_config.json"), load("v1_config.json")
    if v3cfg:
        out["training_v3"] = training(v3cfg)
    if v2cfg:
        v2 = training(v2cfg)
        out["training_v2"] = v2
        if v1cfg:
            v1 = training(v1cfg)
            out["training_v1"] = v1
            out["v2_steps_over_v1"] = round(v2["steps"] / v1["steps"], 2)

    # simulation and split settings (code defaults)
    sig = inspect.signature(simulator.tryptic_peptides).parameters
    out["simulation"] = {
        **dataclasses.asdict(simulator.SimConfig()),
        "peptide_length": [sig["min_len"].default, sig["max_len"].default],
        "missed_cleavages": sig["missed"].default,
        "proteomes": list(train_mod.PROTEOMES),
        "heldout_fraction": inspect.signature(train_mod.is_heldout).parameters["fraction"].default,
    }

    # held-out comparisons the card states
    v3e, v2e, v1e, i8 = load("eval_v3.json"), load("eval_v2.json"), load("eval_v1.json"), load("eval_int8.json")
    if v3e and v2e:
        n = v3e["spectra"]
        out["heldout_v3"] = {
            "v3_peptides": round(v3e["peptide_recall"] * n),
            "dp_peptides": round(v3e["baseline_peptide_recall"] * n),
            "v3_minus_v2": {k: round(v3e[k] - v2e[k], 3) for k in ("peptide_recall", "aa_precision", "aa_recall")},
            "v3_minus_dp": {
                k: round(v3e[k] - v3e[f"baseline_{k}"], 3) for k in ("peptide_recall", "aa_precision", "aa_recall")
            },
            "node_precision_v3_over_v2": round(
                v3e["graph"]["mean_node_precision"] / v2e["graph"]["mean_node_precision"], 2
            ),
        }
    if v2e:
        n = v2e["spectra"]
        out["heldout"] = {
            "spectra": n,
            "one_spectrum_in_points": round(100 / n, 2),
            "v2_peptides": round(v2e["peptide_recall"] * n),
            "dp_peptides": round(v2e["baseline_peptide_recall"] * n),
        }
        if v1e:
            out["heldout"].update(
                {
                    "v1_peptides": round(v1e["peptide_recall"] * n),
                    "v2_minus_v1": {
                        k: round(v2e[k] - v1e[k], 3) for k in ("peptide_recall", "aa_precision", "aa_recall")
                    },
                }
            )
        if i8:
            out["heldout"]["int8_minus_fp32"] = {
                k: round(i8[k] - v2e[k], 3) for k in ("peptide_recall", "aa_precision", "aa_recall")
            }

    if folds := dev_folds():
        out["dev_folds"] = folds
    if per_residue := dev_per_residue():
        out["dev_per_residue"] = per_residue

    # int8: onnxruntime end to end relative to the model-free stage of the same run
    runs = {p: [load(f"int8_bench_{p}_{i}.json") for i in (1, 2, 3)] for p in ("fp32", "int8")}
    if all(all(r) for r in runs.values()):
        out["int8_bench"] = {
            p: {
                "ort_spectra_per_s": [round(r["ort_spectra_per_s"], 1) for r in rs],
                "ort_median": round(statistics.median(r["ort_spectra_per_s"] for r in rs), 1),
                "graph_spectra_per_s": [round(r["graph_spectra_per_s"]) for r in rs],
                "ort_over_graph": [round(r["ort_spectra_per_s"] / r["graph_spectra_per_s"], 3) for r in rs],
            }
            for p, rs in runs.items()
        }
        sizes = load("int8_sizes.json")
        if sizes:
            out["int8_bench"]["onnx_bytes"] = {"fp32": onnx_bytes, "int8": sizes["onnx_bytes"]}
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
