"""The sampler component, the plugin contract, the onnxruntime path and the CLI."""

import json
import math
import re

import attrs
import engine_sedd.plugin
import numpy as np
import pytest
import torch
from engine_sedd.component import SEDDSamplerBase
from engine_sedd.sampling import DEFAULT_REMASK, DEFAULT_REMASK_START
from engine_sedd.torch_path import SEDDSampler

from engine.cli import main
from engine.interfaces import ConfigError, SamplingConfig

REMASK_ELSEWHERE = "remask options (--remask, --remask-start) apply to the remdm predictor, not 'euler'"


@pytest.fixture(scope="module")
def sampler(tiny_model):
    return SEDDSampler(model=tiny_model)


def run_cli(capsys, *args):
    """``engine ARGS`` in this process: (exit status, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_conformance(tiny_model, tmp_path):
    import engine.testing

    engine.testing.check_plugin(engine_sedd.plugin, tmp_path=tmp_path, options={"sedd": {"model": str(tiny_model)}})


def test_identity_comes_from_the_registration(sampler, tiny_artifact):
    import engine

    assert sampler.name == "sedd" and "onnx-export" in sampler.capabilities
    ort_sampler = engine.load_artifact(tiny_artifact, provider="cpu")
    assert ort_sampler.name == "sedd" and "onnx-export" not in ort_sampler.capabilities
    assert "exact-parity" in ort_sampler.capabilities and ort_sampler.providers == ["CPUExecutionProvider"]
    assert "export_onnx" not in vars(type(ort_sampler))


def test_sample_infills_prefix_suffix_and_fixed(sampler):
    cfg = SamplingConfig(num_samples=3, length=32, steps=8, seed=0, prefix="ROMEO:", suffix="\n", fixed={10: "the"})
    res = sampler.sample(cfg)
    for text in res.texts:
        assert len(text) == 32 and text.startswith("ROMEO:") and text.endswith("\n")
        assert text[10:13] == "the" and "\u2591" not in text  # no MASK left
    euler = sampler.sample(SamplingConfig(num_samples=2, length=20, steps=3, seed=1, predictor="euler"))
    assert all(len(t) == 20 for t in euler.texts)


def test_on_step_reports_every_step(sampler):
    seen = []
    sampler.sample(SamplingConfig(length=16, steps=5, seed=0), on_step=seen.append)
    assert seen == [0, 1, 2, 3, 4]


def test_bf16_torch_sampler(tiny_model):
    res = SEDDSampler(model=tiny_model, dtype="bf16").sample(SamplingConfig(num_samples=2, length=16, steps=3, seed=0))
    assert all(len(t) == 16 for t in res.tokens)
    with pytest.raises(ValueError, match="dtype must be fp32 or bf16"):
        SEDDSampler(model=tiny_model, dtype="fp8")


def test_bad_input_is_one_clear_error(sampler):
    with pytest.raises(ConfigError, match="characters not in the model's vocabulary: '~'"):
        sampler.sample(SamplingConfig(length=16, steps=2, prefix="~"))
    with pytest.raises(ConfigError, match="length 33 exceeds the model's maximum 32"):
        sampler.sample(SamplingConfig(length=33, steps=2))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sampler.sample({"steps": 0})
    with pytest.raises(ValueError, match="outside 0..15"):
        sampler.sample(SamplingConfig(length=16, steps=2, fixed={16: "a"}))
    with pytest.raises(ConfigError, match="unknown predictor 'leap'"):
        sampler.sample(SamplingConfig(length=16, steps=2, predictor="leap"))
    with pytest.raises(TypeError):
        sampler.sample("steps=4")
    with pytest.raises(ConfigError, match=r"^no SEDD model at /nonexistent/model: a model folder holds config\.json"):
        SEDDSampler(model="/nonexistent/model")


def test_onnxruntime_sampler_matches_torch_exactly(sampler, tiny_artifact):
    """Same seed, same float64 draws: identical tokens, and raw outputs agree to ~1e-5,
    for a batch and length other than the export's sample input (dynamic axes)."""
    import engine

    ort_sampler = engine.load_artifact(tiny_artifact, provider="cpu")
    x = np.random.default_rng(0).integers(0, sampler.graph.dim, size=(3, 27))
    sb = np.array([1e-4, 0.5, 6.9])
    whole = sampler.raw_output(x, sb)
    np.testing.assert_allclose(ort_sampler.raw_output(x, sb), whole, atol=2e-5, rtol=1e-5)
    rows = np.array([[0, 26, 3], [5, 5, 1], [13, 2, 7]])  # the export's `rows` input: any positions, repeats too
    at = np.take_along_axis(whole, rows[..., None], axis=1)
    np.testing.assert_allclose(ort_sampler.raw_output_at(x, sb, rows), at, atol=2e-5, rtol=1e-5)
    assert np.array_equal(SEDDSamplerBase.raw_output_at(sampler, x, sb, rows), at)  # a back end without rows: gathered
    for predictor in ("analytic", "euler", "remdm"):
        cfg = SamplingConfig(num_samples=4, length=32, steps=16, seed=3, predictor=predictor, prefix="ROMEO")
        assert ort_sampler.sample(cfg).tokens == sampler.sample(cfg).tokens


