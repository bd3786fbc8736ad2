"""scripts/average_models.py: the mean of two models' weights, and refusals of models that do not match."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_models.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def variant(model: Path, dest: Path, scale: float, **model_changes) -> Path:
    """A copy of ``model`` with every tensor scaled and its network config changed."""
    shutil.copytree(model, dest)
    tensors = {name: (a * scale).astype(a.dtype) for name, a in load_file(model / "model.safetensors").items()}
    save_file(tensors, dest / "model.safetensors")
    config = json.loads((model / "config.json").read_text())
    config["model"].update(model_changes)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_the_mean_of_two_models_and_its_record(tiny_model, tmp_path):
    other = variant(tiny_model, tmp_path / "other", 3.0, dropout=0.2)  # dropout may differ: no weight depends on it
    result = run(tiny_model, other, "-o", tmp_path / "mean")
    assert result.returncode == 0, result.stderr
    first, second = load_file(tiny_model / "model.safetensors"), load_file(other / "model.safetensors")
    mean = load_file(tmp_path / "mean" / "model.safetensors")
    assert mean.keys() == first.keys()
    for name, a in mean.items():
        assert a.dtype == first[name].dtype
        expected = (first[name].astype(np.float32) + second[name].astype(np.float32)) / 2
        np.testing.assert_allclose(a.astype(np.float32), expected, rtol=1e-3, atol=1e-6)
    config = json.loads((tmp_path / "mean" / "config.json").read_text())
    assert config["averaged_from"] == [str(tiny_model), str(other)]
    assert config["training"] == json.loads((tiny_model / "config.json").read_text())["training"]


def test_models_of_other_networks_are_refused_and_nothing_is_written(tiny_model, tmp_path):
    wider = variant(tiny_model, tmp_path / "wider", 1.0, hidden=999)
    result = run(tiny_model, wider, "-o", tmp_path / "mean")
    assert result.returncode != 0 and "the models' networks differ" in result.stderr
    assert not (tmp_path / "mean").exists()
    result = run(tiny_model, "-o", tmp_path / "mean")
    assert result.returncode != 0 and "at least two models" in result.stderr
