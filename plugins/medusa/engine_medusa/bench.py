"""`engine bench medusa`: HF generate vs onnxruntime greedy vs Medusa (torch, onnxruntime).

Greedy, batch 1, one process, each method warmed up first; tokens/s over all prompts,
tokens per step, speed-ups over HF generate, and token equality with it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path


def device_name(threads: int) -> str:
    name = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {name}, {threads} thread(s)"


def artifact_for(decoder, cache_dir: Path, log) -> Path:
    """Export once per (heads, versions); the tree is chosen at load time, so it is not in the key."""
    import torch
    import transformers

    from .export import EXPORT_FORMAT

    key = hashlib.sha256(
        json.dumps(
            {
                "base": decoder.base_name,
                "heads": decoder.heads_config and decoder.heads_config.get("lm_head_fingerprint"),
                "weights": hashlib.sha256((decoder.heads_folder / "heads.safetensors").read_bytes()).hexdigest()
                if decoder.heads_folder
                else None,
                "torch": torch.__version__,
                "export_format": EXPORT_FORMAT,
                "transformers": transformers.__version__,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    path = cache_dir / "artifacts" / f"medusa-{key}"
    if not (path / "manifest.json").exists():
        log(f"exporting the ONNX artifact to {path} (once; takes a few minutes)")
        decoder.export_onnx(path)
    return path


def _run(name, fn, prompts, log):
    fn(prompts[0], warmup=True)
    tokens, steps, seconds, outs = 0, 0, 0.0, []
    for p in prompts:
        t = time.perf_counter()
        toks, st = fn(p)
        seconds += time.perf_counter() - t
        tokens, steps, outs = tokens + len(toks), steps + st, outs + [list(toks)]
    log(f"{name}: {tokens / seconds:.1f} tokens/s, {tokens / steps:.2f} tokens/step")
    return {"tokens_per_s": tokens / seconds, "tokens_per_step": tokens / steps, "outputs": outs}


def run(decoder, options, *, load_artifact, artifact=None, tree=None, log=print) -> dict:
    """The benchmark of ``engine bench medusa``: ``decoder`` is the torch MedusaDecoder,
    ``options`` a :class:`engine_medusa.options.BenchOptions`; ``load_artifact(path, tree=...)``
    builds the onnxruntime decoder of ``artifact`` (exported into the cache when None), on
    ``tree`` when given, else the tree tuned on onnxruntime, else the artifact's."""
    import torch

    from engine.artifacts import read_artifact
    from engine.errors import UsageError
    from engine.interfaces import GenerationConfig

    from .data import DEV_PROMPTS, cache_root, read_prompts

    rows = read_prompts(options.prompts or DEV_PROMPTS, options.limit or None)
    prompts = [r["prompt"] for r in rows]
    n = options.max_new_tokens
    dec = decoder
    model = dec.model
    cfg = GenerationConfig(max_new_tokens=n)
    eos = list(dec.codec.eos_ids) or None

    def hf(prompt, warmup=False):
        ids = torch.tensor([dec.encode(prompt)])
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=8 if warmup else n,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos[0] if eos else 0,
            )
        toks = out[0, ids.shape[1] :].tolist()
        return toks, len(toks)

    def component(d):
        def run_one(prompt, warmup=False):
            r = d.generate(prompt, GenerationConfig(max_new_tokens=8) if warmup else cfg)
            return r.tokens, r.stats.steps

        return run_one

    res = {
        "baseline": _run("HF generate", hf, prompts, log),
        "torch": _run("Medusa torch", component(dec), prompts, log),
    }
    ort_tree = None
    if not options.skip_ort:
        art = Path(artifact) if artifact else artifact_for(dec, cache_root(), log)
        exported_from = read_artifact(art).config["base_model"]
        if exported_from != dec.base_name:
            raise UsageError(f"the artifact runs {exported_from}, the torch side {dec.base_name}: bench needs one base")
        ort_tree = tree
        tree_file = dec.heads_folder / "tree.json" if dec.heads_folder else None
        stored = json.loads(tree_file.read_text()) if tree_file and tree_file.is_file() else {}
        if ort_tree is None and "onnxruntime" in stored:  # tuned on onnxruntime latencies
            ort_tree = stored["onnxruntime"]["choices"]
        if ort_tree is None:
            ort_tree = read_artifact(art).config["tree"]
        res["ort"] = _run("Medusa onnxruntime", component(load_artifact(art, tree=ort_tree)), prompts, log)
        ort_greedy = load_artifact(art, tree=[])  # same graph, root-only tree
        res["ort_greedy"] = _run("greedy onnxruntime", component(ort_greedy), prompts, log)
    base = res["baseline"]
    out = {
        "baseline_tokens_per_s": round(base["tokens_per_s"], 2),
        "ort_greedy_tokens_per_s": round(res["ort_greedy"]["tokens_per_s"], 2) if "ort" in res else None,
        "torch_tokens_per_s": round(res["torch"]["tokens_per_s"], 2),
        "ort_tokens_per_s": round(res["ort"]["tokens_per_s"], 2) if "ort" in res else None,
        "tokens_per_step": round(res["torch"]["tokens_per_step"], 3),
        "speedup_torch": round(res["torch"]["tokens_per_s"] / base["tokens_per_s"], 3),
        "speedup_ort": round(res["ort"]["tokens_per_s"] / base["tokens_per_s"], 3) if "ort" in res else None,
        "speedup_ort_vs_ort_greedy": round(res["ort"]["tokens_per_s"] / res["ort_greedy"]["tokens_per_s"], 3)
        if "ort" in res
        else None,
        "identical_torch": res["torch"]["outputs"] == base["outputs"],
        "identical_ort": res["ort"]["outputs"] == base["outputs"] if "ort" in res else None,
        "identical_ort_greedy": res["ort_greedy"]["outputs"] == base["outputs"] if "ort" in res else None,
        "ort_tokens_per_step": round(res["ort"]["tokens_per_step"], 3) if "ort" in res else None,
        "prompts": len(prompts),
        "max_new_tokens": n,
        "tree_nodes": dec.tree.size if dec.tree else 1,
        "ort_tree_nodes": len(ort_tree) + 1 if "ort" in res else None,
        "device": device_name(torch.get_num_threads()),
    }
    return out
