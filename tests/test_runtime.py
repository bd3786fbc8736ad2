"""Provider selection: auto, cpu, and a demanded GPU that is not there."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_models import add_one_model, run_add_one

from engine import runtime
from engine.errors import ProviderError, UsageError


def test_cpu_session_runs_and_reports_providers():
    session = runtime.create_session(add_one_model(), "cpu")
    assert runtime.active_providers(session) == ["CPUExecutionProvider"]
    assert runtime.device_of(session) == "cpu"
    np.testing.assert_array_equal(run_add_one(session), [1, 2, 3])


def test_auto_uses_what_really_loaded():
    session = runtime.create_session(add_one_model(), "auto")
    assert runtime.active_providers(session)[-1] == "CPUExecutionProvider"
    np.testing.assert_array_equal(run_add_one(session), [1, 2, 3])


@pytest.mark.skipif("CUDAExecutionProvider" in runtime.available_providers(), reason="a GPU build is installed")
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_demanded_gpu_absent_is_a_clear_error(provider):
    with pytest.raises(ProviderError, match=f"provider '{provider}' was requested but this onnxruntime build offers"):
        runtime.create_session(add_one_model(), provider)


class _FakeSession:
    """What onnxruntime-gpu does on a machine without CUDA: it silently runs on the CPU."""

    def __init__(self, *args, **kwargs):
        pass

    def get_providers(self):
        return ["CPUExecutionProvider"]


def test_silent_cpu_fallback_is_refused(monkeypatch):
    ort = runtime._onnxruntime()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", _FakeSession)
    with pytest.raises(ProviderError, match="could not start it"):
        runtime.create_session(b"model", "cuda")
    assert runtime.active_providers(runtime.create_session(b"model", "auto")) == ["CPUExecutionProvider"]


def test_unknown_provider():
    with pytest.raises(UsageError, match="choose one of auto, cpu, cuda, tensorrt"):
        runtime.create_session(add_one_model(), "rocm")


def test_both_runtime_builds_installed_are_detected(monkeypatch):
    versions = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}

    def version(dist):
        if dist in versions:
            return versions[dist]
        raise runtime.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(runtime.metadata, "version", version)
    message = runtime.runtime_conflict()
    assert "onnxruntime 1.32.0, onnxruntime-gpu 1.31.1" in message and "uninstall all but one" in message
    versions.pop("onnxruntime-gpu")
    assert runtime.runtime_conflict() is None
