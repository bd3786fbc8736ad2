from pathlib import Path

from engine.datasets import ENV_VAR, shared_data


def test_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert shared_data("text", "a.txt") == tmp_path / "text" / "a.txt"


def test_default_is_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    checkout = Path(__file__).resolve().parents[1]
    expected = checkout.parent / "shared" / "data"
    if expected.is_dir():  # the project's layout: ../shared/data from the repository root
        assert shared_data() == expected
    assert shared_data("prompts", "dev.jsonl").parts[-3:] == ("data", "prompts", "dev.jsonl")
