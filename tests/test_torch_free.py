"""The runtime path (artifacts + onnxruntime) works with torch unimportable."""

from __future__ import annotations

import pytest
from onnx_models import add_one_model

from engine.artifacts import write_artifact
from engine.testing import ConformanceError, run_without


def test_blocker_really_blocks():
    with pytest.raises(ConformanceError, match="torch is blocked"):
        run_without("import torch")


def test_artifact_runs_without_torch(tmp_path):
    path = write_artifact(
        tmp_path / "art",
        plugin="toy",
        kind="decoder",
        component="toy",
        files={"model.onnx": add_one_model()},
        models={"main": {"file": "model.onnx", "inputs": ["x"], "outputs": ["y"]}},
    )
    out = run_without(
        "import numpy as np, sys\n"
        "from engine.artifacts import read_artifact\n"
        f"session = read_artifact({str(path)!r}).session('main', 'auto')\n"
        "print(session.run(['y'], {'x': np.zeros(2, np.float32)})[0].tolist())\n"
        "assert 'torch' not in sys.modules\n"
    )
    assert out.strip() == "[1.0, 1.0]"
