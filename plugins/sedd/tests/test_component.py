"""The sampler component, the plugin contract, the onnxruntime path and the CLI."""

import json
import subprocess
import sys

import engine_sedd.plugin
import numpy as np
import pytest
from engine_sedd.component import SEDDSampler

from engine.interfaces import SamplingConfig


@pytest.fixture(scope="module")
def sampler(tiny_model):
    return SEDDSampler(tiny_model)


def test_conformance(tiny_model, tmp_path):
    import engine.testing

    engine.testing.check_plugin(engine_sedd.plugin, tmp_path=tmp_path, options={"sedd": {"model": str(tiny_model)}})


def test_sample_infills_prefix_suffix_and_fixed(sampler):
    cfg = SamplingConfig(num_samples=3, length=32, steps=8, seed=0, prefix="ROMEO:", suffix="\n", fixed={10: "the"})
    res = sampler.sample(cfg)
    for text in res.texts:
        assert len(text) == 32 and text.startswith("ROMEO:") and text.endswith("\n")
        assert text[10:13] == "the" and "\u2591" not in text  # no MASK left
    euler = sampler.sample(SamplingConfig(num_samples=2, length=20, steps=3, seed=1, predictor="euler"))
    assert all(len(t) == 20 for t in euler.texts)


def test_bf16_torch_sampler(tiny_model):
    res = SEDDSampler(tiny_model, dtype="bf16").sample(SamplingConfig(num_samples=2, length=16, steps=3, seed=0))
    assert all(len(t) == 16 for t in res.tokens)
    with pytest.raises(ValueError, match="dtype must be fp32 or bf16"):
        SEDDSampler(tiny_model, dtype="fp8")


def test_bad_input_is_one_clear_error(sampler):
    with pytest.raises(ValueError, match="characters not in the model's vocabulary: '~'"):
        sampler.sample(SamplingConfig(length=16, steps=2, prefix="~"))
    with pytest.raises(ValueError, match="length 33 exceeds the model's maximum 32"):
        sampler.sample(SamplingConfig(length=33, steps=2))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sampler.sample({"steps": 0})
    with pytest.raises(ValueError, match="outside 0..15"):
        sampler.sample(SamplingConfig(length=16, steps=2, fixed={16: "a"}))
    with pytest.raises(TypeError):
        sampler.sample("steps=4")
    with pytest.raises(FileNotFoundError, match="no SEDD model"):
        SEDDSampler("/nonexistent/model")


def test_onnxruntime_sampler_matches_torch_exactly(sampler, tiny_artifact):
    """Same seed, same float64 draws: identical tokens, and raw outputs agree to ~1e-5,
    for a batch and length other than the export's sample input (dynamic axes)."""
    import engine

    ort_sampler = engine.load_artifact(tiny_artifact, provider="cpu")
    x = np.random.default_rng(0).integers(0, sampler.graph.dim, size=(3, 27))
    sb = np.array([1e-4, 0.5, 6.9])
    np.testing.assert_allclose(ort_sampler.raw_output(x, sb), sampler.raw_output(x, sb), atol=2e-5, rtol=1e-5)
    for predictor in ("analytic", "euler"):
        cfg = SamplingConfig(num_samples=4, length=32, steps=16, seed=3, predictor=predictor, prefix="ROMEO")
        assert ort_sampler.sample(cfg).tokens == sampler.sample(cfg).tokens


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


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_sample_eval_and_errors(tiny_model, tiny_artifact):
    draw = ("--steps", "4", "--length", "24", "--num-samples", "2", "--seed", "0", "--prefix", "AB", "--fix", "20=xyz")
    done = run_cli("--json", "sample", "sedd", "--model", str(tiny_model), *draw)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [t[:2] for t in out["texts"]] == ["AB", "AB"] and all(t[20:23] == "xyz" for t in out["texts"])
    ort = run_cli("--json", "sample", "sedd", "--artifact", str(tiny_artifact), "--provider", "cpu", *draw)
    assert json.loads(ort.stdout)["texts"] == out["texts"]
    bad = run_cli("sample", "sedd", "--model", str(tiny_model), "--steps", "0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "steps" in bad.stderr
    bad = run_cli("sample", "sedd", "--model", str(tiny_model), "--length", "999")
    assert bad.returncode == 2 and "exceeds the model's maximum" in bad.stderr
    bad = run_cli("sample", "sedd", "--model", str(tiny_model), "--length", "8", "--prefix", "é")
    assert bad.returncode == 2 and bad.stderr.strip().endswith("vocabulary: 'é'")
    bad = run_cli("sample", "sedd", "--model", str(tiny_model), "--length", "8", "--predictor", "leap")
    assert (
        bad.returncode == 2 and bad.stderr.strip() == "engine: error: unknown predictor 'leap'; known: analytic, euler"
    )


def test_cli_eval_bound_next_to_ar(tiny_model, tiny_ar, corpus):
    done = run_cli(
        "--json",
        "eval",
        "sedd",
        "--model",
        str(tiny_model),
        "--ar",
        str(tiny_ar),
        "--data",
        str(corpus),
        "--times",
        "3",
        "--max-seqs",
        "6",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["sedd_sequences"] == out["ar_sequences"] == 6
    assert out["sedd_likelihood"].startswith("upper bound") and out["ar_likelihood"] == "exact"
    assert out["bpc_ratio"] == pytest.approx(out["sedd_bpc"] / out["ar_bpc"])
    assert out["sedd_bpc_se"] > 0 and out["sedd_parameters"] == out["ar_parameters"]
    missing = run_cli("eval", "sedd", "--model", str(tiny_model))
    assert missing.returncode == 1 and "corpus not found" in missing.stderr
    with pytest.raises(ValueError, match="autoregressive baseline"):
        SEDDSampler(tiny_ar)


def test_cli_bench_reports_the_issue_keys(tiny_model, tiny_ar, corpus):
    done = run_cli(
        "--json",
        "bench",
        "sedd",
        "--model",
        str(tiny_model),
        "--ar",
        str(tiny_ar),
        "--data",
        str(corpus),
        "--steps",
        "2",
        "4",
        "--length",
        "32",
        "--batch",
        "2",
        "--eval-seqs",
        "4",
        "--eval-times",
        "2",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
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
    assert out["bpc_ratio"] == pytest.approx(out["sedd_bpc_bound"] / out["ar_bpc"])
    assert set(out["gen_bpc_under_ar"]) == {"2", "4"} and all(v > 0 for v in out["gen_bpc_under_ar"].values())


def test_cli_train_and_export(corpus, tmp_path):
    tiny = ["--length", "16", "--hidden", "16", "--blocks", "1", "--heads", "2", "--cond", "8", "--batch", "4"]
    done = run_cli(
        "--json",
        "--quiet",
        "train",
        "sedd",
        "--data",
        str(corpus),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--eval-seqs",
        "2",
        *tiny,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] == 3 and (tmp_path / "run" / "model" / "model.safetensors").is_file()
    bad = run_cli("train", "sedd", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and "corpus not found" in bad.stderr and not (tmp_path / "x" / "model").exists()
    out = run_cli("--json", "export", "sedd", "--model", str(tmp_path / "run" / "model"), "--out", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["models"]["score_net"]["inputs"] == ["tokens", "sigma_bar"]
