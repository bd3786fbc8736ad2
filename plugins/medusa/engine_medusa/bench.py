"""`engine bench medusa`: HF generate vs onnxruntime greedy vs Medusa (torch, onnxruntime), fp32
and quantized, vs llama.cpp.

Greedy, batch 1, each method warmed up first, then the prompts taken in turn (each prompt through
every method before the next: see :func:`interleaved`); tokens/s over all prompts, tokens per step,
speed-ups over HF generate, and token equality with it; the quantized artifacts' agreement with the
fp32 one (see :mod:`engine_medusa.quality`). llama.cpp runs in a child process of its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path


def device_name(threads: int) -> str:
    from engine.tuned import cpu_model

    return f"cpu: {cpu_model()}, {threads} thread(s)"


def _stored_digests(heads) -> dict:
    """Digests of what an export takes from the heads folder besides the weights (its stored trees
    and retrieved chain, its datastore), so a change there exports again."""
    from .component import TREE_FILE
    from .options import DATASTORE_FILE

    files = [Path(heads) / name for name in (TREE_FILE, DATASTORE_FILE)] if heads else []
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def artifact_for(decoder, cache_dir: Path, log, quantize: str | None = None) -> Path:
    """Export once per (heads, scheme, versions); the tree is chosen at load time, so it is not in
    the key. A quantized export of the default heads carries their quantized companion."""
    import torch
    import transformers

    from .component import heads_for_export
    from .export import EXPORT_FORMAT
    from .heads import weights_file
    from .quantize import scheme_config

    heads = heads_for_export(decoder.heads_folder, quantize) or decoder.heads_folder
    key = hashlib.sha256(
        json.dumps(
            {
                "base": decoder.base_name,
                "heads": decoder.heads_config and decoder.heads_config.get("lm_head_fingerprint"),
                "weights": hashlib.sha256(weights_file(heads).read_bytes()).hexdigest() if heads else None,
                **_stored_digests(heads),
                "torch": torch.__version__,
                "export_format": EXPORT_FORMAT,
                "transformers": transformers.__version__,
                **({"quantization": scheme_config(quantize)} if quantize else {}),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    path = cache_dir / "artifacts" / (f"medusa-{quantize}-{key}" if quantize else f"medusa-{key}")
    if not (path / "manifest.json").exists():
        log(f"exporting the ONNX artifact to {path} (once; takes a few minutes)")
        decoder.export_onnx(path, quantize=quantize)
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


class RunnerGone(Exception):
    """A bench runner that cannot go on (its child process died, its model file was refused): its row is
    left out and the other runners go on."""


def interleaved(runners: dict, n_prompts: int, log) -> dict:
    """Time every runner on the same prompts, taking the prompts in turn: prompt 1 through every
    runner, then prompt 2, and so on, after one short warm-up each. A shared machine has slow and fast
    phases minutes long; taken in turn, every runner meets them alike, so the ratios between rows
    hold within one run. ``runners``: {key: (label, fn)}, ``fn(i, warmup)`` -> (tokens, steps,
    seconds or None: then the call's wall time). A runner raising :class:`RunnerGone` is dropped with
    one log line. Returns {key: summary} of those that finished."""
    live = dict(runners)
    done = {key: ([], 0, 0.0) for key in live}

    def call(key, i, warmup):
        label, fn = live[key]
        try:
            t = time.perf_counter()
            toks, steps, seconds = fn(i, warmup)
            return list(toks), steps, seconds if seconds is not None else time.perf_counter() - t
        except RunnerGone as exc:
            log(f"{label}: {exc}: skipped")
            del live[key]
            return None

    for key in list(live):
        call(key, 0, True)
    for i in range(n_prompts):
        for key in list(live):
            if (got := call(key, i, False)) is not None:
                outs, steps, seconds = done[key]
                done[key] = (outs + [got[0]], steps + got[1], seconds + got[2])
    return {key: _summary(live[key][0], *done[key], log) for key in live}


def _summary(name, outs, steps, seconds, log):
    """tokens/s and tokens per step of a run's outputs."""
    tokens = sum(map(len, outs))
    log(f"{name}: {tokens / seconds:.1f} tokens/s, {tokens / max(steps, 1):.2f} tokens/step")
    return {"tokens_per_s": tokens / seconds, "tokens_per_step": tokens / max(steps, 1), "outputs": outs}


_llama = None  # the llama.cpp model, in the child process that runs llama_cpp_greedy


def _llama_model(gguf: str, threads: int):
    """llama.cpp's model of ``gguf`` in this (child) process, loaded at the first call, a fresh cache."""
    global _llama
    if _llama is None:
        from llama_cpp import Llama

        _llama = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    _llama.reset()
    return _llama


def llama_cpp_greedy(gguf: str, threads: int, ids: list[int], eos: set[int], limit: int) -> tuple[list[int], float]:
    """Greedy llama.cpp (llama-cpp-python) on the prompt tokens ``ids``, ``threads`` threads, a fresh
    cache: (tokens, seconds). Runs in a :class:`ChildProcess` (see :func:`llama_cpp_runner`)."""
    llm = _llama_model(gguf, threads)
    toks, t = [], time.perf_counter()
    for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        if tok in eos:
            break
        toks.append(tok)
        if len(toks) >= limit:
            break
    return toks, time.perf_counter() - t


def llama_cpp_prefill(gguf: str, threads: int, ids: list[int]) -> float:
    """Seconds llama.cpp takes to read the prompt tokens ``ids`` into a fresh cache (in the child)."""
    llm = _llama_model(gguf, threads)
    t = time.perf_counter()
    llm.eval(ids)
    return time.perf_counter() - t


def ort_prefill(backend, ids: list[int]) -> float:
    """Seconds the onnxruntime base takes to read the prompt tokens ``ids`` into a fresh cache."""
    from .decoding import prefill_arrays

    backend.reset()
    tokens, positions, _, allowed = prefill_arrays([ids])
    t = time.perf_counter()
    backend.forward(tokens, positions, allowed, logits_at=tokens.shape[1] - 1)
    return time.perf_counter() - t


def prefill_ms(readers: dict, n_prompts: int) -> dict:
    """Median milliseconds of each ``readers[key](i)`` (seconds to read prompt i), the prompts taken
    in turn as in :func:`interleaved`. Every tokens/s row includes reading its prompts; these say how
    much of it that is."""
    import numpy as np

    live, times = dict(readers), {key: [] for key in readers}
    for i in range(n_prompts):
        for key, read in list(live.items()):
            try:
                times[key].append(read(i))
            except RunnerGone:  # llama.cpp's process died after its timed run: no prefill row
                del live[key]
    return {key: round(1e3 * float(np.median(times[key])), 2) for key in live}


class ChildProcess:
    """One spawned child process for the bench's whole run, for code that may kill its process: a
    llama-cpp-python built for another CPU dies of an illegal instruction (AMX code on a machine that
    does not grant it). That costs the bench one row, not the run."""

    def __init__(self):
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        self.pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))

    def call(self, fn, *args):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self.pool.submit(fn, *args).result()
        except BrokenProcessPool:
            raise RunnerGone("its process died (an illegal instruction? a build for another CPU)") from None
        except Exception as exc:  # llama.cpp refused the GGUF, say
            raise RunnerGone(f"{type(exc).__name__}: {exc}") from exc

    def close(self):
        self.pool.shutdown(cancel_futures=True)