def test_remasking_is_the_default_with_its_cap_and_start(sampler, tiny_model):
    """A config without a predictor draws with remdm at its default cap and start, or at --remask and
    --remask-start where given; either with another predictor is refused."""
    base = SamplingConfig(num_samples=4, length=32, steps=16, seed=3)
    remdm, plain = attrs.evolve(base, predictor="remdm"), attrs.evolve(base, predictor="analytic")
    assert (
        sampler.draw_rule(base)
        == sampler.draw_rule(remdm)
        == ("remdm", {"eta": DEFAULT_REMASK, "start": DEFAULT_REMASK_START})
    )
    assert sampler.draw_rule(plain) == ("analytic", {})
    assert sampler.sample(base).tokens == sampler.sample(remdm).tokens != sampler.sample(plain).tokens
    stronger = SEDDSampler(model=tiny_model, remask=0.5, remask_start=1.0)
    assert stronger.draw_rule(remdm) == stronger.draw_rule(base) == ("remdm", {"eta": 0.5, "start": 1.0})
    assert stronger.sample(remdm).tokens != sampler.sample(remdm).tokens
    for options in ({"remask": 0.5}, {"remask_start": 0.5}):
        with pytest.raises(ConfigError, match=re.escape(REMASK_ELSEWHERE)):
            SEDDSampler(model=tiny_model, **options).sample(attrs.evolve(base, predictor="euler"))
    with pytest.raises(ConfigError, match=r"remask must be in \[0, 1\], got -0.1"):
        SEDDSampler(model=tiny_model, remask=-0.1)
    with pytest.raises(ConfigError, match=r"remask start must be in \[0, 1\], got 2"):
        SEDDSampler(model=tiny_model, remask_start=2)


def test_cli_remasking_flags(capsys, tiny_model):
    base = ("sample", "sedd", "--model", str(tiny_model), "--length", "16", "--steps", "8", "--seed", "0", "--json")
    code, out, _ = run_cli(capsys, *base, "--remask", "0.3")
    assert code == 0 and len(json.loads(out)["texts"][0]) == 16
    for flags, error in (
        (("--remask", "1.5"), "--remask must be in [0, 1], got 1.5"),
        (("--remask-start", "-1"), "--remask-start must be in [0, 1], got -1.0"),
        (("--predictor", "euler", "--remask", "0.3"), REMASK_ELSEWHERE),
    ):
        code, _, err = run_cli(capsys, *base, *flags)
        assert code == 2 and one_line_error(err) == f"engine: error: {error}"


