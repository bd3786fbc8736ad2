"""The example plugin's own tests, using the engine's conformance kit."""

import engine_bigram.plugin
import numpy as np
import pytest
from engine_bigram.sampler import BigramSampler, bigram_log_probs

import engine.testing
from engine import SamplingConfig


def test_conformance(tmp_path):
    engine.testing.check_plugin(engine_bigram.plugin, tmp_path=tmp_path)


def test_rows_are_distributions():
    vocab, table = bigram_log_probs("abracadabra")
    assert vocab == ["a", "b", "c", "d", "r"]
    np.testing.assert_allclose(np.exp(table).sum(axis=1), 1.0, rtol=1e-6)


def test_prefix_and_fixed_positions_are_kept():
    result = BigramSampler().sample(SamplingConfig(length=20, prefix="the", fixed={10: "x"}, seed=1))
    assert result.texts[0].startswith("the") and result.texts[0][10] == "x"


def test_unknown_character_is_a_clear_error():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BigramSampler().sample(SamplingConfig(length=5, prefix="Z"))


def test_every_verb_works_without_cli_code(tmp_path, capsys):
    """The core parses the verbs: sample, export and running the artifact, with the plugin's option."""
    from engine.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abababab")
    assert (
        main(["sample", "bigram", "--model", str(corpus), "--length", "6", "--seed", "0", "--smoothing", "0.01"]) == 0
    )
    assert set(capsys.readouterr().out.strip()) <= {"a", "b"}
    assert main(["export", "bigram", "--model", str(corpus), "-o", str(tmp_path / "art")]) == 0
    capsys.readouterr()
    assert main(["sample", "bigram", "--artifact", str(tmp_path / "art"), "--length", "6", "--seed", "0"]) == 0
    assert set(capsys.readouterr().out.strip()) <= {"a", "b"}
    assert main(["sample", "bigram", "--artifact", str(tmp_path / "art"), "--smoothing", "2"]) == 2
