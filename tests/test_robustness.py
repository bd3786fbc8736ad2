"""Bad input at the core's boundaries: only documented errors, one line, nothing lost."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.artifacts import MANIFEST, read_artifact, write_artifact
from engine.cli import main
from engine.errors import ArtifactError, EngineError
from engine.interfaces import GenerationConfig, SamplingConfig

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
SECTIONS = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.integers(-1, 3) | JSON,
        "plugin": JSON,
        "component": st.fixed_dictionaries({}, optional={"kind": JSON, "name": JSON}) | JSON,
        "files": st.dictionaries(st.text(min_size=1, max_size=6), JSON, max_size=3) | JSON,
        "models": st.dictionaries(st.text(max_size=6), JSON, max_size=3) | JSON,
        "config": JSON,
    },
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(manifest=SECTIONS | JSON)
def test_any_manifest_is_read_or_refused_with_one_line(tmp_path, manifest):
    root = tmp_path / "artifact"
    root.mkdir(exist_ok=True)
    (root / MANIFEST).write_text(json.dumps(manifest))
    try:
        read_artifact(root)
    except ArtifactError as exc:
        assert str(exc) and "\n" not in str(exc)


CONFIG_FIELDS = {
    GenerationConfig: ["max_new_tokens", "temperature", "top_p", "top_k", "stop"],
    SamplingConfig: ["num_samples", "length", "steps", "prefix", "fixed"],
}


@FUZZ
@given(data=st.data())
@pytest.mark.parametrize("config", list(CONFIG_FIELDS), ids=lambda c: c.__name__)
def test_configs_accept_or_refuse_cleanly(config, data):
    values = data.draw(st.dictionaries(st.sampled_from(CONFIG_FIELDS[config]), JSON))
    try:
        config(**values)
    except (TypeError, ValueError) as exc:
        assert "\n" not in str(exc)


VERB = st.sampled_from(["decode", "sample", "sequence", "export", "eval", "bench", "train", "demo", "list", "help"])
ARGS = st.lists(
    st.sampled_from(["--threads", "--model", "--artifact", "--provider", "cpu", "-o", "--seed", "x", "-1", "--force"])
    | st.text(max_size=6),
    max_size=5,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=VERB, name=st.sampled_from(["no-such", "sedd", "graphnovo-dp"]), args=ARGS)
def test_cli_arguments_never_give_a_traceback(capsys, monkeypatch, tmp_path, verb, name, args):
    """Random arguments: a parse, a usage error or a one-line failure, never a traceback. Only
    paths that load no model run for real (an unknown name, or the numpy DP sequencer's sequence
    verb, whose random file names are refused); the rest must at least build their --help."""
    monkeypatch.chdir(tmp_path)
    if name == "sedd" or (name == "graphnovo-dp" and verb != "sequence"):
        args = [*args, "--help"]
    code = main([verb, name, *args])
    _, err = capsys.readouterr()
    assert code in (0, 1, 2), err
    assert "Traceback" not in err and err.count("\n") <= 2, err


def test_artifact_folders_and_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_artifact(tmp_path / "a", plugin="p", kind="sampler", component="c", files={"x": b"1"}, models={})
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o755
    assert ((path / "x").stat().st_mode & 0o777) == 0o644


def test_a_killed_export_leaves_recognisable_temporaries_that_the_next_one_removes(tmp_path):
    dest = tmp_path / "art"
    leftovers = [tmp_path / ".art.abc123.tmp", tmp_path / ".art.old.tmp"]
    for folder in leftovers:
        folder.mkdir()
        (folder / "half.onnx").write_bytes(b"x")
    write_artifact(dest, plugin="p", kind="sampler", component="c", files={"x": b"1"}, models={})
    assert not any(p.exists() for p in leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_replacing_an_artifact_leaves_nothing_hidden(tmp_path):
    dest = tmp_path / "art"
    write_artifact(dest, plugin="p", kind="sampler", component="c", files={"x": b"1"}, models={})
    write_artifact(dest, plugin="p", kind="sampler", component="c", files={"x": b"2"}, models={}, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"] and (dest / "x").read_bytes() == b"2"


@pytest.mark.parametrize(
    "manifest",
    [
        {"schema_version": 1, "plugin": {}, "component": {"name": "x"}, "files": {}, "models": {}},
        {"schema_version": 1, "plugin": {}, "component": {"kind": "sampler", "name": "x"}, "files": {"a": "b"}},
        {
            "schema_version": 1,
            "plugin": {},
            "component": {"kind": "s", "name": "x"},
            "files": {},
            "models": {},
            "config": 0,
        },
    ],
)
def test_malformed_manifests_are_one_cli_line(tmp_path, capsys, manifest):
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(EngineError):
        read_artifact(tmp_path)
    code = main(["sample", "sedd", "--artifact", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("engine: error: ") and err.count("\n") == 1 and MANIFEST in err


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"precursor_mz": float("nan")}, "precursor m/z must be a positive number"),
        ({"precursor_mz": -5.0}, "precursor m/z must be a positive number"),
        ({"charge": 0}, "charge must be at least 1"),
        ({"mz": [100.0, float("nan")]}, "m/z values must be finite"),
        ({"intensity": [1.0, -2.0]}, "intensities must be finite and not negative"),
        ({"intensity": [1.0]}, "2 m/z values but 1 intensities"),
    ],
)
def test_spectrum_refuses_impossible_values(change, problem):
    from engine.interfaces import ConfigError, Spectrum

    fields = {"ref": "index=0", "precursor_mz": 500.0, "charge": 2, "mz": [100.0, 200.0], "intensity": [1.0, 2.0]}
    with pytest.raises(ConfigError, match=problem):
        Spectrum(**{**fields, **change})


class Payload:
    """Anything pickle would rebuild by running code on load."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoints_round_trip_plain_data_and_refuse_pickled_objects(tmp_path):
    torch = pytest.importorskip("torch")
    import numpy as np

    from engine.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

    state = {"w": torch.ones(2), "step": np.int64(3), "rng": np.random.default_rng(0).bit_generator.state}
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], torch.ones(2)) and loaded["rng"] == state["rng"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    crafted = tmp_path / "crafted.pt"
    torch.save({"model": Payload()}, crafted)
    with pytest.raises(CheckpointError, match="refused, it holds objects other than tensors and plain data"):
        load_checkpoint(crafted)


def test_a_component_shared_by_two_threads_says_so_instead_of_corrupting_state():
    import threading
    import time

    from engine.errors import ConcurrentUseError
    from engine.interfaces import Decoder, GenerationResult, GenerationStats

    class Slow(Decoder):
        def generate(self, prompt, config=None):
            time.sleep(0.3)
            return GenerationResult(tokens=[1], text="x", stats=GenerationStats(1, 1, 0.3))

    shared, errors, done = Slow(), [], []

    def call():
        try:
            done.append(shared.generate("a"))
        except ConcurrentUseError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 1 and len(errors) == 1 and "not thread-safe" in errors[0]
    assert shared.generate("again").text == "x"  # free again afterwards
    # separate components, and one shared Engine, run side by side
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: Slow().generate("b").text, range(4)))
    assert results == ["x"] * 4