def test_onnxruntime_path_imports_no_torch(tiny_artifact):
    from engine.testing import run_without

    code = (
        "import engine, sys\n"
        f"s = engine.load_artifact({str(tiny_artifact)!r}, provider='cpu')\n"
        "from engine.interfaces import SamplingConfig\n"
        "r = s.sample(SamplingConfig(num_samples=2, length=24, steps=4, seed=0, suffix='.'))\n"
        "assert 'torch' not in sys.modules\n"
        "print(r.texts[0][-1])\n"
    )
    assert run_without(code).strip().endswith(".")


def test_options_are_flags_in_help(capsys):
    code, out, _ = run_cli(capsys, "sample", "sedd", "--help")
    assert code == 0 and "sedd options" in out and "--dtype {fp32,bf16}" in out and "--no-cache" in out
    assert "--steps" in out and "--fix POS=TEXT" in out  # the core's sampler flags
    for verb, flag in (("train", "--parametrisation"), ("eval", "--max-seqs"), ("bench", "--skip-bpc")):
        code, out, _ = run_cli(capsys, verb, "sedd", "--help")
        assert code == 0 and flag in out and "-o OUTPUT" in out, verb
    code, out, _ = run_cli(capsys, "help", "export", "sedd")
    assert code == 0 and "--dtype" in out and "--force" in out


def test_flags_of_the_wrong_path_are_usage_errors(capsys, tiny_model, tiny_artifact):
    code, _, err = run_cli(capsys, "sample", "sedd", "--artifact", str(tiny_artifact), "--dtype", "bf16")
    assert code == 2 and "--dtype does not apply to the onnxruntime path" in one_line_error(err)
    code, _, err = run_cli(capsys, "sample", "sedd", "--model", str(tiny_model), "--dtype", "fp16")
    assert code == 2 and "--dtype" in one_line_error(err)
    code, _, err = run_cli(capsys, "eval", "sedd", "--dtype", "bf16")
    assert code == 2 and "--dtype does not apply to engine eval sedd" in one_line_error(err)
    code, _, err = run_cli(capsys, "eval", "sedd", "--artifact", str(tiny_artifact), "--device", "cpu")
    assert code == 2 and "--device does not apply" in one_line_error(err)
    code, _, err = run_cli(capsys, "train", "sedd", "--model", str(tiny_model))  # starts from it: same shape only
    assert code == 2 and "another configuration than this run's (model, graph, tokenizer" in one_line_error(err)
    code, _, err = run_cli(capsys, "bench", "sedd", "--steps", "4,0")
    assert code == 2 and "--steps must be > 0, got 4,0" in one_line_error(err)
    code, _, err = run_cli(capsys, "bench", "sedd", "--repeats", "0")
    assert code == 2 and "--repeats must be > 0, got 0" in one_line_error(err)


def test_cli_sample_torch_and_onnxruntime_and_errors(capsys, tiny_model, tiny_artifact, tmp_path):
    draw = ("--steps", "4", "--length", "24", "--num-samples", "2", "--seed", "0", "--prefix", "AB", "--fix", "20=xyz")
    code, out, err = run_cli(capsys, "--json", "sample", "sedd", "--model", str(tiny_model), *draw)
    assert code == 0, err
    texts = json.loads(out)["texts"]
    assert [t[:2] for t in texts] == ["AB", "AB"] and all(t[20:23] == "xyz" for t in texts)
    code, out, err = run_cli(
        capsys, "--json", "sample", "sedd", "--artifact", str(tiny_artifact), "--provider", "cpu", *draw
    )
    assert code == 0 and json.loads(out)["texts"] == texts, err
    code, out, err = run_cli(
        capsys, "sample", "sedd", "--model", str(tiny_model), *draw, "-o", str(tmp_path / "s.jsonl")
    )
    assert code == 0 and out == "", err
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows] == texts
    code, _, err = run_cli(capsys, "sample", "sedd", "--model", str(tiny_model), "--steps", "0")
    assert code == 2 and "steps" in one_line_error(err)
    code, _, err = run_cli(capsys, "sample", "sedd", "--model", str(tiny_model), "--length", "999")
    assert code == 2 and "exceeds the model's maximum" in one_line_error(err)
    code, _, err = run_cli(capsys, "sample", "sedd", "--model", str(tiny_model), "--length", "8", "--prefix", "é")
    assert code == 2 and one_line_error(err).endswith("vocabulary: 'é'")
    code, _, err = run_cli(capsys, "sample", "sedd", "--model", str(tiny_model), "--length", "8", "--predictor", "leap")
    assert code == 2 and one_line_error(err) == "engine: error: unknown predictor 'leap'; known: analytic, euler, remdm"


