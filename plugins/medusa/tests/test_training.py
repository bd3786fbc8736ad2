import contextlib
import json

import numpy as np
import pytest
import torch
from engine_medusa import training
from engine_medusa.heads import load_heads
from engine_medusa.tiny import save_tiny

import engine.cli
from engine.interfaces import GenerationConfig
from engine.testing import run_torchrun


def test_head_targets_shift():
    t = training.head_targets(np.array([10, 11, 12, 13]), 2)
    # h_j predicts tokens[j] with the base head; head 1 -> tokens[j+1], head 2 -> tokens[j+2]
    assert t.tolist() == [[11, 12], [12, 13], [13, -100], [-100, -100]]


def test_loss_is_weighted_sum_of_head_cross_entropies():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 7)
    targets = torch.randint(0, 7, (5, 3))
    targets[0, 2] = -100
    w = training.head_weights(3)
    assert torch.allclose(w, torch.tensor([0.8, 0.64, 0.512]))
    loss, ce = training.medusa_loss(logits, targets, w)
    manual = sum(
        w[k] * torch.nn.functional.cross_entropy(logits[targets[:, k] >= 0, k], targets[targets[:, k] >= 0, k])
        for k in range(3)
    )
    assert torch.allclose(loss, manual)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    save_tiny(root / "base")
    prompts = root / "prompts.jsonl"
    rows = [{"id": i, "category": "chat", "prompt": f"prompt {i} " + "ab" * (i % 5)} for i in range(24)]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGINE_MEDUSA_CACHE", str(root / "cache"))
        yield root


def args(root, out, *extra):
    return [
        "train",
        "medusa",
        "--model",
        str(root / "base"),
        "--prompts",
        str(root / "prompts.jsonl"),
        "--mix",
        "all=24",
        "--max-new-tokens",
        "24",
        "--distill-batch",
        "8",
        "-o",
        str(out),
        "--batch-size",
        "64",
        "--val-fraction",
        "0.25",
        "--lr",
        "0.01",
        *extra,
    ]


def train_main(argv, capsys=None, status=0):
    """`engine --json train medusa ...` in this process; the report, or None without capsys."""
    code = engine.cli.main(["--json", *argv])
    err = capsys.readouterr() if capsys is not None else None
    assert code == status, err.err[-2000:] if err else code
    return json.loads(err.out) if err is not None and status == 0 else None


@contextlib.contextmanager
def interrupted_after(monkeypatch, loss: str, calls: int):
    """The training's loss function `loss` raises KeyboardInterrupt (Ctrl-C) after `calls` calls."""
    real, seen = getattr(training, loss), {"n": 0}

    def crash(*a, **k):
        seen["n"] += 1
        if seen["n"] > calls:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, loss, crash)
    yield
    monkeypatch.setattr(training, loss, real)


def test_medusa1_learns_and_reports_accuracies(setup, capsys):
    report = train_main(args(setup, setup / "m1", "--steps", "40", "--heads", "3"), capsys)
    acc, init = report["val_accuracy"], report["val_accuracy_at_init"]
    assert len(acc["top1"]) == 3 and all(t5 >= t1 for t1, t5 in zip(acc["top1"], acc["top5"], strict=True))
    assert acc["top1"][0] > init["top1"][0]  # head 1 learned something beyond the identity
    log = json.loads((setup / "m1" / "train_log.json").read_text())
    assert log["history"][-1]["loss"] < log["history"][0]["loss"]
    assert log["distill"]["prompts"] == 24
    # data are cached: a second run does not regenerate them
    shard = next((setup / "cache" / "distill").glob("*/shard_00000.npz"))
    mtime = shard.stat().st_mtime
    train_main(args(setup, setup / "m1b", "--steps", "2", "--heads", "3"))
    assert shard.stat().st_mtime == mtime


