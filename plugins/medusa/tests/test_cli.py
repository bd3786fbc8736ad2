"""The plugin through the `engine` command line (in this process), on a tiny random model."""

import contextlib
import io
import json

import pytest
from engine_medusa.tiny import save_tiny

import engine.cli


def engine_main(*args):
    """(exit status, stdout, stderr) of `engine ARGS...`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = engine.cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def ok(*args):
    code, out, err = engine_main(*args)
    assert code == 0, err[-2000:]
    return out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_tiny(root / "base")
    (root / "p.jsonl").write_text(
        "".join(json.dumps({"id": i, "prompt": f"tell me {i} things"}) + "\n" for i in range(12))
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGINE_MEDUSA_CACHE", str(root / "cache"))
        out, _ = ok(
            "--json",
            "train",
            "medusa",
            "--model",
            str(root / "base"),
            "--prompts",
            str(root / "p.jsonl"),
            "--mix",
            "all=12",
            "--max-new-tokens",
            "20",
            "--distill-batch",
            "6",
            "--steps",
            "30",
            "--batch-size",
            "64",
            "--lr",
            "0.01",
            "--val-fraction",
            "0.2",
            "-o",
            str(root / "heads"),
        )
        report = json.loads(out)
        assert len(report["val_accuracy"]["top1"]) == 4
        yield root


@pytest.fixture(scope="module")
def artifact(trained):
    out, err = ok(
        "--json", "export", "medusa", "-o", str(trained / "art"), *common(trained), "--tree", "[[0],[1],[0,0]]"
    )
    assert json.loads(out)["artifact"] == str(trained / "art")
    return trained / "art"


def common(trained):
    return ["--heads", str(trained / "heads"), "--model", str(trained / "base")]


def decoded(*args):
    out, err = ok("--json", "decode", "medusa", *args)
    return json.loads(out)["results"], err


TUNE = ("--limit", "3", "--skip", "0", "--max-new-tokens", "16", "--max-nodes", "8", "--past", "16")


def test_tune_tree_caches_a_tree_for_this_device_and_decoding_uses_it(trained):
    from engine_medusa.torch_path import MedusaDecoder

    from engine.tuned import device_id, digest_of, tuned_path

    prompts = ("--prompts", str(trained / "p.jsonl"))
    out, _ = ok("--json", "medusa", "tune-tree", *common(trained), *prompts, *TUNE, "--threads", "1", "--write-heads")
    device = device_id("torch", 1)
    assert json.loads(out)["device"] == device
    cached = tuned_path("medusa", digest_of(trained / "heads" / "heads.safetensors"), device)
    tree = json.loads(cached.read_text())
    assert tree["tuned_on"] == "torch" and len(tree["rank_accuracy"]) == 4
    assert len(tree["choices"]) + 1 <= 8 and set(tree["latency_ms"]) >= {"1", "2", "8"}
    assert json.loads((trained / "heads" / "tree.json").read_text())["choices"] == tree["choices"]
    here = MedusaDecoder(model=str(trained / "base"), heads=str(trained / "heads"), threads=1)
    assert here.tree_info["source"].startswith("tuned on this device") and here.tree_info["device"] == device
    elsewhere = MedusaDecoder(model=str(trained / "base"), heads=str(trained / "heads"), threads=2)
    assert elsewhere.tree_info["source"] == "heads (tree.json)"  # 2 threads: another setting


def test_a_tree_stored_for_onnxruntime_alone_leaves_torch_on_the_fallback(tmp_path):
    """tune-tree --write-heads run on an artifact first stores only an onnxruntime tree: the
    torch path then falls back to the small default tree instead of failing on a missing key."""
    from engine_medusa.component import FALLBACK_TREE, read_tree
    from engine_medusa.tuning import write_tree

    write_tree(tmp_path, {"tuned_on": "onnxruntime", "choices": [[0], [0, 0]], "topk": 10})
    assert read_tree(tmp_path, "onnxruntime") == ([[0], [0, 0]], 10)
    assert read_tree(tmp_path, "torch") == (FALLBACK_TREE, 10)
    write_tree(tmp_path, {"tuned_on": "torch", "choices": [[0]], "topk": 10})
    assert read_tree(tmp_path, "torch") == ([[0]], 10)
    assert read_tree(tmp_path, "onnxruntime") == ([[0], [0, 0]], 10)


def test_tune_tree_on_an_artifact_leaves_it_untouched(trained, artifact):
    from engine_medusa.ort_path import OrtMedusaDecoder

    from engine.artifacts import read_artifact

    before = {f.name: f.stat().st_mtime_ns for f in artifact.iterdir()}
    prompts = ("--prompts", str(trained / "p.jsonl"))
    out, _ = ok("--json", "medusa", "tune-tree", "--artifact", str(artifact), *prompts, *TUNE, "--threads", "1")
    assert json.loads(out)["tuned_on"] == "onnxruntime"
    assert {f.name: f.stat().st_mtime_ns for f in artifact.iterdir()} == before
    dec = OrtMedusaDecoder(read_artifact(artifact), provider="cpu", threads=1)  # verifies every sha256
    assert dec.tree_info["source"].startswith("tuned on this device")
    assert dec.tree_info["choices"] == json.loads(out)["choices"]
    assert (
        OrtMedusaDecoder(read_artifact(artifact), provider="cpu", threads=1, tree=[[0]]).tree_info["source"]
        == "argument"
    )


def test_decode_json_and_bench(trained):
    rows, _ = decoded("hello there", "--max-new-tokens", "12", *common(trained))
    assert 0 < len(rows[0]["tokens"]) <= 12 and rows[0]["steps"] >= 1
    out, _ = ok(
        "--json",
        "bench",
        "medusa",
        *common(trained),
        "--prompts",
        str(trained / "p.jsonl"),
        "--limit",
        "2",
        "--max-new-tokens",
        "16",
    )
    b = json.loads(out)
    for key in (
        "baseline_tokens_per_s",
        "ort_greedy_tokens_per_s",
        "torch_tokens_per_s",
        "ort_tokens_per_s",
        "tokens_per_step",
        "speedup_torch",
        "speedup_ort",
        "speedup_ort_vs_ort_greedy",
        "identical_torch",
        "identical_ort",
        "prompts",
        "device",
    ):
        assert key in b
    assert b["identical_torch"] is True and b["prompts"] == 2
    # the artifact was exported into the cache; both onnxruntime loops gave HF's tokens
    assert b["identical_ort"] is True and b["identical_ort_greedy"] is True and b["ort_tokens_per_s"] > 0
    out, _ = ok(
        "--json",
        "eval",
        "medusa",
        *common(trained),
        "--prompts",
        str(trained / "p.jsonl"),
        "--limit",
        "2",
        "--max-new-tokens",
        "12",
    )
    ev = json.loads(out)
    assert len(ev["top1"]) == 4 and ev["tokens_per_step"] >= 1.0 and ev["prompts"] == 2


def test_export_quantized_and_bench_it_beside_fp32(trained, tmp_path, monkeypatch):
    from engine_medusa.tree import is_chain

    monkeypatch.setenv("ENGINE_MEDUSA_CACHE", str(tmp_path / "cache"))
    tree = ["--tree", "[[0],[1],[0,0]]"]
    out, _ = ok("--json", "export", "medusa", "-o", str(tmp_path / "q"), *common(trained), *tree, "--quantize", "int4")
    assert json.loads((tmp_path / "q" / "manifest.json").read_text())["config"]["quantization"]["bits"] == 4
    rows, _ = decoded("hello", "--max-new-tokens", "8", "--artifact", str(tmp_path / "q"))
    assert 0 < len(rows[0]["tokens"]) <= 8
    args = ["--prompts", str(trained / "p.jsonl"), "--limit", "2", "--max-new-tokens", "16", *tree]
    out, _ = ok("--json", "bench", "medusa", *common(trained), *args, "--quantize", "int4,int8")
    b = json.loads(out)
    for q in ("", "_int4", "_int8"):
        assert b[f"ort_greedy{q}_tokens_per_s"] > 0 and b[f"ort{q}_tokens_per_s"] > 0
        assert b[f"identical_ort{q}_vs_ort_greedy{q}"] is True  # Medusa is exact over each base
        assert b[f"ort_greedy{q}_prefill_ms"] > 0  # reading the prompt, part of every tokens/s row
    assert 0 <= b["greedy_match_int4"] <= 1 and 0 <= b["prefix_agreement_int8"] <= 1
    assert "llama_cpp_tokens_per_s" not in b and "llama_cpp_prefill_ms" not in b  # the tiny base has no GGUF
    made = sorted(p.name.split("-")[1] for p in (tmp_path / "cache" / "artifacts").iterdir())
    assert len(made) == 3 and made[1:] == ["int4", "int8"]  # fp32 exported once, then quantized from it
    assert b["ort_int4_tree"]["source"] == "argument"
    # a tree tuned for the int4 copy on this device is the one its Medusa row runs; fp32 keeps its own
    (int4,) = (tmp_path / "cache" / "artifacts").glob("medusa-int4-*")
    prompts = ("--prompts", str(trained / "p.jsonl"))
    tuned, _ = ok("--json", "medusa", "tune-tree", "--artifact", str(int4), *prompts, *TUNE, "--threads", "1")
    args = [*args[:-2], "--threads", "1"]
    b = json.loads(ok("--json", "bench", "medusa", *common(trained), *args, "--quantize", "int4")[0])
    assert b["ort_int4_tree"]["source"].startswith("tuned on this device")
    assert b["ort_int4_tree"]["choices"] == json.loads(tuned)["choices"]
    assert is_chain(json.loads(tuned)["choices"])  # a quantized copy: chains only, unless --any-tree
    assert b["ort_declares_exact_greedy"] is True  # fp32
    if b["ort_int4_declares_exact_greedy"]:  # a chain, and this CPU's kernels passed the probe
        assert b["identical_ort_int4_vs_ort_greedy_int4"] is True
    assert not b["ort_tree"]["source"].startswith("tuned")
    code, _, err = engine_main("bench", "medusa", *common(trained), "--quantize", "int5")
    assert code == 2 and "int5" in err and len(err.strip().splitlines()) == 1


def test_decode_batch_from_a_prompts_file_and_streaming(trained, tmp_path):
    out, _ = ok(
        "--json", "decode", "medusa", "--prompts", str(trained / "p.jsonl"), "--max-new-tokens", "6", *common(trained)
    )
    rows, batch = json.loads(out)["results"], json.loads(out)["batch"]
    assert len(rows) == 12 and all(0 < len(r["tokens"]) <= 6 for r in rows)
    # decoded together: one rate for the batch, none per row (the rows share its wall time)
    assert all(r["tokens_per_s"] is None for r in rows) and batch["prompts"] == 12
    assert batch["new_tokens"] == sum(len(r["tokens"]) for r in rows) and batch["tokens_per_s"] > 0
    out, err = ok("decode", "medusa", "tell me 1 things", "--max-new-tokens", "6", *common(trained))
    assert out.rstrip("\n") == rows[1]["text"] and "tokens/step" in err
    ok("decode", "medusa", "a", "b", "--max-new-tokens", "4", "-o", str(tmp_path / "out.jsonl"), *common(trained))
    assert [json.loads(line)["prompt"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == ["a", "b"]


def test_medusa_options_are_flags_of_every_building_verb():
    for verb in ("decode", "export", "eval", "bench"):
        out, _ = ok(verb, "medusa", "--help")
        assert "medusa options" in out
        for flag in ("--heads", "--tree", "--topk", "--sampling", "--chat", "--heads-dtype"):
            assert flag in out, (verb, flag)
    out, _ = ok("train", "medusa", "--help")
    for flag in ("--mix", "--distill-dtype", "--mode", "--resume", "--stage1-steps", "-o OUTPUT"):
        assert flag in out
    assert "--tree JSON" not in out and "--artifact ARTIFACT" not in out
    assert "--limit" in ok("eval", "medusa", "--help")[0]
    bench_help = ok("bench", "medusa", "--help")[0]
    assert "--skip-ort" in bench_help and "--quantize int4,int8" in bench_help and "--no-llama-cpp" in bench_help
    assert "shared" not in ok("decode", "medusa", "--help")[0]  # no remark on a particular machine


def test_the_artifact_decodes_as_torch_does(trained, artifact):
    n = ["--max-new-tokens", "10", "--no-eos"]
    torch_rows, _ = decoded("hello", *n, "--tree", "[[0],[1],[0,0]]", *common(trained))
    ort_rows, _ = decoded("hello", *n, "--artifact", str(artifact), "--provider", "cpu")
    assert ort_rows[0]["tokens"] == torch_rows[0]["tokens"]
    # --tree applies on both paths: a root-only tree is plain greedy decoding, the same tokens
    plain, _ = decoded("hello", *n, "--artifact", str(artifact), "--tree", "[]")
    assert plain[0]["tokens"] == torch_rows[0]["tokens"] and plain[0]["steps"] == 10
    deep = json.dumps([[0] * d for d in range(1, 6)])
    code, _, err = engine_main("decode", "medusa", "hi", "--artifact", str(artifact), "--tree", deep)
    assert code == 2 and "deeper than the 4 heads" in err


def test_deprecated_onnx_flag_still_runs_the_artifact(trained, artifact):
    rows, err = decoded("hello", "--max-new-tokens", "10", "--onnx", str(artifact))
    assert "--onnx is deprecated, use --artifact" in err
    want, _ = decoded("hello", "--max-new-tokens", "10", "--artifact", str(artifact))
    assert rows[0]["tokens"] == want[0]["tokens"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["decode", "medusa", "   "], "is empty"),
        (["decode", "medusa", "hi", "--max-new-tokens", "0"], "max_new_tokens"),
        (["decode", "medusa", "hi", "--heads", "/nonexistent"], "no Medusa heads"),
        (["decode", "medusa", "hi", "--tree", "[[0]"], "expected JSON rank paths"),
        (["decode", "medusa", "hi", "--tree", "[[0],[0,0,0,0,0]]"], "deeper than the 4 heads"),
        (["decode", "medusa", "hi", "--tree", "[[0,0]]"], "has no parent"),
        (["decode", "medusa", "hi", "--sampling", "greedy"], "choose lossless or typical"),
        (["decode", "medusa", "hi", "--chat", "maybe"], "choose yes, no or auto"),
        (["decode", "medusa", "hi", "--device", "cuda"], "runs on the CPU"),
        (["decode", "medusa", "hi", "--artifact", "ART", "--heads", "x"], "--heads does not apply to the onnxruntime"),
        (["decode", "medusa", "hi", "--artifact", "ART", "--chat", "no"], "--chat does not apply to the onnxruntime"),
        (["decode", "medusa", "hi", "--provider", "cpu"], "--provider applies only with --artifact"),
        (["eval", "medusa", "--artifact", "ART"], "drop --artifact"),
        (["export", "medusa"], "needs -o DEST"),
        (["medusa", "grow"], "unknown medusa command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained, args, message):
    if args[0] in ("decode", "eval") and "--artifact" not in args:
        heads = [] if "--heads" in args else ["--heads", str(trained / "heads")]
        args = [*args, "--model", str(trained / "base"), *heads]
    code, _, err = engine_main(*args)
    assert code == 2, (code, err[-1500:])
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert message in lines[-1] and len(lines) == 1, err


def test_a_crashing_llama_cpp_costs_its_row_not_the_bench():
    """llama.cpp runs in a child process: a build with instructions this CPU refuses (SIGILL)
    ends that process, the bench goes on without the row; so it does when llama.cpp refuses the
    model file. The other runners still time every prompt, taken in turn."""
    import operator
    import signal

    from engine_medusa.bench import ChildProcess, RunnerGone, interleaved, llama_cpp_runner

    child = ChildProcess()
    try:
        assert child.call(operator.add, 2, 3) == 5
        with pytest.raises(RunnerGone, match="process died"):
            child.call(signal.raise_signal, signal.SIGILL)
    finally:
        child.close()
    child, order, logged = ChildProcess(), [], []

    def counted(i, warmup):
        order.append((i, warmup))
        return [7] * (i + 1), i + 1, 0.5

    try:
        runners = {
            "llama_cpp": ("llama.cpp", llama_cpp_runner(child, "/no/such.gguf", 1, [[1, 2]] * 3, (), 4)),
            "counted": ("counted", counted),
        }
        res = interleaved(runners, 3, logged.append)
    finally:
        child.close()
    assert set(res) == {"counted"} and order == [(0, True), (0, False), (1, False), (2, False)]
    assert res["counted"]["outputs"] == [[7], [7, 7], [7, 7, 7]] and res["counted"]["tokens_per_s"] == 6 / 1.5
    assert logged[0].startswith("llama.cpp: ") and logged[0].endswith(": skipped") and len(logged) == 2