def test_cli_eval_bound_next_to_ar(capsys, tiny_model, tiny_ar, corpus):
    args = ("--model", str(tiny_model), "--ar", str(tiny_ar), "--data", str(corpus), "--times", "3", "--max-seqs", "6")
    code, out, err = run_cli(capsys, "--json", "eval", "sedd", *args)
    assert code == 0, err
    out = json.loads(out)
    assert out["sedd_sequences"] == out["ar_sequences"] == 6
    assert out["sedd_likelihood"].startswith("upper bound") and out["ar_likelihood"] == "exact"
    assert out["bpc_ratio"] == pytest.approx(out["sedd_bpc"] / out["ar_bpc"])
    assert out["sedd_parameters"] == out["ar_parameters"]
    for side in ("sedd", "ar"):  # a character tokeniser: bits per character = nats per token / ln 2
        assert out[f"{side}_bpc"] == pytest.approx(out[f"{side}_nats_per_token"] / math.log(2), rel=1e-9)
        assert out[f"{side}_bpc_se"] == pytest.approx(out[f"{side}_nats_per_token_se"] / math.log(2), rel=1e-9)
    code, _, err = run_cli(capsys, "eval", "sedd", "--model", str(tiny_model))
    assert code == 2 and "corpus not found" in one_line_error(err)
    with pytest.raises(ValueError, match="autoregressive baseline"):
        SEDDSampler(model=tiny_ar)


def test_cli_eval_bound_of_an_export_is_the_torch_bound(capsys, tiny_model, tiny_artifact, corpus):
    """--artifact: the same ELBO code with the exported network on onnxruntime; for an fp32 export
    the bound is the torch model's up to float32 rounding (same sequences, times and noise draws)."""
    args = ("--data", str(corpus), "--times", "3", "--max-seqs", "6")
    bounds = []
    for source in (("--model", str(tiny_model)), ("--artifact", str(tiny_artifact), "--provider", "cpu")):
        code, out, err = run_cli(capsys, "--json", "eval", "sedd", *source, *args)
        assert code == 0, err
        bounds.append(json.loads(out))
    torch_side, ort_side = bounds
    assert ort_side["artifact_quantization"] == "none" and ort_side["sequences"] == 6
    assert ort_side["bpc"] == pytest.approx(torch_side["bpc"], rel=1e-5)


