"""`engine bench sedd`: sampling throughput of the torch and onnxruntime back ends
(samples per second at several step counts, same seeds, same tokens checked) and
validation bits per character of SEDD (bound) next to the AR baseline (exact), and the
AR baseline's bits per character on the drawn samples (quality against steps). The
dynamic-int8 export, the shipped artifact's form, is timed and judged too unless
``--quantize none``."""

from __future__ import annotations

import platform
import statistics
import tempfile
import time

import numpy as np

from engine.interfaces import SamplingConfig

from .options import EvalOptions

SEED = 1234


def _rate(sampler, steps: int, options, seed: int) -> tuple[float, list[float], list, dict]:
    """(median samples per second, those of each of ``options.repeats`` draws, tokens, network
    invocations and evaluations per sequence). One draw moves by several percent with the machine's
    load; the median of a few is what a decision can rest on."""
    cfg = SamplingConfig(
        num_samples=options.batch,
        length=options.length,
        steps=steps,
        seed=seed,
        temperature=options.temperature,
        predictor=options.predictor,
    )
    rates = []
    for _ in range(options.repeats):
        start = time.perf_counter()
        result = sampler.sample(cfg)
        rates.append(options.batch / (time.perf_counter() - start))
    calls = {"calls": sampler.network_calls, "evals_per_sequence": float(np.mean(sampler.network_evals))}
    return statistics.median(rates), rates, result.tokens, calls


def _draw_options(torch_sampler) -> dict:
    """The torch sampler's own options that change what a draw does, for the onnxruntime samplers beside it."""
    return {"cache": torch_sampler.cache, "remask": torch_sampler.remask, "remask_start": torch_sampler.remask_start}


def _predictor_row(torch_sampler, predictor: str | None) -> dict:
    name, predictor_options = torch_sampler.draw_rule(SamplingConfig(predictor=predictor))
    return {"name": name, "options": predictor_options}