def llama_cpp_runner(child: ChildProcess, gguf: str, threads: int, prompt_ids, eos, n: int):
    """The interleaved runner of llama.cpp on ``prompt_ids`` in ``child`` (its own timing)."""

    def run_one(i, warmup):
        toks, seconds = child.call(llama_cpp_greedy, gguf, threads, prompt_ids[i], set(eos), 8 if warmup else n)
        return toks, len(toks), seconds

    return run_one


def ort_decoders(dec, options, load_artifact, artifact, tree, log) -> dict:
    """{suffix: (Medusa decoder, greedy decoder)} on the fp32 artifact ("") and each quantized copy
    ("_int4", "_int8"). Without ``artifact`` each is exported into the cache from the torch decoder
    (a quantized export of the default heads carries their quantized companion, on its own stored
    tree); with one, the quantized copies are made from it and keep its heads."""
    from engine.artifacts import read_artifact
    from engine.errors import UsageError

    from .component import stored_tree
    from .data import cache_root

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

    def copy_for(quantize):
        if artifact:
            return quantized_for(art, quantize, cache_root(), log)
        return artifact_for(dec, cache_root(), log, quantize)

    variants = {"": art} | {f"_{q.replace('-', '_')}": copy_for(q) for q in options.quantize}  # keys: ort_int4_b128_...
    copy_fallback = ort_tree if artifact else None  # an exported copy's stored tree is its own heads'
    return {
        # the greedy loop: the same graphs with a root-only tree
        sfx: (medusa_on(load_artifact, path, tree, copy_fallback) if sfx else fp32_medusa, load_artifact(path, tree=[]))
        for sfx, path in variants.items()
    }


def llama_cpp_child(dec, options, log):
    """(child process, GGUF path) for llama.cpp on the base's GGUF, or (None, None) when there is none
    or llama-cpp-python is not installed (said in the log)."""
    import importlib.util

    from .base import resolve_base

    folder, gguf = resolve_base(dec.base_name)
    if not (options.llama_cpp and gguf):
        return None, None
    if importlib.util.find_spec("llama_cpp") is None:
        log("llama.cpp: llama-cpp-python is not installed (pip install 'engine-medusa[bench]'): skipped")
        return None, None
    return ChildProcess(), str(Path(folder) / gguf)


