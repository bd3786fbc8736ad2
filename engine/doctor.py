"""``engine.doctor``: what is installed and what really runs, for bug reports and support.

:func:`report` never raises and never imports torch, transformers or the plugins (versions
come from package metadata); each probe is bounded in time. It tries every execution
provider that onnxruntime lists on the bundled ``data/probe.onnx``, because a listed
provider may fail to load and onnxruntime then falls back to the CPU silently.

``data/probe.onnx`` (Y = X + 1, float32 [N], opset 17, ir_version 8, 103 bytes) was made once
by hand with the onnx package::

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N"])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["X", "one"], ["Y"])], "probe", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="engine-doctor")
    model.ir_version = 8  # old onnxruntime builds refuse newer IR versions
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, "engine/data/probe.onnx")
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

RUNTIME_HINT = "pip install 'engine-core[runtime]' (or 'engine-core[gpu]' on a CUDA machine)"
NO_CUDA_RUNTIME_HINT = (
    "this machine has an NVIDIA GPU but this onnxruntime build has no CUDA provider, so artifacts run on "
    "the CPU: pip uninstall onnxruntime, then pip install 'engine-core[gpu]' (onnxruntime-gpu)"
)
PROBE_TIMEOUT_S = 60.0  # a TensorRT engine build for the probe takes seconds, not minutes
SMI_TIMEOUT_S = 10.0
CPU_FEATURES = {
    "avx2": ("avx2",),
    "avx512f": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx_vnni": ("avx_vnni",),
    "amx_tile": ("amx_tile",),
    "amx_int8": ("amx_int8",),
    "amx_bf16": ("amx_bf16",),
}
# the int8 dot-product instructions a CPU offers, best first; without VNNI or AMX, u8 x s8
# products are summed in pairs in 16 bits (saturating), hence engine.quantize's 7-bit weights
INT8_KERNELS = (
    ("amx_int8", "AMX"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512f", "AVX-512 without VNNI (16-bit pair sums)"),
    ("avx2", "AVX2 without VNNI (16-bit pair sums)"),
)
PROVIDER_NOTES = {"AzureExecutionProvider": "calls remote endpoints; local models still run on the CPU"}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, shortened: errors in a report stay one line each."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report(timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Versions, platform, CPU features and working onnxruntime providers, as a JSON-able dict."""
    errors: list[str] = []
    out: dict[str, Any] = {
        "engine_core": _guard(errors, "engine_core", _core_version, None),
        "plugins": _guard(errors, "plugins", _plugins, []),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "platform": _guard(errors, "platform", _platform, {}),
        "cpu": _guard(errors, "cpu", _cpu, {}),
        "torch": _dist_version("torch"),
        "gpus": _guard(errors, "gpus", gpu_names, []),
    }
    runtime = _guard(
        errors, "onnxruntime", lambda: _runtime(timeout, out["gpus"]), {"onnxruntime": None, "providers": {}}
    )
    out.update(runtime)
    out.setdefault("hints", [])
    if out["gpus"] and out["onnxruntime"] and "CUDAExecutionProvider" not in out["providers"]:
        out["hints"].append(NO_CUDA_RUNTIME_HINT)
    out["errors"] = errors
    return out


def _guard(errors: list[str], name: str, fn: Callable[[], Any], fallback: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a report with a hole beats no report
        errors.append(f"{name}: {one_line(exc)}")
        return fallback


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _core_version() -> str:
    version = _dist_version("engine-core")
    if version is None:  # running from a source tree that is not installed
        from engine import __version__ as version
    return version


def _plugins() -> list[dict[str, str | None]]:
    rows = []
    for ep in metadata.entry_points(group="engine"):
        dist = ep.dist
        row = {"name": ep.name, "distribution": dist.name if dist else None, "version": dist.version if dist else None}
        if row not in rows:  # one distribution seen twice on sys.path
            rows.append(row)
    return sorted(rows, key=lambda r: r["name"])


def _platform() -> dict[str, str]:
    return {"system": platform.system(), "machine": platform.machine(), "platform": platform.platform()}


def _cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    model, flags = None, set()
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    features = {name: any(a in flags for a in aliases) for name, aliases in CPU_FEATURES.items()} if flags else {}
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model or platform.processor() or None,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "features": features,
        "int8_kernels": int8_kernels(features),
    }


# the widest vector instructions, best first, as a short tag: CPUs sold under one name (a
# cloud "AMD EPYC") differ in them, and with them in what runs fastest
VECTOR_TAGS = (("amx_tile", "amx"), ("avx512f", "avx512"), ("avx2", "avx2"))


def vector_tag(features: dict[str, bool]) -> str | None:
    """``amx``, ``avx512`` or ``avx2`` (+ ``vnni`` where the CPU has it); None: features unknown."""
    if not features:
        return None
    tag = next((name for flag, name in VECTOR_TAGS if features.get(flag)), "generic")
    vnni = features.get("avx512_vnni") or features.get("avx_vnni")
    return tag + "vnni" if vnni and tag != "amx" else tag


