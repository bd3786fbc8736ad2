"""`engine bench medusa`: HF generate vs onnxruntime greedy vs Medusa (torch, onnxruntime), fp32
and quantized, vs llama.cpp.

Greedy, batch 1, one process, each method warmed up first; tokens/s over all prompts,
tokens per step, speed-ups over HF generate, and token equality with it; the quantized
artifacts' agreement with the fp32 one (see :mod:`engine_medusa.quality`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path


def device_name(threads: int) -> str:
    from engine.tuned import cpu_model

    return f"cpu: {cpu_model()}, {threads} thread(s)"


def artifact_for(decoder, cache_dir: Path, log) -> Path:
    """Export once per (heads, versions); the tree is chosen at load time, so it is not in the key."""
    import torch
    import transformers

    from .export import EXPORT_FORMAT
    from .heads import weights_file

    key = hashlib.sha256(
        json.dumps(
            {
                "base": decoder.base_name,
                "heads": decoder.heads_config and decoder.heads_config.get("lm_head_fingerprint"),
                "weights": hashlib.sha256(weights_file(decoder.heads_folder).read_bytes()).hexdigest()
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


def quantized_for(art: Path, quantize: str, cache_dir: Path, log) -> Path:
    """A quantized copy of the fp32 artifact ``art``, made once (keyed by its manifest and the scheme)."""
    from .quantize import quantize_artifact, scheme_config

    scheme = json.dumps(scheme_config(quantize), sort_keys=True).encode()
    key = hashlib.sha256((art / "manifest.json").read_bytes() + scheme).hexdigest()[:12]
    path = cache_dir / "artifacts" / f"medusa-{quantize}-{key}"
    if not (path / "manifest.json").exists():
        log(f"quantizing {art} to {quantize} into {path} (once)")
        quantize_artifact(art, path, quantize, overwrite=True)
    return path


def medusa_on(load_artifact, path: Path, tree, fallback):
    """The Medusa decoder of artifact ``path``: on ``tree`` when the bench was given one, else on the
    tree tuned for that artifact on this device (``engine medusa tune-tree --artifact PATH``; each
    quantized copy has its own: its costs and acceptance differ from fp32's), else on ``fallback``,
    else on the artifact's stored tree."""
    if tree is not None:
        return load_artifact(path, tree=tree)
    own = load_artifact(path, tree=None)
    if own.tree_source.startswith("tuned") or fallback is None:
        return own
    return load_artifact(path, tree=fallback)


class TimedBackend:
    """Wraps a decoder's back end and adds up the time of each part of a step: the tree forward
    (with the base logits), the heads' proposals, the cache gather; the rest of a step is the
    loop's own bookkeeping (tree assembly, verification, text)."""

    PARTS = {
        "forward": "tree_forward",
        "head_topk": "heads",
        "path_topk": "heads",
        "draft_step": "heads",
        "keep": "cache_gather",
    }

    def __init__(self, inner):
        self.inner = inner
        self.seconds = dict.fromkeys(self.PARTS.values(), 0.0)

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        part = self.PARTS.get(name)
        if part is None:
            return attr

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - t

        return timed


def step_breakdown(decoder, prompts, n: int) -> dict:
    """Milliseconds per step of each part (see TimedBackend), over the prompts."""
    from engine.interfaces import GenerationConfig

    inner = decoder.backend
    decoder.backend = timed = TimedBackend(inner)
    try:
        steps, total = 0, 0.0
        for p in prompts:
            t = time.perf_counter()
            steps += decoder.generate(p, GenerationConfig(max_new_tokens=n)).stats.steps
            total += time.perf_counter() - t
    finally:
        decoder.backend = inner
    ms = {k: round(v * 1e3 / steps, 2) for k, v in timed.seconds.items()}
    return {
        "step_ms": round(total * 1e3 / steps, 2),
        **ms,
        "bookkeeping": round(total * 1e3 / steps - sum(ms.values()), 2),
    }


def head_accuracy_on(decoder, prompts, n: int) -> dict:
    """Per-head top-1/top-5 on the base's greedy answers to the bench prompts themselves."""
    from .tuning import rank_accuracy

    _, raw = rank_accuracy(decoder, prompts, n)
    return {"top1": [round(x, 4) for x in raw["top1"]], "top5": [round(x, 4) for x in raw["top5"]]}


def _run(name, fn, prompts, log):
    fn(prompts[0], warmup=True)
    steps, seconds, outs = 0, 0.0, []
    for p in prompts:
        t = time.perf_counter()
        toks, st = fn(p)
        seconds += time.perf_counter() - t
        steps, outs = steps + st, outs + [list(toks)]
    return _summary(name, outs, steps, seconds, log)


def _summary(name, outs, steps, seconds, log):
    """tokens/s and tokens per step (``steps`` None: one token per step) of a run's outputs."""
    tokens = sum(map(len, outs))
    steps = tokens if steps is None else steps
    log(f"{name}: {tokens / seconds:.1f} tokens/s, {tokens / max(steps, 1):.2f} tokens/step")
    return {"tokens_per_s": tokens / seconds, "tokens_per_step": tokens / max(steps, 1), "outputs": outs}


def llama_cpp_greedy(gguf: str, threads: int, prompt_ids: list[list[int]], eos: set[int], n: int) -> list:
    """Greedy llama.cpp (llama-cpp-python) on the same prompt tokens, ``threads`` threads, a fresh
    cache per prompt, the first prompt once more as a warm-up: [(tokens, seconds)] per prompt.
    Runs in a child process (:func:`run_llama_cpp`)."""
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)

    def one(ids, limit):
        llm.reset()
        toks, t = [], time.perf_counter()
        for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
            if tok in eos:
                break
            toks.append(tok)
            if len(toks) >= limit:
                break
        return toks, time.perf_counter() - t

    one(prompt_ids[0], 8)
    return [one(ids, n) for ids in prompt_ids]