def ort_rows(res: dict, decoders: dict, prompts, prompt_ids, n: int, texts) -> dict:
    """The bench's onnxruntime keys from the timed runs ``res`` and the decoders: speeds, trees, step
    breakdowns, exactness, and for quantized copies their agreement with fp32 (and perplexity on
    ``texts``)."""
    from . import quality

    base, reference, out = res["baseline"], res["ort_greedy"]["outputs"], {}
    for sfx, (medusa_dec, plain) in decoders.items():
        medusa, greedy = res[f"ort{sfx}"], res[f"ort_greedy{sfx}"]
        out |= {
            f"ort{sfx}_tree": medusa_dec.tree_info,
            f"ort{sfx}_step_ms": step_breakdown(medusa_dec, prompts[:3], n),
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
            out["ort_tree_nodes"] = medusa_dec.tree_info["nodes"]
            out["head_accuracy"] = head_accuracy_on(medusa_dec, prompts, n)
            out["identical_ort"] = medusa["outputs"] == base["outputs"]
            out["identical_ort_greedy"] = greedy["outputs"] == base["outputs"]
        if texts:
            out[f"perplexity{sfx or '_fp32'}"] = round(quality.perplexity(plain.backend, texts), 3)
    return out


def run(decoder, options, *, load_artifact, artifact=None, tree=None, threads=None, log=print) -> dict:
    """The benchmark of ``engine bench medusa``: ``decoder`` is the torch MedusaDecoder,
    ``options`` a :class:`engine_medusa.options.BenchOptions`; ``load_artifact(path, tree=...)``
    builds the onnxruntime decoder of ``artifact`` (exported into the cache when None), on
    ``tree`` when given, else the tree tuned on onnxruntime, else the artifact's. With
    ``options.quantize`` the same runs go over quantized copies of that artifact, with their
    agreement with the fp32 one; llama.cpp runs on the base's GGUF when it is installed."""
    import torch

    from engine.interfaces import GenerationConfig
    from engine.io.prompts import read_prompt_rows

    from . import quality
    from .data import DEV_PROMPTS
    from .torch_path import MedusaDecoder

    rows = read_prompt_rows(options.prompts or DEV_PROMPTS, options.limit or None)
    prompts = [r["prompt"] for r in rows]
    prompt_ids = [decoder.encode(p) for p in prompts]  # the chat template applied once, for every runner
    n = options.max_new_tokens
    dec = decoder
    model = dec.model
    cfg = GenerationConfig(max_new_tokens=n)
    eos = list(dec.codec.eos_ids) or None
    threads = threads or torch.get_num_threads()

    def hf(i, warmup):
        ids = torch.tensor([prompt_ids[i]])
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
        return toks, len(toks), None

    def component(d):
        def run_one(i, warmup):
            r = d.generate(prompts[i], GenerationConfig(max_new_tokens=8) if warmup else cfg)
            return r.tokens, r.stats.steps, None

        return run_one

    torch_greedy = MedusaDecoder.from_model(model, dec.codec, heads=None, chat=dec.chat, base_name=dec.base_name)
    runners = {
        "baseline": ("HF generate", hf),
        "torch_greedy": ("greedy torch", component(torch_greedy)),
        "torch": ("Medusa torch", component(dec)),
    }
    decoders = {} if options.skip_ort else ort_decoders(dec, options, load_artifact, artifact, tree, log)
    for sfx, (medusa_dec, plain) in decoders.items():
        label = sfx[1:] or "fp32"
        runners[f"ort{sfx}"] = (f"Medusa onnxruntime {label}", component(medusa_dec))
        runners[f"ort_greedy{sfx}"] = (f"greedy onnxruntime {label}", component(plain))
    child, gguf = llama_cpp_child(dec, options, log)
    if child is not None:
        runners["llama_cpp"] = ("llama.cpp", llama_cpp_runner(child, gguf, threads, prompt_ids, eos or (), n))

    def reader(backend):
        return lambda i: ort_prefill(backend, prompt_ids[i])

    readers = {f"ort_greedy{sfx}_prefill_ms": reader(plain.backend) for sfx, (_, plain) in decoders.items()}
    try:
        res = interleaved(runners, len(prompts), log)
        if "llama_cpp" in res:
            readers["llama_cpp_prefill_ms"] = lambda i: child.call(llama_cpp_prefill, gguf, threads, prompt_ids[i])
        prefill = prefill_ms(readers, len(prompts))
    finally:
        if child is not None:
            child.close()
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
    texts = []
    if options.perplexity and decoders:
        texts = [dec.codec.encode_prompt(r["prompt"], False) for r in read_prompt_rows(options.perplexity, 20)]
        out["perplexity_texts"] = len(texts)
    out |= ort_rows(res, decoders, prompts, prompt_ids, n, texts)
    if (lc := res.get("llama_cpp")) is not None:
        out["llama_cpp_tokens_per_s"] = round(lc["tokens_per_s"], 2)
        out["llama_cpp_prefix_agreement"] = round(quality.prefix_agreement(lc["outputs"], base["outputs"]), 4)
        for key in [k for k in out if k.startswith("ort") and k.endswith("tokens_per_s")]:
            out[f"{key[: -len('_tokens_per_s')]}_vs_llama_cpp"] = round(out[key] / lc["tokens_per_s"], 3)
    out |= prefill | {"prompts": len(prompts), "max_new_tokens": n, "device": device_name(threads)}
    return dict(sorted(out.items()))
