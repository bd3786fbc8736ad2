"""Medusa on onnxruntime alone (numpy + onnxruntime + tokenizers; never imports torch)."""

from __future__ import annotations

import numpy as np

from engine.interfaces import Decoder
from engine.runtime import active_providers

from .component import MedusaRunner
from .decoding import HeadQueries, shared_prefix
from .textio import TextCodec
from .tree import is_chain

_MIN = np.finfo(np.float32).min


def additive_mask(allowed: np.ndarray) -> np.ndarray:
    """A boolean "may attend" mask as the graphs' additive float mask (0 or the float32 minimum)."""
    return np.where(allowed, np.float32(0), _MIN).astype(np.float32)


def base_feeds(ids, positions, allowed, logits_index, past: dict) -> dict:
    """The exported base's inputs for new tokens ``ids`` (b, s) at ``positions``: ``allowed``
    (b, s, past + s) as an additive attention mask, the rows whose logits are wanted, the cache."""
    return {
        "input_ids": ids.astype(np.int64),
        "position_ids": positions.astype(np.int64),
        "attention_mask": additive_mask(allowed[:, None]),
        "logits_index": np.asarray(logits_index, dtype=np.int64),
        **past,
    }


class OrtBackend(HeadQueries):
    """The array interface of TorchBackend over the exported `medusa` and `heads` (or `hydra`) graphs.

    On CUDA the KV cache stays on the device between steps through IO binding (OrtValues);
    on the CPU plain numpy arrays are passed (IO binding does not help there)."""

    def __init__(self, artifact, provider: str = "auto", threads: int | None = None):
        cfg = artifact.config
        self.sess = artifact.session("medusa", provider, threads=threads)
        kind = cfg.get("heads_kind", "medusa")
        self.sequential_heads, self.drafting = kind == "hydra", kind == "draft"
        graph = {"hydra": "hydra", "draft": "draft"}.get(kind, "heads")
        # Hydra since export format 4: a graph per head on the path embeddings of `hydra_embed`
        self.hydra_heads = None
        if "hydra_embed" in artifact.manifest["models"]:
            graph = "hydra_embed"
            sessions = (artifact.session(f"hydra_{i}", provider, threads=threads) for i in range(cfg["num_heads"]))
            self.hydra_heads = list(sessions)
        self.heads_sess = artifact.session(graph, provider, threads=threads)
        self.draft_kv_shape = tuple(cfg.get("draft_kv_shape", ()))
        self.select_heads = len(self.heads_sess.get_inputs()) == 2
        self.num_heads = cfg["num_heads"]
        self.keep_sess = artifact.session("keep", provider, threads=threads)
        self.providers = active_providers(self.sess)
        self.on_cuda = self.providers[0].startswith(("CUDA", "Tensorrt"))
        self.n_layers = cfg["n_layers"]
        self.kvh, self.hd = cfg["kv_shape"]
        self.context = cfg["context"]
        names = [i.name for i in self.sess.get_inputs()]
        self.past_names = [n for n in names if n.startswith("past_")]
        self.takes_head_index = "head_index" in names  # artifacts of export format 2
        self.out_names = [o.name for o in self.sess.get_outputs()]
        self.reset()

    def reset(self):
        self.past = None
        self.hidden = None

    def _empty_past(self, b):
        z = np.zeros((b, self.kvh, 0, self.hd), np.float32)
        return [z] * len(self.past_names)

    def forward(self, ids, positions, allowed, logits_at=None):
        b = ids.shape[0]
        past = self.past if self.past is not None else self._empty_past(b)
        lidx = np.arange(ids.shape[1])[None].repeat(b, 0) if logits_at is None else np.full((b, 1), logits_at)
        feeds = base_feeds(ids, positions, allowed, lidx, dict(zip(self.past_names, past, strict=True)))
        if self.takes_head_index:
            feeds["head_index"] = np.zeros((b, 0), np.int64)
        if self.on_cuda:
            outs = self._run_bound(feeds)
        else:
            outs = self.sess.run(None, feeds)
        named = dict(zip(self.out_names, outs, strict=True))
        self.hidden = named["hidden"]
        self.past = [named[n] for n in self.out_names if n.startswith("present_")]
        return named["logits"]

    def rows_independent(self, past_len: int = 8, rows=(2, 4)) -> bool:
        """Whether a row's logits are bit for bit the same whatever the number of rows in its call
        (checked once on a random cache, each row seeing the cache and itself): then a tree forward
        computes each node as the one-token loop would. The decoder's cache is left as it was."""
        rng = np.random.default_rng(0)
        past = [rng.normal(size=(1, self.kvh, past_len, self.hd)).astype(np.float32) for _ in self.past_names]
        tokens = rng.integers(0, 100, max(rows))
        one = self.row0_logits(past, tokens[:1])
        return all(np.array_equal(one, self.row0_logits(past, tokens[:n])) for n in rows)

    def row0_logits(self, past: list, tokens) -> np.ndarray:
        """The logits of ``tokens[0]`` in one call of ``len(tokens)`` rows after the cache ``past``
        (batch 1), every row seeing the cache and itself only; the decoder's cache is left as it was."""
        n, past_len = len(tokens), past[0].shape[2]
        allowed = np.zeros((1, n, past_len + n), bool)
        allowed[0, :, :past_len] = True
        allowed[0, np.arange(n), past_len + np.arange(n)] = True
        saved, self.past = (self.past, self.hidden), list(past)
        try:
            return self.forward(np.asarray([tokens]), np.full((1, n), past_len), allowed)[0, 0]
        finally:
            self.past, self.hidden = saved

    def _run_bound(self, feeds):
        """CUDA: bind inputs; presents stay OrtValues on the device (fed back as past)."""
        import onnxruntime as ort

        binding = self.sess.io_binding()
        for name, value in feeds.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.out_names:
            binding.bind_output(name, "cuda" if name.startswith("present_") else "cpu")
        self.sess.run_with_iobinding(binding)
        return [
            o if name.startswith("present_") else o.numpy()
            for name, o in zip(self.out_names, binding.get_outputs(), strict=True)
        ]

    def hidden_at(self, index):
        return self.hidden[np.arange(self.hidden.shape[0]), index]

    def topk_of(self, hidden, k: int, depth=None):
        feeds = {"hidden": np.ascontiguousarray(hidden, np.float32)}
        if self.select_heads:  # artifacts exported before head selection compute all heads
            feeds["heads"] = np.arange(depth or self.num_heads, dtype=np.int64)
        return self.heads_sess.run(None, feeds)[0][..., :k]

    def hydra_topk_of(self, hidden, head: int, paths, k: int):
        if self.hydra_heads is not None:
            embeddings = self.heads_sess.run(None, {"path": np.ascontiguousarray(paths, np.int64)})[0]
            feeds = {"hidden": np.ascontiguousarray(hidden, np.float32), "path_embeddings": embeddings}
            return self.hydra_heads[head].run(None, feeds)[0][..., :k]
        padded = np.zeros((len(paths), self.num_heads), np.int64)  # one graph for every head (format 3)
        padded[:, : paths.shape[1]] = paths
        feeds = {"hidden": np.ascontiguousarray(hidden, np.float32), "path": padded, "head": np.array(head, np.int64)}
        return self.heads_sess.run(None, feeds)[0][..., :k]

    def draft_step(self, features, tokens, positions, past_k, past_v, allowed, k: int):
        """The draft layer on new pairs (see TorchBackend.draft_step), on the `draft` graph."""
        feeds = {
            "features": np.ascontiguousarray(features, np.float32),
            "tokens": np.ascontiguousarray(tokens, np.int64),
            "positions": np.ascontiguousarray(positions, np.int64),
            "past_key": np.ascontiguousarray(past_k, np.float32),
            "past_value": np.ascontiguousarray(past_v, np.float32),
            "attention_mask": additive_mask(allowed),
        }
        out, top, key, value = self.heads_sess.run(None, feeds)
        return out, top[..., :k], key, value

    def last_hidden(self):
        return self.hidden[:, -1]

    def keep(self, slots):
        if not self.on_cuda:  # CPU: gather only the tail after the shared prefix, in place
            past, n = shared_prefix(slots), slots.shape[1]
            if past < n:
                idx = slots[:, None, past:, None]
                for p in self.past:
                    p[:, :, past:n] = np.take_along_axis(p, idx, axis=2)
            if n < self.past[0].shape[2]:  # numpy copies a cut cache faster than onnxruntime's feed does
                self.past = [np.ascontiguousarray(p[:, :, :n]) for p in self.past]
            return
        binding = self.keep_sess.io_binding()
        for i, value in enumerate(self.past):
            binding.bind_ortvalue_input(f"past_{i}", value)
        binding.bind_cpu_input("slots", np.ascontiguousarray(slots, np.int64))
        for o in self.keep_sess.get_outputs():
            binding.bind_output(o.name, "cuda")
        self.keep_sess.run_with_iobinding(binding)
        self.past = list(binding.get_outputs())


