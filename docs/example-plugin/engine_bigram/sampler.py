"""A character bigram model: counts in, log-probabilities out, sampled left to right.

Two back ends share one sampling loop: a numpy table lookup, and the same lookup as
an ONNX graph run by onnxruntime (``export_onnx`` / ``load_artifact``). Both use the
same float32 table and the same numpy random stream, so they draw the same text.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.interfaces import Sampler, SampleResult, SampleStats, SamplingConfig, as_config

DEFAULT_TEXT = "the quick brown fox jumps over the lazy dog. " * 4


def bigram_log_probs(text: str, smoothing: float = 1.0) -> tuple[list[str], np.ndarray]:
    """Vocabulary and add-k smoothed log p(next | previous), float32."""
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    counts = np.full((len(vocab), len(vocab)), float(smoothing))
    ids = [index[c] for c in text]
    np.add.at(counts, (ids[:-1], ids[1:]), 1)
    return vocab, np.log(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)


class BigramBase(Sampler):
    """The sampling loop both back ends share; they differ in ``_next_logits``."""

    vocab: list[str]

    def _next_logits(self, previous: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sample(self, config: SamplingConfig | None = None) -> SampleResult:
        config = as_config(SamplingConfig, config)  # a SamplingConfig, a mapping of its fields, or None
        unknown = sorted(set((config.prefix or "") + "".join((config.fixed or {}).values())) - set(self.vocab))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        start = time.perf_counter()
        rng = np.random.default_rng(config.seed)
        rows = np.zeros((config.num_samples, config.length), dtype=np.int64)
        index = {c: i for i, c in enumerate(self.vocab)}
        forced = {i: index[c] for i, c in enumerate(config.prefix or "")} | {
            pos: index[text[0]] for pos, text in (config.fixed or {}).items()
        }
        for pos in range(config.length):
            if pos in forced:
                rows[:, pos] = forced[pos]
                continue
            logits = self._next_logits(rows[:, pos - 1]) if pos else np.zeros((config.num_samples, len(self.vocab)))
            probs = np.exp(logits.astype(np.float64))
            cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
            draws = rng.random((config.num_samples, 1))
            rows[:, pos] = np.minimum((cdf < draws).sum(axis=1), len(self.vocab) - 1)
        texts = ["".join(self.vocab[i] for i in row) for row in rows]
        return SampleResult(
            texts=texts, tokens=rows.tolist(), stats=SampleStats(config.length, time.perf_counter() - start)
        )


class BigramSampler(BigramBase):
    """``model``: a text file to learn the bigrams from (default: a built-in sentence)."""

    def __init__(self, model: str | None = None, smoothing: float = 1.0, text: str | None = None):
        if text is None:
            text = Path(model).read_text(encoding="utf-8") if model else DEFAULT_TEXT
        self.vocab, self.table = bigram_log_probs(text, smoothing)

    def _next_logits(self, previous: np.ndarray) -> np.ndarray:
        return self.table[previous]

    def export_onnx(self, dest: str | Path, overwrite: bool = False) -> Path:
        import onnx
        from onnx import helper, numpy_helper

        from engine.artifacts import write_component_artifact

        graph = helper.make_graph(
            [helper.make_node("Gather", ["table", "previous"], ["logits"], axis=0)],
            "bigram",
            [helper.make_tensor_value_info("previous", onnx.TensorProto.INT64, ["batch"])],
            [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", len(self.vocab)])],
            initializer=[numpy_helper.from_array(self.table, "table")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return write_component_artifact(  # plugin, kind and name come from the registration
            self,
            dest,
            files={"bigram.onnx": model.SerializeToString()},
            models={"bigram": {"file": "bigram.onnx", "inputs": ["previous"], "outputs": ["logits"]}},
            opset=17,
            config={"vocab": self.vocab},
            overwrite=overwrite,
        )


class OrtBigramSampler(BigramBase):
    """The same sampler, its table lookup run by onnxruntime."""

    runs_artifact = True

    def __init__(self, session, vocab: list[str]):
        self.session = session
        self.vocab = list(vocab)

    def _next_logits(self, previous: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"previous": previous.astype(np.int64)})[0]


def load_artifact(artifact, *, provider: str = "auto", threads: int | None = None) -> OrtBigramSampler:
    return OrtBigramSampler(artifact.session("bigram", provider, threads=threads), artifact.config["vocab"])
