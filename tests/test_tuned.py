"""Per-device tuned settings: stored outside artifacts, keyed by subject and device."""

import json

import pytest

from engine import tuned


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_store_and_load_round_trip_under_the_cache_root(cache):
    device = tuned.device_id("onnxruntime", 2, "Intel(R) Xeon(R) CPU @ 2.0GHz")
    assert device == "onnxruntime-Intel_R_Xeon_R_CPU_2.0GHz-2threads"
    path = tuned.store_tuned("medusa", "abc123", device, {"choices": [[0]]})
    assert path == cache / "tuned" / "medusa" / "abc123" / f"{device}.json"
    assert tuned.load_tuned("medusa", "abc123", device) == ({"choices": [[0]]}, path)
    assert (
        tuned.load_tuned("medusa", "abc123", tuned.device_id("onnxruntime", 1, "Intel(R) Xeon(R) CPU @ 2.0GHz")) is None
    )
    assert tuned.load_tuned("medusa", "other", device) is None


def test_cpus_of_one_name_with_other_vector_instructions_get_other_ids(tmp_path):
    def cpuinfo(name: str, flags: str):
        path = tmp_path / name
        path.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 {flags}\n")
        return path

    avx2 = tuned.cpu_model(cpuinfo("a", "avx2 fma"))
    vnni = tuned.cpu_model(cpuinfo("b", "avx2 avx512f avx512_vnni"))
    amx = tuned.cpu_model(cpuinfo("c", "avx2 avx512f avx512_vnni amx_tile amx_int8"))
    assert (avx2, vnni, amx) == ("AMD EPYC avx2", "AMD EPYC avx512vnni", "AMD EPYC amx")
    assert tuned.device_id("onnxruntime", 1, avx2) != tuned.device_id("onnxruntime", 1, vnni)


def test_a_gpu_id_has_no_thread_count():
    assert tuned.device_id("onnxruntime", 4, "cuda-NVIDIA H200") == "onnxruntime-cuda-NVIDIA_H200"


def test_an_unreadable_file_is_ignored(cache):
    path = tuned.store_tuned("p", "s", "d", {"x": 1})
    path.write_text("{not json")
    assert tuned.load_tuned("p", "s", "d") is None


def test_digest_of_an_artifact_is_its_manifest_digest(tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"files": {}}))
    assert tuned.digest_of(art) == tuned.digest_of(art / "manifest.json")
    before = tuned.digest_of(art)
    assert len(before) == 16
    (art / "manifest.json").write_text(json.dumps({"files": {"a": 1}}))
    assert tuned.digest_of(art) != before  # a re-export is another subject


def test_xdg_cache_home_is_used_without_engine_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuned.cache_root() == tmp_path / "xdg" / "engine"
