"""Padded and padding-free batches compute the same thing: equal losses and per-row logits on the tiny model.

Run: .venv/bin/python -m pytest tests/train/test_batching.py -q
"""

import json

import pytest
import torch

from tunesmith.chat import IGNORE_INDEX
from tunesmith.train.batching import PadCollator, PaddingFreeCollator
from tunesmith.train.trainer import train

from .runs import config_for


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def rows_of_lengths(*lengths: int, vocab: int = 40) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for n in lengths:
        ids = torch.randint(5, vocab, (n,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * 2 + ids[2:]})
    return rows


def test_padding_free_batch_has_no_pads_and_restarts_positions():
    batch = PaddingFreeCollator()(rows_of_lengths(3, 2))
    assert batch["input_ids"].shape == (1, 5) and "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"][0, 3].item() == IGNORE_INDEX  # no row predicts its first token from the previous row


def test_padding_free_and_padded_batches_give_the_same_loss_and_logits(model):
    rows = rows_of_lengths(7, 12, 3, 9)
    with torch.no_grad():
        padded = model(**PadCollator(pad_id=1)(rows), use_cache=False)
        flat_batch = PaddingFreeCollator()(rows)
        flat = model(**flat_batch, use_cache=False)
    assert flat.loss.item() == pytest.approx(padded.loss.item(), rel=1e-5)
    start = 0
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert torch.allclose(flat.logits[0, start:start + n], padded.logits[i, :n], atol=1e-5)
        start += n


def test_a_padding_free_run_follows_the_padded_run(tmp_path, card, tiny_model_dir):
    def losses(batching: str) -> list[float]:
        run = train(config_for(card, tiny_model_dir, tmp_path, run_id=batching, batching=batching,
                               quantization="none", eval_split=None))
        return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]

    padded, flat = losses("padded"), losses("padding_free")
    assert flat == pytest.approx(padded, rel=1e-4)  # the same batches, the same updates
