import argparse
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "text" / "tinyshakespeare.txt"


def train_args(**overrides) -> argparse.Namespace:
    from engine_sedd.training import build_parser

    args = build_parser().parse_args([])
    tiny = dict(
        length=32,
        hidden=32,
        blocks=1,
        heads=2,
        cond=16,
        batch=8,
        steps=12,
        warmup=4,
        eval_every=6,
        eval_seqs=4,
        eval_times=2,
        ckpt_every=6,
        save_dtype="fp32",
    )
    tiny.update(overrides)
    for k, v in tiny.items():
        setattr(args, k, v)
    return args


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small slice of tinyshakespeare (skips only when the shared data is absent)."""
    if not DATA.is_file():
        pytest.skip(f"shared data not found: {DATA}")
    path = tmp_path_factory.mktemp("corpus") / "shakespeare_head.txt"
    path.write_text(DATA.read_text(encoding="utf-8")[:40000], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(corpus, tmp_path_factory):
    from engine_sedd.training import train

    out = tmp_path_factory.mktemp("tiny_sedd")
    train(train_args(data=str(corpus), out=str(out)), log=lambda m: None)
    return out / "model"


@pytest.fixture(scope="session")
def tiny_artifact(tiny_model, tmp_path_factory):
    from engine_sedd.component import SEDDSampler

    return SEDDSampler(tiny_model).export_onnx(tmp_path_factory.mktemp("artifact") / "sedd")


@pytest.fixture(scope="session")
def tiny_ar(corpus, tmp_path_factory):
    from engine_sedd.training import train

    out = tmp_path_factory.mktemp("tiny_ar")
    train(train_args(data=str(corpus), out=str(out), objective="ar"), log=lambda m: None)
    return out / "model"
