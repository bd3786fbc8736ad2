import attrs
import pytest

from engine.datasets import shared_data
from engine.runtime import use_torch_threads

use_torch_threads(1)

DATA = shared_data("text", "tinyshakespeare.txt")


@pytest.fixture(scope="session", autouse=True)
def only_this_plugin():
    """The engine loads only SEDD here (in this process and the interpreters it starts)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENGINE_PLUGINS", "sedd")
        yield


def train_args(**overrides):
    """A tiny TrainOptions (one thread)."""
    from engine_sedd.options import TrainOptions

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
        threads=1,
    )
    return attrs.evolve(TrainOptions(), **{**tiny, **overrides})


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
    from engine_sedd.torch_path import SEDDSampler

    return SEDDSampler(model=tiny_model).export_onnx(tmp_path_factory.mktemp("artifact") / "sedd")


@pytest.fixture(scope="session")
def tiny_ar(corpus, tmp_path_factory):
    from engine_sedd.training import train

    out = tmp_path_factory.mktemp("tiny_ar")
    train(train_args(data=str(corpus), out=str(out), objective="ar"), log=lambda m: None)
    return out / "model"