def test_an_abandoned_iterator_does_not_keep_a_component_busy():
    import threading

    from engine.interfaces import Sequencer

    class Lazy(Sequencer):
        def sequence(self, spectra):
            yield from ()

    component = Lazy()
    component.sequence([])  # never iterated
    other = []
    thread = threading.Thread(target=lambda: other.append(list(component.sequence([]))))
    thread.start()
    thread.join()
    assert other == [[]]


def test_cancellation_and_deadlines_stop_long_work_at_the_next_step(monkeypatch):
    import engine
    from engine.errors import Cancelled
    from engine.progress import CancelToken, cancellation

    events = []
    host = engine.Engine(autoload=False, on_progress=events.append)
    token = CancelToken()
    with cancellation(token), host.progress(range(10), desc="work") as bar:
        seen = []
        with pytest.raises(Cancelled, match="work stopped: cancelled"):
            for i in bar:
                seen.append(i)
                if i == 2:
                    token.cancel()
    assert seen == [0, 1, 2] and [e.current for e in events if not e.done] == [1, 2]
    with cancellation(CancelToken(deadline=0)), pytest.raises(Cancelled, match="deadline passed"):
        host.progress(total=3, desc="late").update()


MGF_LINES = st.one_of(
    st.sampled_from(["BEGIN IONS", "END IONS", "PEPMASS=500.3", "PEPMASS=abc", "CHARGE=2+", "CHARGE=0", "CHARGE=x"]),
    st.sampled_from(["TITLE=t", "SEQ=PEPTIDEK", "SEQ=PEPC[Frob]K", "SCANS=3", "100.0 10", "200.5 nan", "1e3 -4"]),
    st.builds(lambda a, b: f"{a} {b}", st.floats(allow_nan=True), st.floats(allow_nan=True)),
    st.text(max_size=12),
)


@FUZZ
@given(lines=st.lists(MGF_LINES, max_size=30), suffix=st.sampled_from([".mgf", ".msp", ".mzML", ".mzXML"]))
def test_any_spectrum_file_is_read_or_reported_never_raised(tmp_path, lines, suffix):
    pytest.importorskip("pyteomics")
    from engine.interfaces import Spectrum
    from engine.io.spectra import SkipReport, read_spectra

    path = tmp_path / f"fuzz{suffix}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    report = SkipReport()
    spectra = list(read_spectra([path], report))
    assert all(isinstance(s, Spectrum) for s in spectra)
    assert all(reason and "\n" not in reason for _, _, reason in report.skipped + report.notes)


def test_threads_share_one_engine_and_use_components_of_their_own():
    pytest.importorskip("engine_graphnovo")
    from concurrent.futures import ThreadPoolExecutor

    import engine
    from engine.kinds import probe_spectra

    host = engine.Engine()
    spectra = probe_spectra()
    expected = [h.peptide for h in host.sequencer("graphnovo-dp").sequence(spectra)]

    def job(_):
        return [h.peptide for h in host.sequencer("graphnovo-dp").sequence(spectra)]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(job, range(8))) == [expected] * 8
