"""`engine sequence|train|eval|export|bench graphnovo` and the graphnovo-dp commands."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from engine.errors import UsageError

from .component import DEFAULT_WEIGHTS
from .readers import ReaderConfig, SkipReport, read_spectra

HELDOUT_NOTE = "MassIVE-KB held-out split (training.is_heldout)"


# ---------------------------------------------------------------- helpers


def _parser(ctx, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=ctx.prog, description=description)


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--charges", default="2,3,4", help="charges tried when a spectrum has none")
    g = p.add_argument_group("preprocessing (default: the model's own; Casanovo-like)")
    g.add_argument("--min-mz", type=float)
    g.add_argument("--max-mz", type=float)
    g.add_argument("--top-n", type=int, help="keep the N most intense peaks")
    g.add_argument("--min-intensity", type=float, help="minimum intensity relative to the base peak")
    g.add_argument("--precursor-window", type=float, help="Da removed around the precursor m/z (0: keep)")
    _beam_args(p)
    p.add_argument("--precursor-ppm", type=float, default=5.0)
    p.add_argument("--isotopes", default="0", help="isotope errors accepted, e.g. 0,1")
    p.add_argument(
        "--path-length-bonus",
        type=float,
        default=None,
        help="log-probability bonus per PathSearcher step (default: the model's)",
    )


def _beam_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path-beam", type=int, help="PathSearcher beam (default: the model's)")
    p.add_argument("--fill-beam", type=int, help="SeqFiller beam (default: the model's)")


def _beam_options(args) -> dict:
    """The beams given on the command line (unset: the model's tuned beams)."""
    out = {}
    for key in ("path_beam", "fill_beam"):
        value = getattr(args, key)
        if value is not None and value <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive")
        if value is not None:
            out[key] = value
    return out


def _search_options(args) -> dict:
    try:
        charges = tuple(int(c) for c in args.charges.split(","))
        isotopes = tuple(int(c) for c in args.isotopes.split(","))
    except ValueError:
        raise UsageError("--charges and --isotopes take comma-separated integers") from None
    if any(c <= 0 for c in charges):
        raise UsageError("--charges must be positive")
    out = {"charges": charges, "isotopes": isotopes, "precursor_ppm": args.precursor_ppm, **_beam_options(args)}
    if args.path_length_bonus is not None:
        out["path_length_bonus"] = args.path_length_bonus
    return out


def _component(args, baseline: bool, search: dict):
    """DP baseline, torch model (weights dir) or onnxruntime (artifact dir)."""
    from .component import DPSequencer, GraphNovoSequencer

    if baseline:
        return DPSequencer(**search)
    if getattr(args, "artifact", None):
        from engine.artifacts import read_artifact

        from .component import pipeline_from_meta
        from .ort import OrtSequencer

        try:
            comp = OrtSequencer(read_artifact(args.artifact), getattr(args, "provider", "auto"))
            comp.pipeline = pipeline_from_meta(comp.meta, comp.backend, search)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return comp
    try:
        return GraphNovoSequencer(weights=getattr(args, "weights", None), **search)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _with_preprocessing(comp, args):
    """Override the component's peak preprocessing with the options given."""
    import dataclasses

    names = {
        "min_mz": "min_mz",
        "max_mz": "max_mz",
        "top_n": "top_n",
        "min_intensity": "min_relative_intensity",
        "precursor_window": "remove_precursor_tol",
    }
    changes = {field: getattr(args, opt) for opt, field in names.items() if getattr(args, opt) is not None}
    if changes.get("top_n", 1) <= 0:
        raise UsageError("--top-n must be positive")
    comp.pipeline.prep = dataclasses.replace(comp.pipeline.prep, **changes)
    return comp


def _check_files(files: list[str]) -> list[Path]:
    from .readers import detect_format

    paths = [Path(f) for f in files]
    for p in paths:
        try:
            detect_format(p)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return paths


# ---------------------------------------------------------------- sequence


def sequence(argv, ctx, baseline: bool = False):
    p = _parser(ctx, "De novo sequence MGF / mzML / mzXML / MSP files into mzTab 1.0 (+ CSV).")
    p.add_argument("files", nargs="+")
    p.add_argument("-o", "--output", required=True, help="mzTab path")
    p.add_argument("--csv", help="CSV path (default: the mzTab path with .csv)")
    p.add_argument("--labels", help="PEPREC side file with labels (optional)")
    if not baseline:
        p.add_argument("--weights", help="weights directory (default: bundled model)")
        p.add_argument("--artifact", help="run an exported ONNX artifact on onnxruntime instead")
        p.add_argument("--provider", default="auto")
    _search_args(p)
    args = p.parse_args(argv)
    from .mztab import write_csv, write_mztab, write_skipped

    paths = _check_files(args.files)
    comp = _with_preprocessing(_component(args, baseline, _search_options(args)), args)
    report = SkipReport()
    spectra = read_spectra(paths, report, ReaderConfig(), labels=args.labels)
    inferred = []

    def tracked():
        for s in spectra:
            if s.charge is None:
                inferred.append(s)
            yield s

    hits = list(ctx.progress(comp.sequence(tracked()), desc="sequence"))
    out = Path(args.output)
    n = write_mztab(out, hits, [str(x) for x in paths])
    write_csv(Path(args.csv) if args.csv else out.with_suffix(".csv"), hits)
    skipped = report.skipped + comp.failures
    write_skipped(Path(str(out) + ".skipped.tsv"), skipped)
    by_ref = {(h.source, h.spectrum_ref): h.charge for h in hits}
    notes = report.notes + [
        (s.source, s.ref, f"charge: missing, tried {args.charges}, chose {by_ref.get((s.source, s.ref), 'none')}")
        for s in inferred
    ]
    if notes:
        write_skipped(Path(str(out) + ".notes.tsv"), notes)
    reasons = {}
    for _, _, r in skipped:
        reasons[r.split(":", 1)[0]] = reasons.get(r.split(":", 1)[0], 0) + 1
    return {
        "spectra": report.read,
        "written": n,
        "skipped": len(skipped),
        "skipped_reasons": reasons,
        "charge_inferred": len(inferred),
        "output": str(out),
    }


def sequence_dp(argv, ctx):
    return sequence(argv, ctx, baseline=True)


# ---------------------------------------------------------------- eval


def eval(argv, ctx, baseline_only: bool = False):  # noqa: A001 - the verb's name
    p = _parser(ctx, "Evaluate on labelled spectra: learned model and DP baseline side by side.")
    p.add_argument("files", nargs="*", help=f"labelled files (default: {HELDOUT_NOTE})")
    p.add_argument("--labels", help="PEPREC side file")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many spectra")
    if not baseline_only:
        p.add_argument("--weights")
        p.add_argument("--artifact")
        p.add_argument("--provider", default="auto")
    _search_args(p)
    args = p.parse_args(argv)
    from .evaluation import evaluate, heldout_spectra

    search = _search_options(args)
    report = SkipReport()
    if args.files:
        spectra = read_spectra(_check_files(args.files), report, ReaderConfig(require_label=True), args.labels)
    else:
        spectra = heldout_spectra(report)
    spectra = list(spectra)[: args.limit or None]
    learned = None if baseline_only else _with_preprocessing(_component(args, False, search), args)
    baseline = _with_preprocessing(_component(args, True, search), args)
    result = evaluate(spectra, learned, baseline, progress=ctx.progress)
    result["skipped"] += len(report)
    result["skipped_reasons"] = report.reasons()
    return result


def eval_dp(argv, ctx):
    return eval(argv, ctx, baseline_only=True)


# ---------------------------------------------------------------- train / export / bench


def train(argv, ctx):
    p = _parser(ctx, "Train PathSearcher and SeqFiller (simulated + MassIVE-KB spectra).")
    p.add_argument("--out", default="runs/graphnovo", help="run directory (checkpoint, weights)")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--real-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--d-model", type=int, default=96)
    p.add_argument("--encoder-layers", type=int, default=2)
    p.add_argument("--decoder-layers", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-real", action="store_true", help="simulated spectra only")
    p.add_argument("--max-peptides", type=int, default=200000)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument(
        "--tune",
        action="store_true",
        help="tune the path length bonus and the beam width (5/10/20) on fresh simulated spectra afterwards",
    )
    p.add_argument("--install", action="store_true", help="copy the weights into the package default")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.steps <= 0 or args.batch_size <= 0:
        raise UsageError("--minutes, --steps and --batch-size must be positive")
    from .masses import ResidueTable
    from .model import ModelConfig
    from .training import TrainConfig
    from .training import train as run

    cfg = TrainConfig(
        out=args.out,
        minutes=args.minutes,
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        real_fraction=args.real_fraction,
        seed=args.seed,
        threads=args.threads,
        use_real=not args.no_real,
        max_peptides=args.max_peptides,
        checkpoint_every=args.checkpoint_every,
    )
    mcfg = ModelConfig(
        d_model=args.d_model,
        encoder_layers=args.encoder_layers,
        decoder_layers=args.decoder_layers,
        vocab=len(ResidueTable().tokens),
    )
    meta = run(cfg, mcfg, resume=args.resume, progress=ctx.progress, log=ctx.echo)
    weights = Path(args.out) / "weights"
    tuned = {}
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 tunes/installs
    if args.tune and main_rank:
        from .evaluation import tune_search

        tuned = tune_search(weights, log=ctx.echo)
    if args.install and main_rank:
        install_weights(weights)
    return {
        **tuned,
        "steps": meta["training"]["steps"],
        "seconds": meta["training"]["seconds"],
        "final_path_kl": meta["training"]["final_path_kl"],
        "final_fill_ce": meta["training"]["final_fill_ce"],
        "weights": str(weights),
    }


def install_weights(src: Path) -> None:
    tmp = DEFAULT_WEIGHTS.with_name("default.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(DEFAULT_WEIGHTS, ignore_errors=True)
    tmp.rename(DEFAULT_WEIGHTS)


def export(argv, ctx):
    p = _parser(ctx, "Export both models to an engine artifact (ONNX).")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--weights")
    args = p.parse_args(argv)
    comp = _component(args, False, {})
    path = comp.export_onnx(Path(args.output))
    return {"artifact": str(path)}


def bench(argv, ctx):
    p = _parser(ctx, "Spectra per second: graph building, DP baseline, torch and onnxruntime end to end.")
    p.add_argument("--limit", type=int, default=60, help="held-out spectra to time")
    p.add_argument("--weights")
    p.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads")
    _beam_args(p)
    args = p.parse_args(argv)
    from .evaluation import bench as run

    return run(args.limit, args.weights, args.threads, _beam_options(args))


# ---------------------------------------------------------------- demo


def demo(argv, ctx, baseline: bool = False):
    """Sequence the bundled labelled spectra on the default model; print label vs prediction."""
    _parser(ctx, "Sequence the bundled example spectra with the default model.").parse_args(argv)
    from .component import DEFAULT_WEIGHTS, EXAMPLES, example_spectra

    if not baseline and not (DEFAULT_WEIGHTS / "config.json").is_file():
        ctx.echo(f"graphnovo: no default model at {DEFAULT_WEIGHTS} yet; train one with: engine train graphnovo")
        return 0
    spectra = example_spectra()
    comp = _component(argparse.Namespace(), baseline, {})
    hits = {hit.spectrum_ref: hit for hit in comp.sequence(spectra)}
    ctx.echo(f"{len(spectra)} bundled spectra from {EXAMPLES.name} (MassIVE-KB, labelled):")
    for spectrum in spectra:
        hit = hits.get(spectrum.ref)
        found = f"{hit.peptide} (score {hit.score:.2f}, {hit.precursor_error_ppm:+.1f} ppm)" if hit else "no path"
        same = hit and hit.peptide.replace("I", "L") == (spectrum.label or "").replace("I", "L")
        mark = "=" if same else " "  # the field's rule: I and L are the same mass
        ctx.echo(f"  {spectrum.ref:<9} label {spectrum.label:<22} {mark} predicted {found}")
    return 0


def demo_dp(argv, ctx):
    return demo(argv, ctx, baseline=True)
