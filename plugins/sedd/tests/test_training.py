"""Training command: checkpoints, resume, EMA, the AR objective, DDP, Markov-chain oracle."""

import json
import os

import attrs
import numpy as np
import pytest
import torch
from conftest import train_args
from engine_sedd.bundle import load_model_dir, read_config
from engine_sedd.training import lr_at, train

from engine.testing import run_torchrun


def test_warmup_then_cosine_schedule():
    args = train_args(lr=1e-3, warmup=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, args) == pytest.approx(1e-4)
    assert lr_at(9, args) == pytest.approx(1e-3)
    assert lr_at(60, args) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(110, args) == pytest.approx(1e-4)


def test_train_writes_model_and_history(tiny_model):
    cfg = read_config(tiny_model)
    assert cfg["objective"] == "sedd" and cfg["graph"]["name"] == "absorbing"
    assert cfg["training"]["steps"] == 12 and cfg["training"]["weight_decay"] == 0.0
    assert [h["step"] for h in cfg["training"]["history"]] == [6, 12]
    net, _, graph, schedule, tok = load_model_dir(tiny_model)
    assert graph.dim == tok.vocab_size + 1 == net.cfg.vocab


def test_resume_continues_exactly(corpus, tmp_path):
    """12 steps in one go == stop at 6, resume to 12: identical weights (optimizer, EMA,
    learning-rate schedule and data stream all restored)."""
    full = tmp_path / "full"
    train(train_args(data=str(corpus), out=str(full)), log=lambda m: None)
    part = tmp_path / "part"
    train(train_args(data=str(corpus), out=str(part), stop_at=6), log=lambda m: None)
    train(train_args(data=str(corpus), out=str(part), steps=12, resume=True), log=lambda m: None)
    a = load_model_dir(full / "model")[0].state_dict()
    b = load_model_dir(part / "model")[0].state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_resume_refuses_other_config(corpus, tmp_path):
    train(train_args(data=str(corpus), out=str(tmp_path), steps=6), log=lambda m: None)
    with pytest.raises(ValueError, match="different configuration"):
        train(train_args(data=str(corpus), out=str(tmp_path), hidden=64, resume=True), log=lambda m: None)


def test_resume_without_a_checkpoint_says_how_to_start(corpus, tmp_path):
    with pytest.raises(ValueError, match=r"no checkpoint at .*checkpoint\.pt \(start the run without --resume\)$"):
        train(train_args(data=str(corpus), out=str(tmp_path / "new"), steps=6, resume=True), log=lambda m: None)


def test_a_run_can_start_from_a_model_and_resume_without_naming_it_again(corpus, tiny_model, tmp_path):
    """--model: the run begins at that model's weights (a run stopped at step 0 saves them
    unchanged) and records it; stopping and resuming gives the uninterrupted run's weights."""
    args = train_args(data=str(corpus))
    train(attrs.evolve(args, out=str(tmp_path / "zero"), stop_at=0), log=lambda m: None, start_from=tiny_model)
    start = load_model_dir(tiny_model)[0].state_dict()
    for k, v in load_model_dir(tmp_path / "zero" / "model")[0].state_dict().items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=0)
    assert read_config(tmp_path / "zero" / "model")["started_from"] == {"model": str(tiny_model), "steps": 12}
    train(attrs.evolve(args, out=str(tmp_path / "full")), log=lambda m: None, start_from=tiny_model)
    part = str(tmp_path / "part")
    train(attrs.evolve(args, out=part, stop_at=6), log=lambda m: None, start_from=tiny_model)
    train(attrs.evolve(args, out=part, resume=True), log=lambda m: None)
    a = load_model_dir(tmp_path / "full" / "model")[0].state_dict()
    b = load_model_dir(tmp_path / "part" / "model")[0].state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert read_config(tmp_path / "part" / "model")["started_from"]["model"] == str(tiny_model)
    # a start from a warm-started model counts every step its weights have seen
    full = tmp_path / "full" / "model"
    train(attrs.evolve(args, out=str(tmp_path / "chain"), stop_at=0), log=lambda m: None, start_from=full)
    assert read_config(tmp_path / "chain" / "model")["started_from"]["steps"] == args.steps + 12


def test_a_warm_start_may_change_the_dropout(corpus, tiny_model, tmp_path):
    args = train_args(data=str(corpus), out=str(tmp_path), dropout=0.2, stop_at=0)
    train(args, log=lambda m: None, start_from=tiny_model)
    cfg = read_config(tmp_path / "model")
    assert cfg["model"]["dropout"] == 0.2 and cfg["started_from"]["model"] == str(tiny_model)
    start = load_model_dir(tiny_model)[0].state_dict()
    for k, v in load_model_dir(tmp_path / "model")[0].state_dict().items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=0)


def test_starting_from_a_model_of_another_shape_is_one_clear_error(corpus, tiny_model, tmp_path):
    with pytest.raises(ValueError, match=r"--model .*: another configuration than this run's \(model\)$"):
        train(train_args(data=str(corpus), out=str(tmp_path), hidden=64), log=lambda m: None, start_from=tiny_model)
    with pytest.raises(ValueError, match=r"\(objective, model, graph, schedule\)"):
        train(
            train_args(data=str(corpus), out=str(tmp_path), objective="ar"), log=lambda m: None, start_from=tiny_model
        )