def test_resume_reproduces_an_uninterrupted_run(setup, monkeypatch):
    train_main(args(setup, setup / "full", "--steps", "20", "--heads", "2", "--checkpoint-every", "5"))
    with interrupted_after(monkeypatch, "medusa_loss", 12):
        train_main(args(setup, setup / "cut", "--steps", "20", "--heads", "2", "--checkpoint-every", "5"), status=130)
    assert not (setup / "cut" / "heads.safetensors").exists()
    train_main(args(setup, setup / "cut", "--steps", "20", "--heads", "2", "--checkpoint-every", "5", "--resume"))
    from safetensors.torch import load_file

    a, b = load_file(str(setup / "full" / "heads.safetensors")), load_file(str(setup / "cut" / "heads.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_medusa2_trains_last_layers_and_heads(setup, capsys):
    report = train_main(
        args(
            setup,
            setup / "m2",
            "--mode",
            "medusa2",
            "--steps",
            "6",
            "--stage1-steps",
            "2",
            "--batch-size",
            "4",
            "--heads",
            "2",
            "--unfreeze-last",
            "1",
        ),
        capsys,
    )
    assert report["mode"] == "medusa2" and len(report["val_accuracy"]["top1"]) == 2
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(setup / "base")
    before = model.model.layers[-1].mlp.up_proj.weight.clone()
    load_heads(setup / "m2", model)  # applies the fine-tuned backbone blocks
    assert not torch.equal(before, model.model.layers[-1].mlp.up_proj.weight)
    assert torch.equal(
        model.model.layers[0].mlp.up_proj.weight,
        AutoModelForCausalLM.from_pretrained(setup / "base").model.layers[0].mlp.up_proj.weight,
    )


def test_ddp_two_processes_gloo(setup):
    train_main(args(setup, setup / "warm", "--steps", "1", "--heads", "2"))  # cache the data first
    out = run_torchrun(["-m", "engine", "--json", *args(setup, setup / "ddp", "--steps", "6", "--heads", "2")])
    result = json.loads(out.stdout)  # rank 0 alone reports
    assert result["world_size"] == 2 and result["steps"] == 6
    assert (setup / "ddp" / "heads.safetensors").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--mix", "chat"], "mix must look like"),
        (["--mode", "medusa3"], "invalid choice: 'medusa3'"),
        (["--heads", "0"], "heads must be >= 1"),
        (["--base", "x"], "unrecognized arguments: --base"),
    ],
)
def test_bad_arguments_are_usage_errors(setup, capsys, extra, message):
    train_main(args(setup, setup / "bad", *extra), capsys=None, status=2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_init_heads_fine_tunes_trained_heads_keeping_their_shape(setup, capsys):
    """--init-heads starts from trained heads: their shape and draft vocabulary are kept whatever
    --heads and --draft-vocab say, and training starts at their accuracy, not at the base's."""
    first, tuned = setup / "ft-first", setup / "ft-tuned"
    shape = ("--kind", "hydra", "--draft-vocab", "40")
    start = train_main(args(setup, first, "--steps", "40", "--heads", "2", *shape), capsys)
    fresh = start["val_accuracy_at_init"]["top1"]
    other = ("--heads", "3", "--kind", "hydra", "--draft-vocab", "50")
    report = train_main(args(setup, tuned, "--steps", "5", *other, "--init-heads", str(first)), capsys)
    at_init = report["val_accuracy_at_init"]["top1"]
    assert len(at_init) == 2 and at_init[0] > fresh[0]  # the trained heads' accuracy (stored as fp16)
    assert at_init == pytest.approx(start["val_accuracy"]["top1"], abs=0.03)
    cfg = json.loads((tuned / "config.json").read_text())
    assert (cfg["num_heads"], cfg["draft_vocab"], cfg["kind"]) == (2, 40, "hydra")
    from safetensors.torch import load_file

    subset = [load_file(str(f / "heads.safetensors"))["vocab_subset"] for f in (first, tuned)]
    assert torch.equal(*subset)


def test_init_heads_of_another_kind_are_refused_in_one_line(setup, capsys):
    train_main(args(setup, setup / "ft-medusa", "--steps", "2", "--heads", "2"))
    capsys.readouterr()
    argv = args(setup, setup / "ft-bad", "--steps", "2", "--kind", "hydra", "--init-heads", str(setup / "ft-medusa"))
    train_main(argv, status=2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds medusa heads" in err[0], err


def test_train_needs_an_output_folder(setup, capsys):
    argv = [a for a in args(setup, setup / "x") if a not in ("-o", str(setup / "x"))]
    train_main(argv, status=2)
    assert "needs -o DIR" in capsys.readouterr().err


def test_head_paths_and_target_rows_by_hand():
    tokens = np.array([7, 8, 9, 10])
    # head i at h_j reads tokens j..j+i and learns the base's distribution at h_{j+i+1}
    np.testing.assert_array_equal(training.head_paths(tokens, 2), [[7, 8], [8, 9], [9, 10], [10, 0]])
    np.testing.assert_array_equal(training.target_rows(4, 2, 100), [[101, 102], [102, 103], [103, -1], [-1, -1]])
    np.testing.assert_array_equal(training.head_targets(tokens, 2), [[8, 9], [9, 10], [10, -100], [-100, -100]])


def test_soft_loss_is_cross_entropy_against_the_base_distribution():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 2, 7), torch.randn(5, 2, 7)
    valid = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 0], [0, 0]], dtype=torch.bool)
    w = torch.tensor([0.8, 0.64])
    loss, per_head = training.soft_loss(student, teacher, valid, w)
    p, logq = teacher.softmax(-1), student.log_softmax(-1)
    for k, n in ((0, 4), (1, 2)):
        manual = sum(-(p[j, k] * logq[j, k]).sum() for j in range(n)) / n
        assert torch.allclose(per_head[k], manual)
        # cross-entropy = entropy of the base + KL(base || head): minimal where the head is the base
        kl = sum((p[j, k] * (p[j, k].log() - logq[j, k])).sum() for j in range(n)) / n
        ent = sum(-(p[j, k] * p[j, k].log()).sum() for j in range(n)) / n
        assert torch.allclose(per_head[k], kl + ent)
    assert torch.allclose(loss, (w * per_head).sum())