def int8_kernels(features: dict[str, bool]) -> str | None:
    """The best int8 dot-product instructions among ``features`` (None: features unknown)."""
    if not features:
        return None
    return next((name for flag, name in INT8_KERNELS if features.get(flag)), "generic (no AVX2)")


def _no_runtime() -> dict[str, Any]:
    return {"onnxruntime": None, "providers": {}, "hints": [RUNTIME_HINT]}


def _runtime(timeout: float, gpus: list[str] | None = None) -> dict[str, Any]:
    from engine.runtime import installed_runtimes, runtime_conflict

    try:
        import onnxruntime as ort
    except ImportError:
        if installed_runtimes():  # installed but broken (a missing shared library): the error says why
            raise
        return _no_runtime()
    conflict = runtime_conflict()
    hints = [conflict] if conflict else []
    providers = {name: probe_provider(ort, name, timeout, gpus) for name in ort.get_available_providers()}
    info = {"version": getattr(ort, "__version__", None), "distributions": installed_runtimes()}
    return {"onnxruntime": info, "providers": providers, "hints": hints}


def probe_provider(
    ort: Any, provider: str, timeout: float = PROBE_TIMEOUT_S, gpus: list[str] | None = None
) -> dict[str, Any]:
    """``{"listed": True, "runs": bool, "error": str | None}`` for one provider; never raises.
    ``gpus``: the GPUs already listed by :func:`gpu_names` (else it is asked again)."""
    result: dict[str, Any] = {"listed": True, "runs": False, "error": None}
    try:
        _bounded(lambda: _run_probe(ort, provider), timeout)
        result["runs"] = True
    except Exception as exc:  # noqa: BLE001 - any failure means "does not run here"
        result["error"] = one_line(exc)
    if provider in PROVIDER_NOTES:
        result["note"] = PROVIDER_NOTES[provider]
    if provider == "CUDAExecutionProvider":
        result["devices"] = gpu_names() if gpus is None else gpus
    return result


def _run_probe(ort: Any, provider: str) -> None:
    import numpy as np

    options = ort.SessionOptions()
    options.log_severity_level = 3  # a failing provider's warnings are in the report already
    model = resources.files("engine").joinpath("data/probe.onnx").read_bytes()
    session = ort.InferenceSession(model, sess_options=options, providers=[provider])
    used = session.get_providers()
    if not used or used[0] != provider:
        raise RuntimeError(f"onnxruntime fell back to {', '.join(used) or 'nothing'}")
    x = np.arange(8, dtype=np.float32)
    y = session.run(["Y"], {"X": x})[0]
    if not np.array_equal(y, x + 1):
        raise RuntimeError(f"wrong output: X + 1 gave {np.asarray(y).ravel()[:4].tolist()}...")


def _bounded(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` in a daemon thread and stop waiting after ``timeout`` seconds (it may hang in C)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="engine-doctor-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer after {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def gpu_names(timeout: float = SMI_TIMEOUT_S) -> list[str]:
    """``name, memory`` of each NVIDIA GPU from nvidia-smi; empty when it is absent or fails."""
    command = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def format_report(report: dict[str, Any]) -> str:
    """The report as human text, one item per line."""
    lines = [f"engine-core {report.get('engine_core') or 'unknown'}"]
    for p in report.get("plugins", []):
        lines.append(f"plugin {p['name']}: {p['distribution'] or '?'} {p['version'] or '?'}")
    if not report.get("plugins"):
        lines.append("plugins: none installed")
    py, plat, cpu = report.get("python", {}), report.get("platform", {}), report.get("cpu", {})
    lines.append(f"python {py.get('version')} ({py.get('implementation')})")
    lines.append(f"platform {plat.get('platform', 'unknown')}")
    lines.append(f"cpu {cpu.get('model') or 'unknown'}: {cpu.get('logical_cores')} logical cores")
    lines.extend(_feature_lines(cpu.get("features") or {}))
    lines.append(f"torch {report.get('torch') or 'not installed'}")
    if not any(p.get("devices") for p in report.get("providers", {}).values()):  # else listed under CUDA
        lines.extend(f"gpu {name}" for name in report.get("gpus", []))
    lines.extend(_runtime_lines(report))
    lines.extend(f"hint: {h}" for h in report.get("hints", []))
    lines.extend(f"error: {e}" for e in report.get("errors", []))
    return "\n".join(lines)


def _feature_lines(features: dict[str, bool]) -> list[str]:
    if not features:
        return ["cpu features: unknown"]
    listed = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in features.items())
    return [f"cpu features: {listed}", f"int8 kernels: {int8_kernels(features)}"]


def _runtime_lines(report: dict[str, Any]) -> list[str]:
    ort = report.get("onnxruntime")
    if not ort:
        return ["onnxruntime: not installed"]
    lines = [f"onnxruntime {ort.get('version')} ({', '.join(ort.get('distributions') or ['?'])})"]
    for name, p in report.get("providers", {}).items():
        state = "runs" if p.get("runs") else f"listed but does not run: {p.get('error')}"
        lines.append(f"provider {name}: {state}")
        lines.extend(f"gpu: {device}" for device in p.get("devices", []))
        if p.get("note"):
            lines.append(f"note {name}: {p['note']}")
    return lines


def main() -> int:
    print(format_report(report()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
