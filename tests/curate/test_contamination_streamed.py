"""`contamination` as a global stage: streamed in small batches (with or without workers) it keeps, rejects and
records exactly what one pass over the whole list does, and its pass-1 state holds nothing of the training rows.

Run: pytest tests/curate/test_contamination_streamed.py -q
"""

import json
import random

import numpy as np
import pytest

from tests.curate.engine_helpers import comparable, run_streamed, run_whole
from tunesmith.curate import contamination
from tunesmith.curate.contamination import Contamination
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext

VOCAB = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrst"]
BOILERPLATE = "you are a careful assistant answer the request below in plain words and keep it short please"


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def row(i: int, user: str, split: str | None, tokens: int | None = 7) -> Example:
    return Example(id=f"s:{i}", source="s.jsonl", row=i, line=i + 1, split=split, trainable_tokens=tokens,
                   messages=(Message("user", user), Message("assistant", f"answer {i}")))


def leaky_rows(rng: random.Random) -> list[Example]:
    """Train, validation and test rows (one without a split: training) interleaved, with held-out rows that repeat
    a training prompt, share most of a training row's 13-grams, or share only boilerplate; two training rows are
    copies of each other, so the pair names the first."""
    train_text = [words(rng, 30) for _ in range(8)]
    rows = [row(i, text, "train" if i != 5 else None, tokens=10 + i) for i, text in enumerate(train_text)]
    rows.insert(3, row(20, train_text[6].upper() + " ?", "test"))  # exact prompt of a later training row
    rows.append(row(21, " ".join(train_text[1].split()[:-2] + ["new", "end"]), "validation"))  # ngram
    rows.append(row(22, words(rng, 30), "test"))  # clean
    rows.append(row(23, train_text[2], "train", tokens=5))  # a second copy: the held-out pair names the first
    rows.insert(1, row(24, " ".join(train_text[2].split()[:25] + ["other", "words", "here"]), "validation"))
    rows += [row(30 + i, f"{BOILERPLATE} {words(rng, 3)}", "train") for i in range(12)]
    rows.append(row(50, f"{BOILERPLATE} {words(rng, 3)}", "test"))  # boilerplate only: not leakage
    rows.append(row(51, words(rng, 30), "train"))  # found in the eval file below (exact)
    rows.append(row(52, words(rng, 30), "train"))  # most of it in the eval file (ngram)
    return rows


def eval_file(tmp_path, rows: list[Example], rng: random.Random) -> str:
    by_id = {ex.id: ex.messages[0].content for ex in rows}
    lines = [{"prompt": by_id["s:51"], "completion": "x"},
             {"prompt": words(rng, 20), "completion": "y"},
             {"prompt": " ".join(by_id["s:52"].split()[:27]), "completion": "z"}]
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("action", ["report", "drop"])
def test_streamed_contamination_equals_the_whole_list(tmp_path, monkeypatch, action):
    monkeypatch.setattr(contamination, "CHUNK_ROWS", 4)  # training rows are shingled in chunks across batches
    rng = random.Random(12)
    rows = leaky_rows(rng)
    config = Contamination.Config(action=action, eval_files=[eval_file(tmp_path, rows, rng)], max_pairs_recorded=3)
    kept, record, rejected = run_whole(Contamination(config), rows, tmp_path / "whole")

    found = record.findings
    assert found["contaminated_rows"] == 5  # s:20 s:21 s:24 (held-out) and s:51 s:52 (train, in the eval file)
    assert [(p["a"], p["b"], p["kind"]) for p in found["pairs"]] == [  # held-out first, in row order; cut at 3
        ("s:24", "s:2", "ngram"), ("s:20", "s:6", "exact"), ("s:21", "s:1", "ngram")]
    assert found["rates"]["held_out"] == {"rows": 5, "contaminated": 3, "rate": 0.6}
    assert found["rates"][f"eval_file:{config.eval_files[0]}"] == {"rows": 3, "contaminated": 2, "rate": 0.6667}
    assert len(found["warnings"]) == 2
    if action == "drop":
        assert sorted(line["id"] for line in rejected) == ["s:20", "s:21", "s:24", "s:51", "s:52"]
        assert {line["id"]: line["detail"].split(":")[0] for line in rejected}["s:51"] == "exact overlap with eval"
        assert found["contamination_rate"] == 0.0
        # the dropped training rows' tokens leave train: 8 train rows (one without a split) kept, s:51/s:52 gone
        assert found["trainable_tokens_by_split"] == {"all": 15, "test": 14, "train": 93 + 5 + 12 * 7}
    else:
        assert rejected == [] and len(kept) == len(rows) and found["contamination_rate"] == 0.6667

    for batch_size, workers in ((3, 1), (2, 2), (1, 1)):
        folder = tmp_path / f"b{batch_size}w{workers}"
        s_kept, s_record, s_rejected = run_streamed(Contamination(config), rows, folder, batch_size=batch_size,
                                                    workers=workers)
        assert [ex.to_json() for ex in s_kept] == [ex.to_json() for ex in kept]
        assert s_rejected == rejected
        assert comparable(s_record) == comparable(record)


def test_streamed_contamination_without_held_out_rows_or_token_counts(tmp_path):
    """Only training rows, no token counts: nothing to compare, no trainable-token finding, either way."""
    rows = [row(i, f"question {i} about things", "train", tokens=None) for i in range(7)]
    _, record, _ = run_whole(Contamination(), rows, tmp_path / "whole")
    _, streamed, _ = run_streamed(Contamination(), rows, tmp_path / "streamed", batch_size=3)
    assert comparable(streamed) == comparable(record)
    assert record.findings["rates"] == {"held_out": {"rows": 0, "contaminated": 0, "rate": 0.0}}
    assert "trainable_tokens_by_split" not in record.findings


def test_pass_one_keeps_only_the_held_out_rows_keys():
    """Training rows add nothing to the state before the resolve; a held-out row costs its n-gram hashes."""
    rng = random.Random(3)
    stage, ctx = Contamination(), StageContext("contamination", None)
    state = stage.open(ctx)
    stage.add_keys([row(i, words(rng, 40), "train") for i in range(2000)], 0, state, ctx)
    assert state.held.nbytes() == 0
    held_out = [row(3000 + i, words(rng, 40), "test") for i in range(10)]
    stage.add_keys(held_out, 2000, state, ctx)
    # 40 words + "user:" and the answer's 3 words: 32 13-grams a row, 8 bytes each, plus ~25 bytes of row keys
    per_row = state.held.nbytes() / len(held_out)
    assert 32 * 8 <= per_row <= 32 * 8 + 32
    state.held.seal(2010)
    assert np.array_equal(state.held.positions, np.arange(2000, 2010))