def test_frequent_tokens_are_the_base_tokens_by_count_ties_by_id():
    samples = [("a", None, None, np.array([5, 5, 3, 9, 9, 9])), ("b", None, None, np.array([3, 1, 2]))]
    assert training.frequent_tokens(samples, 3, 12).tolist() == [3, 5, 9]
    assert training.frequent_tokens(samples, 4, 12).tolist() == [1, 3, 5, 9]  # 1 before 2: ties by id


@pytest.mark.parametrize("kind", ["hydra", "medusa"])
def test_draft_heads_train_save_and_decode_exactly(setup, capsys, kind):
    out = setup / f"draft-{kind}"
    extra = ("--steps", "40", "--heads", "2", "--kind", kind, "--draft-vocab", "40")
    report = train_main(args(setup, out, *extra), capsys)
    acc, init = report["val_accuracy"], report["val_accuracy_at_init"]
    assert acc["top1"][0] > init["top1"][0]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == kind and cfg["draft_vocab"] == 40
    from engine_medusa.base import load_base
    from engine_medusa.torch_path import MedusaDecoder
    from safetensors.torch import load_file

    stored = load_file(str(out / "heads.safetensors"))["vocab_subset"]
    assert stored.dtype == torch.int64 and len(set(stored.tolist())) == 40  # ids kept exactly, not fp16
    model, codec = load_base(str(setup / "base"))
    heads, _ = load_heads(out, model)
    assert torch.equal(heads.vocab_subset, stored) and type(heads).kind == kind
    config = GenerationConfig(max_new_tokens=16, eos=False)
    dec = MedusaDecoder.from_model(model, codec, heads=out, tree=[[0], [1], [0, 0]], heads_dtype="float32")
    plain = MedusaDecoder.from_model(model, codec, heads=None)
    for prompt in ("prompt 3 abab", "xyz"):
        assert dec.generate(prompt, config).tokens == plain.generate(prompt, config).tokens