def run_bench(torch_sampler, options, *, engine, threads=None, seed=None, log=print) -> dict:
    """Time ``torch_sampler`` against onnxruntime on its own export (same device kind), with the
    bits-per-character rows unless ``options.skip_bpc`` (options: a BenchOptions). Beside torch
    on CUDA, onnxruntime uses its CUDA provider when it runs, else the CPU (the result's
    ``device`` names the provider): an onnxruntime without CUDA must not stop the torch timing."""
    import torch

    seed = SEED if seed is None else seed
    provider = "auto" if str(torch_sampler.device).startswith("cuda") else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        log("exporting the score network to ONNX ...")
        path = torch_sampler.export_onnx(f"{tmp}/artifact")
        ort_sampler = engine.load_artifact(path, provider=provider, threads=threads, **_draw_options(torch_sampler))
        torch_rate, ort_rate, same, drawn, calls = {}, {}, {}, {}, {}
        runs = {"torch": {}, "ort": {}}
        quantized, quantized_drawn = {}, {}
        for steps in options.steps:
            key = str(steps)
            torch_rate[key], runs["torch"][key], a, calls[key] = _rate(torch_sampler, steps, options, seed)
            ort_rate[key], runs["ort"][key], b, ort_calls = _rate(ort_sampler, steps, options, seed)
            same[key] = float(np.mean(np.array(a) == np.array(b)))
            drawn[key] = np.array(a)
            log(
                f"steps {steps}: torch {torch_rate[key]:.3f}/s, onnxruntime {ort_rate[key]:.3f}/s, "
                f"network calls {calls[key]['calls']}, {calls[key]['evals_per_sequence']:.1f} per sequence "
                f"(onnxruntime: {ort_calls['calls']}, {ort_calls['evals_per_sequence']:.1f})"
            )
        providers = ort_sampler.providers
        if options.quantize != "none":
            quantized, quantized_drawn, runs[f"ort_{options.quantize}"] = _quantized_rows(
                torch_sampler, engine, options, provider, threads, seed, drawn, f"{tmp}/q", log
            )
    from engine import __version__

    out = {
        "torch_samples_per_s": torch_rate,
        "ort_samples_per_s": ort_rate,
        "speedup_ort": float(np.exp(np.mean([np.log(ort_rate[k] / torch_rate[k]) for k in torch_rate]))),
        "same_tokens_fraction": same,
        # per draw of `batch` samples on torch: network invocations and evaluations of each
        # sequence (a cached sequence is not sent; the final denoise step counts)
        "network_calls": {k: v["calls"] for k, v in calls.items()},
        "network_evals_per_sequence": {k: v["evals_per_sequence"] for k, v in calls.items()},
        "parametrisation": "radd" if torch_sampler.radd else "sedd",
        "cache": torch_sampler.cache,
        "predictor": _predictor_row(torch_sampler, options.predictor),
        "length": options.length,
        "batch": options.batch,
        "repeats": options.repeats,
        # samples/s of every timed draw, by back end and step count (the rows above are their medians)
        "samples_per_s_runs": runs,
        "temperature": options.temperature,
        "threads": torch.get_num_threads(),
        "device": f"{torch_sampler.device} ({platform.processor() or platform.machine()}), onnxruntime {providers[0]}",
        "engine_version": __version__,
    }
    if not options.skip_bpc:
        from .evaluation import evaluate_models, judge_samples, self_judge, token_entropy, validation_sequences

        log("evaluating validation bits per character ...")
        wanted = EvalOptions(ar=options.ar, data=options.data, times=options.eval_times, max_seqs=options.eval_seqs)
        ev = evaluate_models(torch_sampler.model_dir, wanted)
        out.update(
            {
                "sedd_bpc_bound": ev["sedd_bpc"],
                "sedd_bpc_se": ev["sedd_bpc_se"],
                "ar_bpc": ev["ar_bpc"],
                "bpc_ratio": ev["bpc_ratio"],
                "eval_sequences": ev["sedd_sequences"],
                "eval_time_samples": options.eval_times,
            }
        )
        # the paper's "generative perplexity", with the AR baseline as the judge
        out["gen_bpc_under_ar"] = judge_samples(options.ar, drawn, torch_sampler.config["tokenizer"])
        # the model's own bound on its samples, against sedd_bpc_bound on real text (the orders' disagreement)
        out["sample_self_bound_bpc"] = self_judge(torch_sampler, drawn, options.eval_times)
        # variety beside likelihood: the samples' token entropy against validation text's
        out["sample_token_entropy_bits"] = {k: token_entropy(v[:, : options.length]) for k, v in drawn.items()}
        val = validation_sequences(torch_sampler.config, torch_sampler.tokenizer, options.data)
        out["data_token_entropy_bits"] = token_entropy(val[:, : options.length])
        if quantized:
            tokenizer = torch_sampler.config["tokenizer"]
            quantized["gen_bpc_under_ar"] = judge_samples(options.ar, quantized_drawn, tokenizer)
    if quantized:
        out[f"ort_{options.quantize}"] = quantized
    return out


def _quantized_rows(torch_sampler, engine, options, provider, threads, seed, fp32_tokens, dest, log):
    """The quantized export timed like the fp32 one, its tokens against the fp32 tokens: (rows, tokens drawn,
    samples/s of each timed draw)."""
    path = torch_sampler.export_onnx(dest, quantize=options.quantize)
    sampler = engine.load_artifact(path, provider=provider, threads=threads, **_draw_options(torch_sampler))
    rows: dict = {"samples_per_s": {}, "same_tokens_as_fp32": {}}
    drawn, runs = {}, {}
    for steps in options.steps:
        key = str(steps)
        rate, runs[key], tokens, _ = _rate(sampler, steps, options, seed)
        rows["samples_per_s"][key] = rate
        rows["same_tokens_as_fp32"][key] = float(np.mean(np.array(tokens) == fp32_tokens[key]))
        drawn[key] = np.array(tokens)
        log(f"steps {steps}: onnxruntime {options.quantize} {rate:.3f}/s")
    return rows, drawn, runs