def in_own_process(fn, *args):
    """``fn(*args)`` in a spawned child process; None when that process dies."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    try:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    except BrokenProcessPool:
        return None


def run_llama_cpp(gguf: str, threads: int, prompt_ids, eos, n: int, log) -> dict | None:
    """llama.cpp's greedy run in its own process, so that a llama-cpp-python built for another
    CPU (an illegal instruction kills the process: AMX code on a machine that does not grant it)
    costs the bench its llama.cpp row, not the run. None when it is not installed or crashed."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        log("llama.cpp: llama-cpp-python is not installed (pip install 'engine-medusa[bench]'): skipped")
        return None
    try:
        runs = in_own_process(llama_cpp_greedy, gguf, threads, prompt_ids, set(eos), n)
    except Exception as exc:  # llama.cpp refused the GGUF: the other rows still stand
        log(f"llama.cpp: {type(exc).__name__}: {exc}: skipped")
        return None
    if runs is None:
        log("llama.cpp: its process died (an illegal instruction? a build for another CPU): skipped")
        return None
    return _summary("llama.cpp", [list(t) for t, _ in runs], None, sum(s for _, s in runs), log)


def run(decoder, options, *, load_artifact, artifact=None, tree=None, threads=None, log=print) -> dict:
    """The benchmark of ``engine bench medusa``: ``decoder`` is the torch MedusaDecoder,
    ``options`` a :class:`engine_medusa.options.BenchOptions`; ``load_artifact(path, tree=...)``
    builds the onnxruntime decoder of ``artifact`` (exported into the cache when None), on
    ``tree`` when given, else the tree tuned on onnxruntime, else the artifact's. With
    ``options.quantize`` the same runs go over quantized copies of that artifact, with their
    agreement with the fp32 one; llama.cpp runs on the base's GGUF when it is installed."""
    import torch

    from engine.artifacts import read_artifact
    from engine.errors import UsageError
    from engine.interfaces import GenerationConfig
    from engine.io.prompts import read_prompt_rows

    from . import quality
    from .base import resolve_base
    from .component import stored_tree
    from .data import DEV_PROMPTS, cache_root

    rows = read_prompt_rows(options.prompts or DEV_PROMPTS, options.limit or None)
    prompts = [r["prompt"] for r in rows]
    prompt_ids = [decoder.encode(p) for p in prompts]  # the chat template applied once, for every runner
    n = options.max_new_tokens
    dec = decoder
    model = dec.model
    cfg = GenerationConfig(max_new_tokens=n)
    eos = list(dec.codec.eos_ids) or None
    threads = threads or torch.get_num_threads()

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

    from .torch_path import MedusaDecoder

    torch_greedy = MedusaDecoder.from_model(model, dec.codec, heads=None, chat=dec.chat, base_name=dec.base_name)
    res = {
        "baseline": _run("HF generate", hf, prompts, log),
        "torch_greedy": _run("greedy torch", component(torch_greedy), prompts, log),
        "torch": _run("Medusa torch", component(dec), prompts, log),
    }
    base = res["baseline"]
    out = {
        "baseline_tokens_per_s": round(base["tokens_per_s"], 2),
        "torch_greedy_tokens_per_s": round(res["torch_greedy"]["tokens_per_s"], 2),
        "torch_tokens_per_s": round(res["torch"]["tokens_per_s"], 2),
        "tokens_per_step": round(res["torch"]["tokens_per_step"], 3),
        "speedup_torch": round(res["torch"]["tokens_per_s"] / base["tokens_per_s"], 3),
        "speedup_torch_vs_torch_greedy": round(res["torch"]["tokens_per_s"] / res["torch_greedy"]["tokens_per_s"], 3),
        "identical_torch": res["torch"]["outputs"] == base["outputs"],
        "identical_torch_greedy": res["torch_greedy"]["outputs"] == base["outputs"],
        "tree_nodes": dec.tree.size if dec.tree else 1,
        "torch_tree": dec.tree_info,
        "torch_step_ms": step_breakdown(dec, prompts[:3], n),
    }
    if not options.skip_ort:
        art = Path(artifact) if artifact else artifact_for(dec, cache_root(), log)
        art_cfg = read_artifact(art).config
        if art_cfg["base_model"] != dec.base_name:
            raise UsageError(
                f"the artifact runs {art_cfg['base_model']}, the torch side {dec.base_name}: bench needs one base"
            )
        if options.quantize and art_cfg.get("quantization"):
            raise UsageError(f"--quantize needs an fp32 artifact; {art} is already quantized")
        # the fp32 Medusa decoder falls back on the heads' own onnxruntime tree (it may be newer than the
        # cached export's); a quantized copy with no tree of its own on that fallback, unless fp32's was tuned
        stored = stored_tree(dec.heads_folder, "onnxruntime") if dec.heads_folder and tree is None else None
        fallback = stored["choices"] if stored else None
        fp32_medusa = medusa_on(load_artifact, art, tree, fallback)
        ort_tree = tree
        if tree is None and not fp32_medusa.tree_source.startswith("tuned"):
            ort_tree = fallback
        variants = {"": art} | {f"_{q}": quantized_for(art, q, cache_root(), log) for q in options.quantize}
        texts = []
        if options.perplexity:
            texts = [dec.codec.encode_prompt(r["prompt"], False) for r in read_prompt_rows(options.perplexity, 20)]
            out["perplexity_texts"] = len(texts)
        for sfx, path in variants.items():
            label = sfx[1:] or "fp32"
            medusa_dec = medusa_on(load_artifact, path, tree, ort_tree) if sfx else fp32_medusa
            medusa = _run(f"Medusa onnxruntime {label}", component(medusa_dec), prompts, log)
            out[f"ort{sfx}_tree"] = medusa_dec.tree_info
            out[f"ort{sfx}_step_ms"] = step_breakdown(medusa_dec, prompts[:3], n)
            if not sfx:
                out["ort_tree_nodes"] = medusa_dec.tree_info["nodes"]
                out["head_accuracy"] = head_accuracy_on(medusa_dec, prompts, n)
            plain = load_artifact(path, tree=[])  # the same graphs, a root-only tree: the greedy loop
            greedy = _run(f"greedy onnxruntime {label}", component(plain), prompts, log)
            res[f"ort{sfx}"], res[f"ort_greedy{sfx}"] = medusa, greedy
            reference = res["ort_greedy"]["outputs"]
            out |= {
                f"ort_greedy{sfx}_tokens_per_s": round(greedy["tokens_per_s"], 2),
                f"ort{sfx}_tokens_per_s": round(medusa["tokens_per_s"], 2),
                f"ort{sfx}_tokens_per_step": round(medusa["tokens_per_step"], 3),
                f"speedup_ort{sfx}": round(medusa["tokens_per_s"] / base["tokens_per_s"], 3),
                f"speedup_ort{sfx}_vs_ort_greedy{sfx}": round(medusa["tokens_per_s"] / greedy["tokens_per_s"], 3),
                # Medusa is exact with respect to the base it verifies against (measured), and says so
                f"identical_ort{sfx}_vs_ort_greedy{sfx}": medusa["outputs"] == greedy["outputs"],
                f"ort{sfx}_declares_exact_greedy": "exact-greedy" in medusa_dec.capabilities,
            }
            if sfx:
                out[f"greedy_match{sfx}"] = round(quality.greedy_match(plain.backend, prompt_ids, reference), 4)
                out[f"prefix_agreement{sfx}"] = round(quality.prefix_agreement(greedy["outputs"], reference), 4)
            else:
                out["identical_ort"] = medusa["outputs"] == base["outputs"]
                out["identical_ort_greedy"] = greedy["outputs"] == base["outputs"]
            if texts:
                out[f"perplexity{sfx or '_fp32'}"] = round(quality.perplexity(plain.backend, texts), 3)
    gguf = resolve_base(dec.base_name)
    lc = None
    if options.llama_cpp and gguf[1]:
        lc = run_llama_cpp(str(Path(gguf[0]) / gguf[1]), threads, prompt_ids, eos or (), n, log)
    if lc is not None:
        res["llama_cpp"] = lc
        out["llama_cpp_tokens_per_s"] = round(lc["tokens_per_s"], 2)
        out["llama_cpp_prefix_agreement"] = round(quality.prefix_agreement(lc["outputs"], base["outputs"]), 4)
        for key in [k for k in out if k.startswith("ort") and k.endswith("tokens_per_s")]:
            out[f"{key[: -len('_tokens_per_s')]}_vs_llama_cpp"] = round(out[key] / lc["tokens_per_s"], 3)
    out |= {"prompts": len(prompts), "max_new_tokens": n, "device": device_name(threads)}
    return dict(sorted(out.items()))
