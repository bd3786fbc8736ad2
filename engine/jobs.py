"""The work the core does for every component: each kind's main verb with its I/O,
``export``, and a demo for components that bring none.

Each job is ``fn(ctx) -> int | dict`` on an :class:`engine.cli.CommandContext` whose
flags are parsed; ``ctx.load()`` builds the component on torch or onnxruntime.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from engine import options as opts
from engine.errors import EngineError, UsageError
from engine.kinds import KINDS_BY_NAME, Kind, probe_spectra
from engine.registry import accepts

DEMO_PROMPT = "Explain in two sentences why the sky is blue."


def run(ctx: Any) -> int | dict[str, Any]:
    kind = KINDS_BY_NAME[ctx.spec.kind]
    if ctx.verb == "export":
        return export(ctx)
    if ctx.verb == "demo":
        return DEMOS[kind.name](ctx)
    return JOBS[kind.name](ctx)


def add_io_flags(kind: Kind, parser: argparse.ArgumentParser, taken: set[str]) -> None:
    """The kind's input and output flags on its main verb."""
    group = parser.add_argument_group(f"{kind.name} input and output")
    if kind.name == "decoder":
        group.add_argument("prompt", nargs="*", help="prompts (none: read --prompts, else standard input)")
        group.add_argument("--prompts", metavar="FILE", help="JSONL file, one {'prompt': ...} per line ('-': stdin)")
        group.add_argument("--no-stream", action="store_true", help="print the text at the end, not as it comes")
        taken.update({"--prompts", "--no-stream"})
    elif kind.name == "sequencer":
        group.add_argument("files", nargs="+", help="MGF, mzML, mzXML or MSP files")
        group.add_argument("--csv", help="CSV path (default: the mzTab path with .csv)")
        group.add_argument("--labels", help="PEPREC side file with labels (optional)")
        taken.update({"--csv", "--labels"})


def _config(ctx: Any, **fixed: Any) -> Any:
    kind = KINDS_BY_NAME[ctx.spec.kind]
    values = {**opts.given(ctx.args, kind.config), **fixed}
    if ctx.seed is not None:
        values["seed"] = ctx.seed
    return opts.build(kind.config, values)


def _with_seed(config: Any) -> tuple[Any, bool]:
    """``config`` with a seed, and whether it was drawn here: without --seed the seed is still named (in
    the JSON and by :func:`_name_seed`), so a draw worth keeping can be repeated with --seed N."""
    if config.seed is not None:
        return config, False
    return attrs.evolve(config, seed=secrets.randbits(31)), True


def _name_seed(ctx: Any, config: Any, drawn: bool) -> None:
    if drawn:  # after the work: a failure stays one line
        ctx.note(f"[seed {config.seed}: --seed {config.seed} draws the same again]")


# --------------------------------------------------------------------------- decode


def decode(ctx: Any, prompts: list[str] | None = None, max_new_tokens: int | None = None) -> int | dict[str, Any]:
    from engine.io.prompts import read_prompt_records

    args = ctx.args
    records = [{"prompt": p} for p in prompts or ()] or read_prompt_records(
        getattr(args, "prompt", []), getattr(args, "prompts", None)
    )
    prompts = [record["prompt"] for record in records]
    fixed = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    streaming = (
        len(prompts) == 1 and not getattr(args, "no_stream", False) and not ctx.json and not ctx.output
    ) and "stream" in ctx.spec.capabilities
    if streaming:
        fixed["stream"] = _write_now
    config, drawn = _config(ctx, **fixed), False
    if config.temperature > 0:  # greedy decoding draws nothing: no seed to name
        config, drawn = _with_seed(config)
    component = ctx.load()
    batched = len(prompts) > 1 and "batch" in ctx.spec.capabilities
    batch = None
    if batched:
        started = time.perf_counter()
        results = component.generate_batch(prompts, config)
        batch = _batch_summary(results, time.perf_counter() - started)
    else:
        results = [component.generate(p, config) for p in ctx.progress(prompts, desc="decode")]
    rows = [_decoded(record, r, batched) for record, r in zip(records, results, strict=True)]
    if ctx.output:
        from engine.io.files import atomic_write_text, jsonl

        atomic_write_text(ctx.output, jsonl(rows))
    if ctx.json:
        seed = {"seed": config.seed} if config.seed is not None else {}
        return {"results": rows, **({"batch": batch} if batch else {}), **seed}
    for row, result in zip(rows, results, strict=True):
        if streaming:
            print()
        elif not ctx.output:
            if len(rows) > 1:
                print(f"### {row['prompt']}")
            print(result.text)
        rate = "" if batched else f", {row['tokens_per_s']:.1f} tokens/s"
        ctx.note(f"[{row['new_tokens']} tokens, {row['steps']} steps, {row['tokens_per_step']:.2f} tokens/step{rate}]")
    if batch:
        ctx.note(
            f"[{batch['prompts']} prompts decoded together: {batch['new_tokens']} tokens in "
            f"{batch['seconds']:.2f} s, {batch['tokens_per_s']:.1f} tokens/s]"
        )
    _name_seed(ctx, config, drawn)
    return 0


