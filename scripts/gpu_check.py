"""CUDA-provider parity and speed against the CPU for the three default models.

    python scripts/gpu_check.py [--json OUT] [--quick] [--sedd-artifact DIR] [--graphnovo-artifact DIR]

Prints ``engine.doctor`` first, then runs the same job through ``engine.load_artifact`` on the
CPU provider and, when onnxruntime's CUDA provider really runs, on the CUDA provider:
SEDD samples (tokens compared exactly), GraphNovo on the bundled example spectra (peptides
compared) and greedy decoding of a tiny random Llama with Medusa heads (tokens compared).
Off a GPU it runs the CPU provider only and says so. No network: artifacts come from the
arguments, from the plugin package, or are exported from the bundled weights when torch is
installed. A failing section is one line and the others still run; exit status 1 if any failed.
The results are one JSON object: on stdout (human lines then go to stderr) or in --json OUT.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engine
from engine.doctor import format_report, one_line, report

MEDUSA_TREE = [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 0, 0]]
MEDUSA_PROMPTS = ["Hello", "The quick brown fox", "abc xyz"]


class Skip(Exception):
    """A section that cannot run here (missing package or artifact): not a failure."""


@dataclass
class Context:
    providers: list[str]
    quick: bool
    work: Path
    args: argparse.Namespace
    echo: Callable[[str], None]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stream = sys.stdout if args.json else sys.stderr  # keep stdout pure JSON when it carries the results

    def echo(line: str) -> None:
        print(line, file=stream, flush=True)

    start = time.perf_counter()
    doctor = report()
    echo(format_report(doctor))
    providers = _providers(doctor, echo)
    results: dict[str, Any] = {"doctor": doctor, "providers": providers, "quick": args.quick, "sections": {}}
    with tempfile.TemporaryDirectory(prefix="engine-gpu-check-") as work:
        ctx = Context(providers, args.quick, Path(work), args, echo)
        for name, section in SECTIONS.items():
            results["sections"][name] = _run_section(name, section, ctx)
    results["total_s"] = round(time.perf_counter() - start, 2)
    echo(f"total wall time {results['total_s']:.1f} s")
    _write(results, args.json)
    return 1 if any(s["status"] == "failed" for s in results["sections"].values()) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="write the results here (default: stdout)")
    parser.add_argument("--quick", action="store_true", help="smaller jobs (a smoke test)")
    parser.add_argument("--sedd-artifact", metavar="DIR", help="an exported SEDD artifact")
    parser.add_argument("--graphnovo-artifact", metavar="DIR", help="an exported GraphNovo artifact")
    return parser


def _providers(doctor: dict[str, Any], echo: Callable[[str], None]) -> list[str]:
    if doctor["providers"].get("CUDAExecutionProvider", {}).get("runs"):
        echo("CUDA provider runs: comparing cuda against cpu")
        return ["cpu", "cuda"]
    echo("no working CUDA provider here: running the CPU provider only (no parity check)")
    return ["cpu"]


def _run_section(name: str, section: Callable[[Context], dict[str, Any]], ctx: Context) -> dict[str, Any]:
    ctx.echo(f"== {name}")
    start = time.perf_counter()
    try:
        result = section(ctx)
        result = {"status": "failed" if "error" in result else "ok", **result}
    except Skip as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one section's failure must not hide the others
        result = {"status": "failed", "error": one_line(exc)}
    result["wall_s"] = round(time.perf_counter() - start, 2)
    ctx.echo(f"{name}: {_summary(result)} ({result['wall_s']:.1f} s)")
    return result


def _summary(result: dict[str, Any]) -> str:
    if "unit" not in result:  # skipped, or failed before running anything
        return f"{result['status']}: {result.get('reason') or result.get('error')}"
    parts = [] if result["status"] == "ok" else ["FAILED"]
    for provider in ("cpu", "cuda"):
        run = result.get(provider)
        if run:
            speed = f"{run['rate']:.2f} {result['unit']}" if "rate" in run else f"error: {run['error']}"
            parts.append(f"{provider} {speed}")
    if "match" in result:
        parts.append(f"{result['match_what']} identical {100 * result['match']:.1f}%")
    return "; ".join(parts)


def _write(results: dict[str, Any], out: str | None) -> None:
    text = json.dumps(results, indent=2, default=str)
    if out:
        Path(out).write_text(text + "\n")
    else:
        print(text)


# --------------------------------------------------------------------------- running one job per provider


def _compare(ctx: Context, path: Path, warmup: Callable, job: Callable, count: Callable) -> dict[str, Any]:
    """Warm up (CUDA setup, arena growth), then time ``job`` per provider; ``count`` sizes its output."""
    result: dict[str, Any] = {"artifact": str(path)}
    outputs = {}
    for provider in ctx.providers:
        try:
            component = engine.load_artifact(path, provider=provider)
            warmup(component)
            start = time.perf_counter()
            outputs[provider] = job(component)
            seconds = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - the CPU numbers are still worth reporting
            result[provider] = {"error": one_line(exc)}
            continue
        n = count(outputs[provider])
        result[provider] = {"seconds": round(seconds, 3), "items": n, "rate": round(n / seconds, 3)}
        result[provider]["session"] = _session_providers(component)
    failed = [f"{p}: {result[p]['error']}" for p in ctx.providers if "error" in result[p]]
    if failed:
        result["error"] = "; ".join(failed)
    if len(outputs) == 2:
        result["match"] = _match(outputs["cpu"], outputs["cuda"])
        result["cuda_speedup"] = round(result["cpu"]["seconds"] / result["cuda"]["seconds"], 2)
    return result


def _session_providers(component: Any) -> list[str] | None:
    """Where the component's session really runs (plugins expose it differently)."""
    for owner in (component, getattr(component, "backend", None)):
        value = getattr(owner, "providers", None)
        if value is not None:
            return list(value() if callable(value) else value)
    return None