def test_ar_objective_same_size(corpus, tmp_path, tiny_model):
    train(train_args(data=str(corpus), out=str(tmp_path), objective="ar"), log=lambda m: None)
    ar, cfg, graph, _, _ = load_model_dir(tmp_path / "model")
    sedd = load_model_dir(tiny_model)[0]
    assert cfg["objective"] == "ar" and graph is None and ar.cfg.causal
    assert ar.num_parameters() == sedd.num_parameters()


def test_ddp_two_gloo_processes(corpus, tmp_path):
    code = (
        "import sys; sys.path.insert(0, {tests!r}); from conftest import train_args;"
        "from engine_sedd.training import train;"
        "train(train_args(data={data!r}, out={out!r}, steps=4, eval_every=4), log=lambda m: None)"
    )
    code = code.format(tests=os.path.dirname(__file__), data=str(corpus), out=str(tmp_path))
    script = tmp_path / "ddp.py"
    script.write_text(code)
    run_torchrun([str(script)])
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["training"]["world_size"] == 2 and cfg["training"]["batch"] == 16


def test_markov_chain_bound_after_short_training(tmp_path):
    """Train a small SEDD on a stationary Markov chain (windows of one long chain are
    stationary samples): the mean bound is >= H - 3 SE and within 10% of H."""
    from engine_sedd.likelihood import sedd_bounds
    from engine_sedd.markov import MarkovChain

    chain = MarkovChain(8, seed=3)
    rng = np.random.default_rng(0)
    tokens = chain.sample(1, 60000, rng)[0]
    path = tmp_path / "chain.txt"
    path.write_text("".join("abcdefgh"[t] for t in tokens))
    train(
        train_args(
            data=str(path),
            out=str(tmp_path),
            length=32,
            hidden=64,
            blocks=2,
            heads=2,
            cond=32,
            batch=64,
            steps=STEPS,
            warmup=20,
            lr=3e-3,
            ema=0.99,
            eval_every=10**6,
        ),
        log=lambda m: None,
    )
    net, _, graph, schedule, _ = load_model_dir(tmp_path / "model")
    held_out = chain.sample(256, 32, np.random.default_rng(1))
    per = sedd_bounds(net, graph, schedule, held_out, n_times=4)
    h = chain.entropy(32)
    se = per.std(ddof=1) / np.sqrt(len(per))
    print(f"markov bound {per.mean():.3f} +- {se:.3f} vs entropy {h:.3f}")
    assert per.mean() >= h - 3 * se
    assert per.mean() <= 1.10 * h


STEPS = 500


def test_uniform_graph_trains_and_samples(corpus, tmp_path):
    from engine_sedd.torch_path import SEDDSampler

    from engine.interfaces import SamplingConfig

    train(train_args(data=str(corpus), out=str(tmp_path), graph="uniform", steps=4), log=lambda m: None)
    cfg = read_config(tmp_path / "model")
    assert cfg["graph"]["name"] == "uniform" and cfg["schedule"]["name"] == "geometric"
    sampler = SEDDSampler(model=tmp_path / "model")
    assert sampler.graph.dim == sampler.tokenizer.vocab_size
    for predictor in ("euler", "analytic"):
        res = sampler.sample(SamplingConfig(num_samples=2, length=24, steps=3, seed=0, predictor=predictor, prefix="A"))
        assert all(t.startswith("A") and len(t) == 24 for t in res.texts)


def test_gradient_accumulation_equals_the_larger_batch(corpus, tmp_path):
    """2 micro-batches of 4 sequences per step == one batch of 8 (the AR loss draws no noise, so
    the same windows give the same gradient up to float summation order)."""
    common = dict(data=str(corpus), objective="ar", steps=3, eval_every=3, ckpt_every=3)
    train(train_args(out=str(tmp_path / "big"), batch=8, **common), log=lambda m: None)
    train(train_args(out=str(tmp_path / "acc"), batch=4, accumulate=2, **common), log=lambda m: None)
    big, acc = (load_model_dir(tmp_path / name / "model")[0].state_dict() for name in ("big", "acc"))
    for k in big:
        torch.testing.assert_close(big[k], acc[k], rtol=1e-5, atol=1e-6)
    record = read_config(tmp_path / "acc" / "model")["training"]
    assert record["batch"] == 8 and record["accumulate"] == 2
    assert record["bf16"] is False and record["dropout"] == 0.0  # how it was trained, on record
    # and it is not a no-op: one micro-batch of 4 is another run
    train(train_args(out=str(tmp_path / "small"), batch=4, **common), log=lambda m: None)
    small = load_model_dir(tmp_path / "small" / "model")[0].state_dict()
    assert any(not torch.allclose(big[k], small[k], atol=1e-6) for k in big)


def test_stratified_time_sampling_trains_another_model_and_is_on_record(corpus, tmp_path):
    common = dict(data=str(corpus), steps=3, eval_every=3, ckpt_every=3)
    for mode in ("uniform", "stratified"):
        train(train_args(out=str(tmp_path / mode), time_sampling=mode, **common), log=lambda m: None)
        assert read_config(tmp_path / mode / "model")["training"]["time_sampling"] == mode
    uniform, stratified = (load_model_dir(tmp_path / m / "model")[0].state_dict() for m in ("uniform", "stratified"))
    assert any(not torch.allclose(uniform[k], stratified[k], atol=1e-6) for k in uniform)