class OrtMedusaDecoder(MedusaRunner, Decoder):
    """The medusa decoder running an exported artifact (base model + heads + tokenizer).

    tree: rank paths (default: the tree stored in the artifact; ``[]`` decodes without the
    heads); sampling: "lossless" | "typical" (default: the artifact's)."""

    runs_artifact = True
    _rows_independent: bool | None = None  # OrtBackend.rows_independent, probed when first asked

    def __init__(
        self,
        artifact,
        *,
        provider: str = "auto",
        threads: int | None = None,
        tree=None,
        sampling: str | None = None,
        lookup: int | None = None,
        chain: int | None = None,
        datastore=None,
        chain_share: float | None = None,
    ):
        cfg = artifact.config
        codec = TextCodec.load(artifact.file("tokenizer.json"), artifact.file("text.json"))
        self.artifact = artifact
        self.base_name = cfg["base_model"]
        backend = OrtBackend(artifact, provider, threads)
        from engine.tuned import digest_of

        self._identify("onnxruntime", digest_of(artifact.path), threads, gpu=backend.on_cuda)
        tree = self._choose_tree(tree, cfg["tree"], "artifact", cfg["topk"], cfg["num_heads"])
        self._setup(
            backend,
            codec,
            tree,
            cfg["topk"],
            sampling or cfg["sampling"],
            cfg["chat"],
            cfg["num_heads"],
            lookup,
            cfg.get("chain") if chain is None and tree else chain,  # stored with its tree: not for tree=[]
            datastore if datastore is not None else artifact.path,
            cfg.get("chain_share") if chain_share is None else chain_share,
        )

    @property
    def capabilities(self) -> tuple[str, ...]:
        """An artifact whose matmuls quantize their activations to int8 (``accuracy_level`` != 0)
        turns last-bit differences between a tree forward and a one-token step into other tokens
        at near ties (measured on SmolLM2, see MODEL_CARD.md). It claims ``exact-greedy`` only with
        a chain tree (each node at its greedy column) on kernels whose rows do not depend on the
        call's row count, checked on this machine (``OrtBackend.rows_independent``)."""
        caps = super().capabilities
        scheme = self.artifact.config.get("quantization") or {}
        if not scheme.get("accuracy_level", 0) or self._exact_over_quantized():
            return caps
        return tuple(c for c in caps if c != "exact-greedy")

    def _exact_over_quantized(self) -> bool:
        choices = self.tree.choices if self.tree else ()
        if not choices and not self.chain:
            return True  # no tree: the decoder is its greedy loop
        if choices and (self.chain or not is_chain(choices)):
            return False  # siblings, or a retrieved chain beside the tree: two branches
        if self._rows_independent is None:  # one probe per decoder
            self._rows_independent = self.backend.rows_independent()
        return self._rows_independent

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers the sessions really run on, best first."""
        return list(self.backend.providers)


#: the engine's artifact loader for `medusa` (``engine decode medusa --artifact DIR``): the decoder itself
load_artifact = OrtMedusaDecoder