def _match(a: list, b: list) -> float:
    """Fraction of equal items, position by position; missing items count as different."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    total = max(len(flat_a), len(flat_b))
    return sum(x == y for x, y in zip(flat_a, flat_b, strict=False)) / total if total else 1.0


def _flatten(items: list) -> list:
    return [x for item in items for x in (item if isinstance(item, (list, tuple)) else [item])]


def _artifact(ctx: Context, given: str | None, package: str, export: Callable[[Path], Any]) -> Path:
    """The given artifact, else one shipped in the plugin package, else export one (needs torch)."""
    if given:
        return Path(given)
    if not _has(package):
        raise Skip(f"plugin {package} is not installed")
    bundled = _bundled_artifact(package)
    if bundled is not None:
        return bundled
    if not _has("torch"):
        raise Skip(f"no artifact: pass --{package.removeprefix('engine_')}-artifact DIR (no torch here to export one)")
    dest = ctx.work / package
    start = time.perf_counter()
    export(dest)
    ctx.echo(f"exported {dest} in {time.perf_counter() - start:.1f} s")
    return dest


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or an import blocker
        return False


def _bundled_artifact(package: str) -> Path | None:
    root = Path(importlib.util.find_spec(package).origin).parent
    for manifest in sorted(root.rglob("manifest.json")):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "schema_version" in data and "component" in data:
            return manifest.parent
    return None


# --------------------------------------------------------------------------- sections


def check_sedd(ctx: Context) -> dict[str, Any]:
    def export(dest: Path) -> None:
        from engine_sedd.torch_path import SEDDSampler

        SEDDSampler().export_onnx(dest)

    path = _artifact(ctx, ctx.args.sedd_artifact, "engine_sedd", export)
    config = engine.SamplingConfig(num_samples=4, length=256, steps=16 if ctx.quick else 64, seed=0)
    warm = engine.SamplingConfig(num_samples=config.num_samples, length=config.length, steps=2, seed=1)
    result = _compare(
        ctx,
        path,
        lambda c: c.sample(warm),
        lambda c: [list(row) for row in c.sample(config).tokens],
        len,
    )
    return {"unit": "samples/s", "match_what": "tokens", "config": f"4 samples x 256, {config.steps} steps", **result}


def check_graphnovo(ctx: Context) -> dict[str, Any]:
    def export(dest: Path) -> None:
        from engine_graphnovo.torch_path import GraphNovoSequencer

        GraphNovoSequencer().export_onnx(dest)

    path = _artifact(ctx, ctx.args.graphnovo_artifact, "engine_graphnovo", export)
    from engine.kinds import probe_spectra

    examples = probe_spectra()
    wanted = 30 if ctx.quick else 200
    spectra = (examples * (wanted // len(examples) + 1))[:wanted]
    result = _compare(
        ctx,
        path,
        lambda c: list(c.sequence(examples)),
        lambda c: [f"{hit.spectrum_ref}:{hit.peptide}" for hit in c.sequence(spectra)],
        lambda hits: len(spectra),
    )
    return {"unit": "spectra/s", "match_what": "peptides", "spectra": len(spectra), **result}


def check_medusa(ctx: Context) -> dict[str, Any]:
    missing = [m for m in ("torch", "transformers", "tokenizers", "engine_medusa") if not _has(m)]
    if missing:
        raise Skip(f"needs {', '.join(missing)} to build the tiny model")
    path = tiny_medusa().export_onnx(ctx.work / "medusa")
    new_tokens = 32
    config = engine.GenerationConfig(max_new_tokens=new_tokens, eos=False)
    warm = engine.GenerationConfig(max_new_tokens=4, eos=False)
    result = _compare(
        ctx,
        Path(path),
        lambda c: c.generate_batch(MEDUSA_PROMPTS, warm),
        lambda c: [list(r.tokens) for r in c.generate_batch(MEDUSA_PROMPTS, config)],
        lambda rows: sum(len(r) for r in rows),
    )
    return {"unit": "tokens/s", "match_what": "tokens", "prompts": len(MEDUSA_PROMPTS), **result}


def tiny_medusa(vocab: int = 256, seed: int = 0) -> Any:
    """A random tiny Llama (no download) with 4 random Medusa heads and a character tokenizer."""
    from engine_medusa.heads import MedusaHeads
    from engine_medusa.tiny import char_codec, randomize_heads, tiny_llama
    from engine_medusa.torch_path import MedusaDecoder

    model = tiny_llama(vocab, seed)
    heads = randomize_heads(MedusaHeads(model.get_output_embeddings(), 4), seed=seed + 1)
    return MedusaDecoder.from_model(
        model, char_codec(vocab), heads=heads, tree=MEDUSA_TREE, topk=4, base_name="tiny-llama", heads_dtype="float32"
    )


SECTIONS = {"sedd": check_sedd, "graphnovo": check_graphnovo, "medusa": check_medusa}

if __name__ == "__main__":
    sys.exit(main())