def test_cli_bench_reports_the_issue_keys(capsys, tiny_model, tiny_ar, corpus, tmp_path):
    code, out, err = run_cli(
        capsys,
        "--json",
        "bench",
        "sedd",
        *("--model", str(tiny_model), "--ar", str(tiny_ar), "--data", str(corpus), "--steps", "2,4"),
        *("--length", "32", "--batch", "2", "--eval-seqs", "4", "--eval-times", "2", "-o", str(tmp_path / "b.json")),
    )
    assert code == 0, err
    out = json.loads(out)
    for key in (
        "torch_samples_per_s",
        "ort_samples_per_s",
        "speedup_ort",
        "sedd_bpc_bound",
        "ar_bpc",
        "bpc_ratio",
        "device",
    ):
        assert key in out, key
    assert set(out["torch_samples_per_s"]) == set(out["ort_samples_per_s"]) == {"2", "4"}
    assert out["same_tokens_fraction"] == {"2": 1.0, "4": 1.0}
    assert out["parametrisation"] == "sedd" and out["cache"] is True
    assert set(out["network_calls"]) == {"2", "4"} and all(1 <= c <= 5 for c in out["network_calls"].values())
    assert all(0 < out["network_evals_per_sequence"][k] <= out["network_calls"][k] for k in ("2", "4"))
    assert out["bpc_ratio"] == pytest.approx(out["sedd_bpc_bound"] / out["ar_bpc"])
    # the AR judge's bits per character of the very samples the torch sampler drew (seed SEED)
    from engine_sedd.bench import SEED
    from engine_sedd.evaluation import judge_samples

    redraw = SEDDSampler(model=tiny_model)
    drawn = {k: redraw.sample(SamplingConfig(num_samples=2, length=32, steps=int(k), seed=SEED)).tokens for k in "24"}
    assert out["gen_bpc_under_ar"] == pytest.approx(judge_samples(str(tiny_ar), drawn), rel=1e-9)
    from engine_sedd.evaluation import self_judge

    assert out["sample_self_bound_bpc"] == pytest.approx(self_judge(redraw, drawn, n_times=2), rel=1e-9)
    assert json.loads((tmp_path / "b.json").read_text()) == out


def test_cli_train_and_export(capsys, corpus, tmp_path):
    tiny = ["--length", "16", "--hidden", "16", "--blocks", "1", "--heads", "2", "--cond", "8", "--batch", "4"]
    run = ("--data", str(corpus), "-o", str(tmp_path / "run"), "--steps", "3", "--eval-every", "3", "--eval-seqs", "2")
    code, out, err = run_cli(capsys, "--json", "--quiet", "train", "sedd", *run, *tiny, "--threads", "1")
    assert code == 0, err
    assert json.loads(out)["steps"] == 3 and (tmp_path / "run" / "model" / "model.safetensors").is_file()
    code, _, err = run_cli(capsys, "train", "sedd", "--data", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "x"))
    assert code == 2 and "corpus not found" in one_line_error(err) and not (tmp_path / "x" / "model").exists()
    for device, message in (("mps", "CPU or a CUDA GPU, not 'mps'"), ("gpu0", "unknown torch device 'gpu0'")):
        code, _, err = run_cli(capsys, "train", "sedd", *run[:2], "-o", str(tmp_path / device), "--device", device)
        assert code != 0 and message in one_line_error(err) and not (tmp_path / device).exists()
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, "train", "sedd", *run[:2], "-o", str(tmp_path / "y"), "--device", "cuda")
        assert code != 0 and "sees no CUDA GPU" in one_line_error(err)
    model = str(tmp_path / "run" / "model")
    code, out, err = run_cli(capsys, "--json", "export", "sedd", "--model", model, "-o", str(tmp_path / "a"))
    assert code == 0, err
    assert json.loads(out) == {"artifact": str(tmp_path / "a")}
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["models"]["score_net"]["inputs"] == ["tokens", "sigma_bar", "rows"]
    assert manifest["component"] == {"kind": "sampler", "name": "sedd"}
    code, _, err = run_cli(capsys, "export", "sedd", "--model", model, "-o", str(tmp_path / "a"))
    assert code == 1 and "already exists" in one_line_error(err)