def test_a_draft_layer_learns_resumes_exactly_and_decodes_exactly(setup, capsys, monkeypatch):
    extra = ("--kind", "draft", "--heads", "2", "--batch-size", "4", "--steps", "20", "--checkpoint-every", "5")
    report = train_main(args(setup, setup / "dl-full", *extra), capsys)
    acc = report["val_accuracy"]
    assert len(acc["top1"]) == 2 and acc["expected_tokens_per_step"] == pytest.approx(1 + sum(acc["chain"]), abs=1e-3)
    log = json.loads((setup / "dl-full" / "train_log.json").read_text())
    assert log["history"][-1]["loss"] < log["history"][0]["loss"]
    with interrupted_after(monkeypatch, "draft_loss", 12):
        train_main(args(setup, setup / "dl-cut", *extra), status=130)
    train_main(args(setup, setup / "dl-cut", *extra, "--resume"))
    from engine_medusa.base import load_base
    from engine_medusa.torch_path import MedusaDecoder
    from safetensors.torch import load_file

    a, b = (load_file(str(setup / d / "heads.safetensors")) for d in ("dl-full", "dl-cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model, codec = load_base(str(setup / "base"))
    config = GenerationConfig(max_new_tokens=16, eos=False)
    dec = MedusaDecoder.from_model(
        model, codec, heads=setup / "dl-full", tree=[[0], [1], [0, 0]], heads_dtype="float32"
    )
    plain = MedusaDecoder.from_model(model, codec, heads=None)
    for prompt in ("prompt 3 abab", "xyz"):
        assert dec.generate(prompt, config).tokens == plain.generate(prompt, config).tokens


def test_prepare_only_writes_the_data_and_no_heads(setup, capsys):
    report = train_main(args(setup, setup / "prep", "--prepare-only"), capsys)
    assert report["distill"]["batches"] == 3 and report["distill"]["complete"]
    assert not (setup / "prep" / "heads.safetensors").exists()


def test_distill_artifact_answers_with_the_artifacts_own_greedy_loop(setup, capsys):
    """--distill-artifact: the training answers are an exported artifact's greedy tokens on
    onnxruntime, cached apart from the torch base's; an artifact of another base is refused in one
    line before any answer is written."""
    from engine_medusa import data
    from engine_medusa.base import load_base
    from engine_medusa.torch_path import MedusaDecoder

    from engine.artifacts import load_artifact

    train_main(args(setup, setup / "da-heads", "--steps", "2", "--heads", "2"))
    model, codec = load_base(str(setup / "base"))
    art = MedusaDecoder.from_model(model, codec, heads=setup / "da-heads", tree=[[0]]).export_onnx(setup / "da-art")
    capsys.readouterr()
    report = train_main(args(setup, setup / "da", "--prepare-only", "--distill-artifact", str(art)), capsys)
    record = report["distill"]
    assert record["folder"].endswith("-ort") and len(record["artifact"]["manifest_sha256"]) == 12
    samples = data.load_shards(data.cache_root() / "distill" / record["folder"])
    prompts = {str(json.loads(line)["id"]): json.loads(line)["prompt"] for line in open(setup / "prompts.jsonl")}
    greedy = load_artifact(art, provider="cpu", tree=[])
    assert len(samples) == 24
    for sid, tokens, hidden, _ in samples[:6]:
        assert list(tokens) == list(greedy.generate(prompts[sid], GenerationConfig(max_new_tokens=24)).tokens)
        assert hidden.shape == (len(tokens), model.config.hidden_size)
    save_tiny(setup / "other-base", seed=1)
    argv = args(setup, setup / "da-bad", "--prepare-only", "--distill-artifact", str(art))
    argv[argv.index(str(setup / "base"))] = str(setup / "other-base")
    train_main(argv, status=2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the base trained on" in err[0], err
