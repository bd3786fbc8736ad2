import engine_medusa.plugin
import torch
from engine_medusa.heads import MedusaHeads, heads_config, save_heads
from engine_medusa.tiny import randomize_heads, save_tiny

import engine.testing


def test_engine_conformance_kit(tmp_path):
    model = save_tiny(tmp_path / "base")
    heads = randomize_heads(MedusaHeads(model.get_output_embeddings(), 3))
    save_heads(
        tmp_path / "heads",
        heads,
        heads_config(heads, str(tmp_path / "base"), model.get_output_embeddings().weight),
        dtype=torch.float32,
    )
    engine.testing.check_plugin(
        engine_medusa.plugin,
        tmp_path=tmp_path,
        options={
            "medusa": {
                "model": str(tmp_path / "base"),
                "heads": str(tmp_path / "heads"),
                "tree": [[0], [1], [0, 0]],
                "topk": 4,
            }
        },
    )
