"""engine.doctor: a complete report that never raises, honest provider probes, no heavy imports."""

from __future__ import annotations

import json
import sys

import pytest

import engine
from engine import doctor
from engine.testing import run_without

KEYS = {
    *("engine_core", "plugins", "python", "platform", "cpu", "torch", "gpus"),
    *("onnxruntime", "providers", "hints", "errors"),
}


@pytest.fixture(scope="module")
def full_report():
    return doctor.report()


def test_report_has_every_key_and_is_json(full_report):
    assert KEYS <= set(full_report)
    assert full_report["engine_core"] == engine.__version__
    assert full_report["errors"] == []
    assert json.loads(json.dumps(full_report)) == full_report
    for row in full_report["plugins"]:
        assert set(row) == {"name", "distribution", "version"}
    cpu = full_report["cpu"]
    assert cpu["logical_cores"] >= 1
    if sys.platform.startswith("linux"):
        assert set(cpu["features"]) == set(doctor.CPU_FEATURES)


def test_cpu_provider_runs(full_report):
    pytest.importorskip("onnxruntime")
    cpu = full_report["providers"]["CPUExecutionProvider"]
    assert cpu == {"listed": True, "runs": True, "error": None}


def test_format_report_is_text_with_versions(full_report):
    text = doctor.format_report(full_report)
    assert f"engine-core {engine.__version__}" in text
    assert f"python {full_report['python']['version']}" in text
    for row in full_report["plugins"]:
        assert f"plugin {row['name']}: {row['distribution']} {row['version']}" in text
    if full_report["onnxruntime"]:
        assert f"onnxruntime {full_report['onnxruntime']['version']}" in text
        assert "provider CPUExecutionProvider: runs" in text
    assert all(line.strip() for line in text.splitlines())


def test_failing_provider_is_reported_not_raised(monkeypatch):
    ort = pytest.importorskip("onnxruntime")

    def broken(*args, **kwargs):
        raise RuntimeError("no such device\nsecond line of a long trace")

    monkeypatch.setattr(ort, "InferenceSession", broken)
    result = doctor.report()
    cpu = result["providers"]["CPUExecutionProvider"]
    assert cpu["runs"] is False
    assert cpu["error"] == "RuntimeError: no such device"
    assert "does not run: RuntimeError: no such device" in doctor.format_report(result)


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_fallback_to_another_provider_is_not_runs(monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    real = ort.InferenceSession

    class FallsBack(real):
        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(ort, "InferenceSession", FallsBack)
    result = doctor.probe_provider(ort, "CUDAExecutionProvider", timeout=30)
    assert result["runs"] is False and "fell back to CPUExecutionProvider" in result["error"]


def test_hung_probe_is_bounded(monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    import threading

    release = threading.Event()
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: release.wait(10))
    try:
        result = doctor.probe_provider(ort, "CPUExecutionProvider", timeout=0.2)
    finally:
        release.set()
    assert result["runs"] is False and result["error"].startswith("TimeoutError")


def test_no_onnxruntime_gives_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    monkeypatch.setattr("engine.runtime.installed_runtimes", lambda: [])
    result = doctor.report()
    assert result["onnxruntime"] is None and result["providers"] == {}
    assert any("engine-core[runtime]" in hint for hint in result["hints"])
    assert "onnxruntime: not installed" in doctor.format_report(result)


def test_cpu_features_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 avx512vnni amx_tile\n\nmodel name\t: Test CPU\n")
    cpu = doctor._cpu(info)
    assert cpu["model"] == "Test CPU"
    assert cpu["features"]["avx2"] and cpu["features"]["avx512_vnni"] and cpu["features"]["amx_tile"]
    assert not cpu["features"]["avx512f"] and not cpu["features"]["amx_int8"]
    assert cpu["int8_kernels"] == "AVX-512 VNNI"
    assert doctor._cpu(tmp_path / "absent")["features"] == {}


@pytest.mark.parametrize(
    "flags, kernels",
    [
        ("avx2 avx512f avx512_vnni amx_tile amx_int8", "AMX"),
        ("avx2 avx_vnni", "AVX-VNNI"),
        ("avx2 avx512f", "AVX-512 without VNNI (16-bit pair sums)"),
        ("avx2", "AVX2 without VNNI (16-bit pair sums)"),
        ("sse4_2", "generic (no AVX2)"),
    ],
)
def test_int8_kernels_name_the_best_instructions(tmp_path, flags, kernels):
    info = tmp_path / "cpuinfo"
    info.write_text(f"flags\t\t: fpu {flags}\n")
    cpu = doctor._cpu(info)
    assert cpu["int8_kernels"] == kernels
    assert f"int8 kernels: {kernels}" in doctor.format_report({"cpu": cpu})
    assert doctor._cpu(tmp_path / "absent")["int8_kernels"] is None


@pytest.mark.parametrize("gpus", [[], ["NVIDIA H200, 143771 MiB"]])
def test_a_gpu_beside_an_onnxruntime_without_cuda_gets_a_hint(monkeypatch, gpus):
    """Seen on a GPU machine whose onnxruntime was the CPU build: artifacts ran on the CPU."""
    monkeypatch.setattr(doctor, "gpu_names", lambda: gpus)
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: ["CPUExecutionProvider"])
    result = doctor.report()
    assert result["gpus"] == gpus and list(result["providers"]) == ["CPUExecutionProvider"]
    assert (doctor.NO_CUDA_RUNTIME_HINT in result["hints"]) == bool(gpus)
    text = doctor.format_report(result)
    assert ("gpu NVIDIA H200, 143771 MiB" in text) == bool(gpus)


def test_gpu_names_without_nvidia_smi(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert doctor.gpu_names() == []


def test_doctor_stays_light():
    # Record attempted imports in front of run_without's blocker: a caught attempt counts too.
    out = run_without(
        "import importlib.abc, json, sys\n"
        "tried = []\n"
        "class Spy(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            tried.append(name)\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import engine.doctor\n"
        "report = engine.doctor.report()\n"
        "print(json.dumps({'tried': tried, 'errors': report['errors']}))\n"
    )
    assert json.loads(out.strip().splitlines()[-1]) == {"tried": [], "errors": []}