def _batch_summary(results: Sequence[Any], seconds: float) -> dict[str, Any]:
    """A batch's throughput, timed by the host: its rows share one wall time, so only the batch has a rate."""
    new_tokens = sum(r.stats.new_tokens for r in results)
    rate = new_tokens / seconds if seconds > 0 else 0.0
    return {
        "prompts": len(results),
        "new_tokens": new_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(rate, 2),
    }


def _write_now(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _decoded(record: dict[str, Any], result: Any, batched: bool = False) -> dict[str, Any]:
    stats = result.stats
    given = {key: value for key, value in record.items() if key != "prompt"}  # an input line's id, kept apart
    return {
        "prompt": record["prompt"],
        **({"input": given} if given else {}),
        "text": result.text,
        "tokens": list(result.tokens),
        "new_tokens": stats.new_tokens,
        "steps": stats.steps,
        "tokens_per_step": round(stats.tokens_per_step, 3),
        "tokens_per_s": None if batched else round(stats.tokens_per_second, 2),  # a batch's rows have no own rate
    }


# --------------------------------------------------------------------------- sample


def sample(ctx: Any, **fixed: Any) -> int | dict[str, Any]:
    config, drawn = _with_seed(_config(ctx, **fixed))
    component = ctx.load()
    kwargs = {}
    bar = None
    if accepts(component.sample, "on_step"):  # samplers that report their steps get a bar
        bar = ctx.progress(total=config.steps, desc="sampling")
        kwargs["on_step"] = lambda _step: bar.update(1)
    try:
        result = component.sample(config, **kwargs)
    finally:
        if bar is not None:
            bar.close()
    if ctx.output:
        from engine.io.samples import write_samples

        write_samples(ctx.output, result.texts)
    if ctx.json:
        stats = result.stats
        return {
            "texts": list(result.texts),
            "steps": stats.steps,
            "seconds": stats.seconds,
            "network_calls": stats.network_calls,
            "seed": config.seed,
        }
    if not ctx.output:
        from engine.io.samples import as_plain_text

        ctx.echo(as_plain_text(result.texts).removesuffix("\n"))
    _name_seed(ctx, config, drawn)
    return 0


# --------------------------------------------------------------------------- sequence


def sequence(ctx: Any) -> dict[str, Any]:
    from engine.io.files import check_outputs
    from engine.io.mztab import write_csv, write_mztab, write_skipped
    from engine.io.spectra import SkipReport, detect_format, read_spectra

    if not ctx.output:
        raise UsageError(f"{ctx.prog} needs -o OUT.mztab")
    paths = [Path(f) for f in ctx.args.files]
    for path in paths:
        try:
            detect_format(path)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    out = Path(ctx.output)
    csv_path = Path(ctx.args.csv) if ctx.args.csv else out.with_suffix(".csv")
    if ctx.args.labels and not Path(ctx.args.labels).is_file():  # spectra files may fail one by one; labels may not
        raise UsageError(f"labels file not found: {ctx.args.labels}")
    inputs = [*paths, *([Path(ctx.args.labels)] if ctx.args.labels else [])]
    check_outputs(inputs, [out, csv_path, Path(f"{out}.skipped.tsv"), Path(f"{out}.notes.tsv")])
    component = ctx.load()
    report = SkipReport()
    inferred: list[Any] = []

    def tracked():
        for spectrum in read_spectra(paths, report, labels=ctx.args.labels):
            if spectrum.charge is None:
                inferred.append(spectrum)
            yield spectrum

    hits = list(ctx.progress(component.sequence(tracked()), desc="sequence"))
    for _source, ref, reason in report.skipped:
        if ref == "file":  # a whole file lost is worth saying now, not only in skipped.tsv
            ctx.note(f"warning: {reason}")
    if report.read == 0:
        raise EngineError(f"no spectra could be read from {', '.join(map(str, paths))}; nothing written")
    skipped = report.skipped + list(getattr(component, "failures", []))
    reasons = Counter(reason.split(":", 1)[0] for _, _, reason in skipped)
    if not hits:  # earlier results stay as they were
        why = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        first = f"; the first: {skipped[0][2]}" if skipped else ""
        raise EngineError(
            f"no spectrum was sequenced ({report.read} read, {len(skipped)} skipped: {why}{first}); nothing written"
        )
    name = ctx.spec.name
    written = write_mztab(
        out,
        hits,
        [str(p) for p in paths],
        software=f"engine {name}",
        description=ctx.spec.description,
        residues=getattr(component, "residues", None),
    )
    write_csv(csv_path, hits)
    write_skipped(Path(f"{out}.skipped.tsv"), skipped)
    charges = {(h.source, h.spectrum_ref): h.charge for h in hits}
    notes = report.notes + [
        (s.source, s.ref, f"charge: missing, chose {charges.get((s.source, s.ref), 'none')}") for s in inferred
    ]
    if notes:
        write_skipped(Path(f"{out}.notes.tsv"), notes)
    return {
        "spectra": report.read,
        "written": written,
        "skipped": len(skipped),
        "skipped_reasons": dict(reasons),
        "charge_inferred": len(inferred),
        "output": str(out),
        "csv": str(csv_path),
    }


# --------------------------------------------------------------------------- export


def export(ctx: Any) -> dict[str, Any]:
    from engine.artifacts import check_destination

    dest = Path(ctx.output)
    check_destination(dest, overwrite=ctx.force)
    component = ctx.load()
    kwargs: dict[str, Any] = {}
    if accepts(component.export_onnx, "overwrite"):
        kwargs["overwrite"] = bool(ctx.force)
    if ctx.quantize:
        if not accepts(component.export_onnx, "quantize"):
            raise UsageError(f"{ctx.spec.name} does not support --quantize")
        kwargs["quantize"] = ctx.quantize
    with ctx.progress(total=1, desc="export") as bar:  # hosts' observers see the export start and end
        path = component.export_onnx(dest, **kwargs)
        bar.update()
    ctx.note(f"wrote {path}")
    return {"artifact": str(path)}


# --------------------------------------------------------------------------- demos


def _demo_decode(ctx: Any) -> int | dict[str, Any]:
    return decode(ctx, prompts=[DEMO_PROMPT], max_new_tokens=64)


def _demo_sample(ctx: Any) -> int | dict[str, Any]:
    ctx.echo("# 2 samples of 128 tokens, seed 0")
    ctx.args.seed = 0 if ctx.seed is None else ctx.seed
    return sample(ctx, num_samples=2, length=128)


def _demo_sequence(ctx: Any) -> int:
    spectra = probe_spectra()
    hits = {hit.spectrum_ref: hit for hit in ctx.load().sequence(spectra)}
    ctx.echo(f"{len(spectra)} bundled labelled spectra (MassIVE-KB):")
    for spectrum in spectra:
        hit = hits.get(spectrum.ref)
        found = f"{hit.peptide} (score {hit.score:.2f}, {hit.precursor_error_ppm:+.1f} ppm)" if hit else "no hit"
        same = hit is not None and hit.peptide.replace("I", "L") == (spectrum.label or "").replace("I", "L")
        mark = "=" if same else " "  # I and L have the same mass: the field counts them equal
        ctx.echo(f"  {spectrum.ref:<9} label {spectrum.label or '?':<22} {mark} predicted {found}")
    return 0


JOBS = {"decoder": decode, "sampler": sample, "sequencer": sequence}
DEMOS = {"decoder": _demo_decode, "sampler": _demo_sample, "sequencer": _demo_sequence}
