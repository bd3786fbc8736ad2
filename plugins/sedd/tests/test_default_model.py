"""The committed default model: fp16 safetensors within budget, loadable, samples at length 256."""

import json
import subprocess
import sys

from engine_sedd.bundle import read_config
from engine_sedd.component import DEFAULT_AR, DEFAULT_MODEL
from safetensors import safe_open


def test_default_weights_are_small_fp16_and_described():
    for folder in (DEFAULT_MODEL, DEFAULT_AR):
        weights = folder / "model.safetensors"
        assert weights.stat().st_size <= 20 * 2**20
        with safe_open(str(weights), "np") as f:
            assert all(f.get_tensor(k).dtype.name == "float16" for k in f.keys())
    sedd, ar = read_config(DEFAULT_MODEL), read_config(DEFAULT_AR)
    assert sedd["objective"] == "sedd" and sedd["graph"]["name"] == "absorbing" and ar["objective"] == "ar"
    assert sedd["model"]["max_len"] >= 256 and sedd["tokenizer"]["kind"] == "char"
    for cfg in (sedd, ar):
        assert cfg["training"]["data"] == "tinyshakespeare.txt" and cfg["training"]["train_fraction"] == 0.9
    assert sedd["training"]["steps"] == ar["training"]["steps"]
    assert sedd["training"]["parameters"] == ar["training"]["parameters"]


def test_engine_sample_on_default_model():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "--json",
            "sample",
            "sedd",
            "--steps",
            "4",
            "--length",
            "256",
            "--seed",
            "0",
            "--prefix",
            "ROMEO:",
            "--fix",
            "128=the king",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (text,) = json.loads(done.stdout)["texts"]
    assert len(text) == 256 and text.startswith("ROMEO:") and text[128:136] == "the king"