def test_deprecated_out_alias_on_export(capsys, tiny_model, tmp_path):
    code, _, err = run_cli(capsys, "export", "sedd", "--model", str(tiny_model), "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "--out is deprecated, use --output" in err
    assert (tmp_path / "a" / "manifest.json").is_file()


def test_sampling_reports_each_step_to_the_host_and_can_be_cancelled():
    import engine
    from engine.errors import Cancelled
    from engine.progress import CancelToken, cancellation

    events = []
    sampler = engine.Engine(on_progress=events.append).sampler("sedd")
    result = sampler.sample({"length": 16, "steps": 4, "seed": 0})
    assert [e.current for e in events if e.task == "sample" and not e.done] == [1, 2, 3, 4] and events[-1].done
    assert result.stats.network_calls == sampler.network_calls >= 1
    with cancellation(CancelToken(deadline=0)), pytest.raises(Cancelled, match="sample stopped"):
        sampler.sample({"length": 16, "steps": 4, "seed": 0})


def _strided_slices(path) -> int:
    """Slice nodes of an ONNX graph whose constant steps are not all 1."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        values = [a.t for a in node.attribute if node.op_type == "Constant" and a.name == "value"]
        if values:
            constants[node.output[0]] = numpy_helper.to_array(values[0])
    steps = [node.input[4] for node in graph.node if node.op_type == "Slice" and len(node.input) > 4]
    return sum(bool((constants[s] != 1).any()) for s in steps if s in constants)


def test_export_reads_rotary_pairs_as_contiguous_halves(tiny_model, tiny_artifact, tmp_path):
    """The export's rotary slices contiguous halves (MODEL_CARD.md, "A cheaper step"); the interleaved
    layout, as the network computes it in torch, would need strided slices."""
    from engine_sedd.export import MODEL_FILE, export_onnx_model

    assert _strided_slices(tiny_artifact / MODEL_FILE) == 0
    net = SEDDSampler(model=tiny_model).net
    assert _strided_slices(export_onnx_model(net, tmp_path / "interleaved.onnx", rotary_halves=False)) > 0


def test_int8_export_runs_on_onnxruntime_close_to_fp32(capsys, sampler, tiny_model, corpus, tmp_path):
    """--quantize int8: dynamic int8 MatMuls, recorded in the manifest; its raw outputs stay near the
    fp32 network's (an int8 export of random weights is not bit-equal, so tolerance, not equality),
    eval bounds it, and the bench times it beside fp32 and judges its samples. int4 is refused in one line."""
    import engine

    code, _, err = run_cli(
        capsys, "export", "sedd", "--model", str(tiny_model), "--quantize", "int8", "-o", str(tmp_path / "q")
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["config"]["quantization"]["scheme"] == "dynamic-int8"
    q = engine.load_artifact(tmp_path / "q", provider="cpu")
    x = np.random.default_rng(0).integers(0, sampler.graph.dim, size=(3, 27))
    sb = np.array([1e-4, 0.5, 6.9])
    want, got = sampler.raw_output(x, sb), q.raw_output(x, sb)
    assert not np.array_equal(got, want)  # it is another network ...
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()  # ... close to the fp32 one
    code, out, err = run_cli(  # its bound, by the same ELBO code
        capsys, "--json", "eval", "sedd", "--artifact", str(tmp_path / "q"), "--data", str(corpus), "--max-seqs", "4"
    )
    assert code == 0 and json.loads(out)["artifact_quantization"] == "dynamic-int8", err
    code, _, err = run_cli(
        capsys, "export", "sedd", "--model", str(tiny_model), "--quantize", "int4", "-o", str(tmp_path / "q4")
    )
    assert code == 2 and "int8" in one_line_error(err) and not (tmp_path / "q4").exists()
    code, out, err = run_cli(
        capsys,
        "--json",
        "bench",
        "sedd",
        "--model",
        str(tiny_model),
        "--steps",
        "2",
        "--length",
        "16",
        "--batch",
        "2",
        "--skip-bpc",
        "--quantize",
        "int8",
        "--repeats",
        "3",
    )
    assert code == 0, err
    bench = json.loads(out)
    rows = bench["ort_int8"]
    assert set(rows["samples_per_s"]) == set(rows["same_tokens_as_fp32"]) == {"2"}
    assert bench["repeats"] == 3  # each rate is the median of three timed draws, all reported
    for path, rates in (
        ("torch", bench["torch_samples_per_s"]),
        ("ort", bench["ort_samples_per_s"]),
        ("ort_int8", rows["samples_per_s"]),
    ):
        runs = bench["samples_per_s_runs"][path]["2"]
        assert len(runs) == 3 and rates["2"] == sorted(runs)[1]
    assert 0 <= rows["same_tokens_as_fp32"]["2"] <= 1 and "drawn" not in rows
