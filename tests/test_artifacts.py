"""Artifact format: atomic writes, integrity checks, dispatch to the plugin's loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx_models import add_one_model, run_add_one

import engine
from engine.artifacts import MANIFEST, SCHEMA_VERSION, read_artifact, write_artifact, write_derived_artifact
from engine.errors import ArtifactError


@pytest.fixture
def artifact(tmp_path):
    return write_artifact(
        tmp_path / "art",
        plugin="toy",
        kind="decoder",
        component="toy",
        files={"model.onnx": add_one_model(), "vocab.json": b'{"a": 0}'},
        models={"main": {"file": "model.onnx", "inputs": ["x"], "outputs": ["y"]}},
        opset=17,
        config={"max_length": 8},
    )


def test_roundtrip(artifact):
    art = read_artifact(artifact)
    manifest = art.manifest
    assert manifest["schema_version"] == SCHEMA_VERSION and art.kind == "decoder" and art.component == "toy"
    assert manifest["models"]["main"]["inputs"] == ["x"] and manifest["opset"] == 17
    assert len(manifest["files"]["model.onnx"]["sha256"]) == 64 and "python" in manifest["producer"]
    assert art.config == {"max_length": 8}
    np.testing.assert_array_equal(run_add_one(art.session("main", "cpu")), [1, 2, 3])


def test_a_derived_artifact_keeps_the_identity_and_takes_its_own_files_and_config(artifact, tmp_path):
    src = read_artifact(artifact)
    files = {"model.onnx": add_one_model(), "extra.json": b"{}"}
    out = read_artifact(write_derived_artifact(src, tmp_path / "derived", files=files, config={"q": "int8"}))
    assert (out.kind, out.component, out.manifest["plugin"]) == (src.kind, src.component, src.manifest["plugin"])
    assert out.manifest["models"] == src.manifest["models"] and out.manifest["opset"] == 17
    assert sorted(out.manifest["files"]) == ["extra.json", "model.onnx"] and out.config == {"q": "int8"}


def test_tampered_file_is_refused(artifact):
    path = artifact / "vocab.json"
    path.write_bytes(b'{"b": 0}')
    with pytest.raises(ArtifactError, match="fails its sha256 check"):
        read_artifact(artifact)


def test_truncated_file_is_refused(artifact):
    data = (artifact / "model.onnx").read_bytes()
    (artifact / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated or replaced"):
        read_artifact(artifact)


def test_missing_file_is_refused(artifact):
    (artifact / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match="missing file vocab.json"):
        read_artifact(artifact)


def test_newer_schema_is_refused(artifact):
    manifest = json.loads((artifact / MANIFEST).read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (artifact / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="newer than this engine reads"):
        read_artifact(artifact)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist: give an artifact folder"):
        read_artifact(tmp_path / "typo")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_artifact(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        read_artifact(tmp_path)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_artifact(
            tmp_path / "art",
            plugin="toy",
            kind="decoder",
            component="toy",
            files={"a.bin": b"1", "b.bin": tmp_path / "does-not-exist"},
            models={},
        )
    assert list(tmp_path.iterdir()) == []


def test_existing_destination_needs_overwrite(artifact):
    kwargs = dict(plugin="toy", kind="decoder", component="toy", files={"a.bin": b"2"}, models={})
    with pytest.raises(ArtifactError, match="already exists"):
        write_artifact(artifact, **kwargs)
    write_artifact(artifact, overwrite=True, **kwargs)
    assert set(read_artifact(artifact).manifest["files"]) == {"a.bin"}
    assert [p.name for p in artifact.parent.iterdir()] == ["art"]


@pytest.mark.parametrize("name", ["../escape", "/abs", MANIFEST])
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(ArtifactError, match="invalid artifact file name"):
        write_artifact(tmp_path / "a", plugin="t", kind="decoder", component="t", files={name: b""}, models={})


def test_load_artifact_dispatches_to_the_plugin(artifact, make_module, monkeypatch):
    monkeypatch.delenv("ENGINE_THREADS", raising=False)  # threads=None below means "not set anywhere"
    mod = make_module(
        "artifact_plugin",
        """
        from engine import hookimpl
        from engine.interfaces import Decoder
        plugin_api_version = 1
        LOADED = []
        class Toy(Decoder):
            runs_artifact = True
            def generate(self, prompt, config=None):
                raise NotImplementedError
        def load(artifact, provider, **options):
            LOADED.append((artifact.config, provider, options))
            return Toy()
        def not_a_component(artifact, provider, **options):
            return "runtime component"
        @hookimpl
        def register_decoders(registry):
            registry.add("toy", "artifact_plugin:load", description="toy", artifact_loader="artifact_plugin:load")
        """,
    )
    host = engine.Engine(plugins=[mod], autoload=False)
    toy = engine.load_artifact(artifact, provider="cpu", engine=host)
    assert isinstance(toy, mod.Toy) and toy.name == "toy" and toy.spec.plugin == "artifact_plugin"
    assert "onnx-export" not in toy.capabilities
    assert isinstance(host.load_artifact(artifact, threads=1), mod.Toy)
    assert mod.LOADED == [({"max_length": 8}, "cpu", {"threads": None}), ({"max_length": 8}, "auto", {"threads": 1})]


def test_an_artifact_loader_must_return_a_component(artifact, make_module):
    mod = make_module(
        "artifact_liar",
        """
        from engine import hookimpl
        plugin_api_version = 1
        def load(artifact, provider, **options):
            return "runtime component"
        @hookimpl
        def register_decoders(registry):
            registry.add("toy", "artifact_liar:load", description="toy", artifact_loader="artifact_liar:load")
        """,
    )
    with pytest.raises(engine.PluginError, match="artifact loader of decoder 'toy' returned str"):
        engine.Engine(plugins=[mod], autoload=False).load_artifact(artifact)


def test_session_defaults_to_the_auto_provider(artifact):
    """No provider named: "auto" (CUDA when it loads, else the CPU), which always runs."""
    np.testing.assert_array_equal(run_add_one(read_artifact(artifact).session("main")), [1, 2, 3])


def test_write_component_artifact_records_the_components_registration(tmp_path):
    from types import SimpleNamespace

    from engine.artifacts import write_component_artifact

    spec = SimpleNamespace(plugin="toy-plugin", kind="sampler", name="toy", plugin_version="1.2.3")
    dest = tmp_path / "out"
    got = write_component_artifact(SimpleNamespace(spec=spec), dest, files={"a.bin": b"\x00\x01"}, models={})
    assert got == dest
    art = read_artifact(dest)
    assert art.manifest["plugin"] == {"name": "toy-plugin", "version": "1.2.3"}
    assert (art.kind, art.component) == ("sampler", "toy")
    assert art.file("a.bin").read_bytes() == b"\x00\x01"


def test_quiet_exporter_keeps_stdout_for_json_and_restores_the_logger(capsys):
    import logging
    import warnings

    from engine.artifacts import quiet_exporter

    logger = logging.getLogger("torch.onnx")
    before = logger.level
    with quiet_exporter():
        print("[torch.onnx] progress")
        warnings.warn("an operator this model does not use", UserWarning, stacklevel=1)
        assert logging.getLogger("torch.onnx._internal.exporter").getEffectiveLevel() == logging.ERROR
    out, err = capsys.readouterr()
    assert out == "" and "[torch.onnx] progress" in err and "operator" not in err
    assert logger.level == before
