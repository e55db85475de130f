"""Training data from a card: hashes checked, prompt tokens masked, end of turn trained, pre-flight checks.

Run: .venv/bin/python -m pytest tests/train/test_data.py -q
"""

import json
from pathlib import Path

import pytest

from tunesmith.artifacts import CardError, open_card
from tunesmith.chat import IGNORE_INDEX, encode_rows
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.models import load_tokenizer
from tunesmith.train.data import TrainDataError, preflight

FIXTURE = Path(__file__).parent.parent / "fixtures" / "sft_tiny.jsonl"


def curated(tmp_path, tokenizer, **extra) -> Path:
    config = CurateConfig(name="tiny", output_dir=str(tmp_path), tokenizer=str(tokenizer),
                          sources=[{"path": str(FIXTURE)}], gates={"min_rows": 5}, **extra)
    return run_curate(config).directory


@pytest.fixture
def card_dir(tmp_path, tiny_tokenizer_dir) -> Path:
    return curated(tmp_path, tiny_tokenizer_dir)


def test_open_card_reads_every_split(card_dir):
    splits = open_card(card_dir / "card.json")
    assert set(splits.rows) == set(splits.card.splits)
    assert all(len(rows) == splits.card.splits[name].rows for name, rows in splits.rows.items())


def test_a_changed_split_file_is_refused_by_name(card_dir):
    shard = card_dir / "train-00000-of-00001.parquet"  # the default: Parquet shards
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CardError, match=r"train-00000-of-00001\.parquet: split 'train' changed"):
        open_card(card_dir)


def test_a_changed_jsonl_split_file_is_refused_by_name(tmp_path, tiny_tokenizer_dir):
    card_dir = curated(tmp_path, tiny_tokenizer_dir, split_format="jsonl")
    with open(card_dir / "train.jsonl", "a") as handle:
        handle.write(json.dumps({"id": "x", "messages": []}) + "\n")
    with pytest.raises(CardError, match=r"train\.jsonl: split 'train' changed"):
        open_card(card_dir)


def test_labels_train_only_the_answer_and_its_end(tiny_tokenizer_dir):
    tokenizer = load_tokenizer(str(tiny_tokenizer_dir))
    row = {"id": "r:0", "messages": [{"role": "system", "content": "Answer in JSON."},
                                     {"role": "user", "content": "Extract the order please"},
                                     {"role": "assistant", "content": "lamp"},
                                     {"role": "user", "content": "And the city?"},
                                     {"role": "assistant", "content": "Lyon"}]}
    [encoded] = encode_rows(tokenizer, [row], max_seq_len=512)
    trained = [tokenizer.convert_ids_to_tokens(t) for t, label in zip(encoded["input_ids"], encoded["labels"])
               if label != IGNORE_INDEX]
    assert trained == ["lamp", "<|im_end|>", "Lyon", "<|im_end|>"]
    preflight(tokenizer, [encoded])  # passes


def test_preflight_names_rows_without_trainable_tokens_or_end_and_what_to_do(tiny_tokenizer_dir):
    tokenizer = load_tokenizer(str(tiny_tokenizer_dir))
    long_prompt = {"id": "long:0", "messages": [{"role": "user", "content": "word " * 200},
                                                {"role": "assistant", "content": "ok"}]}
    cut_answer = {"id": "cut:0", "messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "word " * 200}]}
    encoded = encode_rows(tokenizer, [long_prompt, cut_answer], max_seq_len=64)
    with pytest.raises(TrainDataError) as failure:
        preflight(tokenizer, encoded, max_seq_len=64)
    message = str(failure.value)
    assert "no trainable tokens after masking: long:0 (the prompt fills max_seq_len=64)" in message
    assert "never train the end-of-turn token (the answer is cut by max_seq_len=64): cut:0" in message
    # one line, and it says what to do: the setting to raise, or the rows to fix in the data
    assert "\n" not in message
    assert message.count("raise max_seq_len in the train config, or shorten or drop these rows in the data") == 2


def test_trained_tokens_match_curation_token_stats(card_dir, tiny_tokenizer_dir):
    from tunesmith.curate.token_stats import TokenStats

    tokenizer = load_tokenizer(str(tiny_tokenizer_dir))
    rows = open_card(card_dir).rows["train"]
    encoded = encode_rows(tokenizer, rows, max_seq_len=48)  # short enough to truncate some rows
    conversations = [[(m["role"], m["content"]) for m in row["messages"]] for row in rows]
    _, trainable = TokenStats(TokenStats.Config(max_seq_len=48))._exact_counts(tokenizer, conversations)
    assert [sum(label != IGNORE_INDEX for label in row["labels"]) for row in encoded] == trainable.tolist()


def test_alpaca_template_trains_the_response_and_its_end(tiny_tokenizer_dir):
    tokenizer = load_tokenizer(str(tiny_tokenizer_dir), chat_template="alpaca")
    row = {"id": "r:0", "messages": [{"role": "user", "content": "Extract the order please"},
                                     {"role": "assistant", "content": "lamp"}]}
    [encoded] = encode_rows(tokenizer, [row], max_seq_len=512)
    trained = [tokenizer.convert_ids_to_tokens(t) for t, label in zip(encoded["input_ids"], encoded["labels"])
               if label != IGNORE_INDEX]
    assert trained == ["lamp", "<|im_end|>"]


def test_an_unknown_chat_template_names_the_shipped_ones(tiny_tokenizer_dir):
    from tunesmith.models import ModelError

    with pytest.raises(ModelError, match=r"'nope' is neither a shipped one \(alpaca\) nor a file"):
        load_tokenizer(str(tiny_tokenizer_dir), chat_template="nope")
