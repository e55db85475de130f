"""Tests for `exact_dedup` and `near_dedup`: which row survives, the rejected reasons and details, the
groups/clusters findings, tagging instead of dropping, keep=longest, the constant-key warning, and that
MinHash signatures estimate the true word 5-gram Jaccard.

Run: pytest tests/curate/test_dedup.py -q
"""

import json
import random
import re

import numpy as np
import pytest
from pydantic import ValidationError

from tests.curate.rows import chat_row
from tunesmith.curate import minhash
from tunesmith.curate.dedup import ExactDedup
from tunesmith.curate.near_dedup import NearDedup
from tunesmith.curate.record import Example
from tunesmith.curate.stage import StageContext

VOCAB = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrst"]  # 480 words


make = chat_row


def run(stage, examples, tmp_path):
    kept, record = stage.run(examples, StageContext(stage.name, tmp_path / "rejected"))
    assert record.rows_in == record.rows_out + record.rows_rejected
    return kept, record


def rejected_rows(tmp_path, name: str) -> dict[str, dict]:
    path = tmp_path / "rejected" / f"{name}.jsonl"
    if not path.exists():
        return {}
    return {row["id"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def random_words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


def near_dup_corpus() -> tuple[list[Example], dict[str, str]]:
    """20 unrelated 60-word rows, then 3 copies of rows 3, 7 and 11 with one word changed.

    Returns the rows and {copy id: original id}.
    """
    rng = random.Random(7)
    texts = [random_words(rng, 60) for _ in range(20)]
    examples = [make(i, " ".join(words)) for i, words in enumerate(texts)]
    copies = {}
    for n, original in enumerate([3, 7, 11]):
        words = list(texts[original])
        words[1] = "changedword"
        example = make(20 + n, " ".join(words))
        examples.append(example)
        copies[example.id] = f"s:{original}"
    return examples, copies


# --- exact_dedup --------------------------------------------------------------------------------------------------


def test_exact_dedup_keeps_the_first_ignoring_case_and_whitespace(tmp_path):
    examples = [
        make(0, "Hello World", "Hi there."),
        make(1, "Something else", "Yes."),
        make(2, "  hello   WORLD\n", "hi  there."),
        make(3, "Hello World", "A different answer."),
        make(4, "Hello World", "Hi there."),
    ]
    kept, record = run(ExactDedup(), examples, tmp_path)

    assert [ex.id for ex in kept] == ["s:0", "s:1", "s:3"]
    assert record.findings["rejected_by_reason"] == {"exact_duplicate": 2}
    assert record.findings["duplicates"] == 2
    assert record.findings["groups"] == [{"kept": "s:0", "dropped": ["s:2", "s:4"]}]
    assert record.findings["warnings"] == []
    rejected = rejected_rows(tmp_path, "exact_dedup")
    assert rejected["s:2"]["detail"] == "same conversation as s:0"
    assert rejected["s:4"]["reason"] == "exact_duplicate"
    assert rejected["s:4"]["where"] == "s.jsonl:5"


def test_exact_dedup_normalize_none_is_case_sensitive(tmp_path):
    examples = [make(0, "Hello World"), make(1, "hello world"), make(2, "Hello World")]
    kept, record = run(ExactDedup(ExactDedup.Config(normalize="none")), examples, tmp_path)
    assert [ex.id for ex in kept] == ["s:0", "s:1"]
    assert record.findings["groups"] == [{"kept": "s:0", "dropped": ["s:2"]}]


def test_exact_dedup_aggressive_ignores_punctuation(tmp_path):
    examples = [make(0, "Hello, world!"), make(1, "hello world")]
    kept, _ = run(ExactDedup(ExactDedup.Config(normalize="aggressive")), examples, tmp_path)
    assert [ex.id for ex in kept] == ["s:0"]


def test_exact_dedup_on_a_constant_field_warns(tmp_path):
    examples = [make(i, "Summarise the text below.", f"Summary number {i}.") for i in range(25)]
    kept, record = run(ExactDedup(ExactDedup.Config(fields=["prompt"])), examples, tmp_path)

    assert [ex.id for ex in kept] == ["s:0"]
    assert record.findings["rejected_by_reason"] == {"exact_duplicate": 24}
    assert record.findings["key_fields"] == ["prompt"]
    [warning] = record.findings["warnings"]
    assert "'prompt'" in warning
    assert "1 distinct values in 25 rows" in warning
    assert rejected_rows(tmp_path, "exact_dedup")["s:9"]["detail"] == "same prompt as s:0"


def test_exact_dedup_prompt_plus_response_key(tmp_path):
    examples = [make(i, "Summarise the text below.", f"Summary number {i % 3}.") for i in range(25)]
    kept, record = run(ExactDedup(ExactDedup.Config(fields=["prompt", "response"])), examples, tmp_path)
    assert [ex.id for ex in kept] == ["s:0", "s:1", "s:2"]
    assert len(record.findings["warnings"]) == 1  # the prompt alone is still constant


# --- near_dedup ---------------------------------------------------------------------------------------------------


def test_near_dedup_rejects_exactly_the_edited_copies(tmp_path):
    examples, copies = near_dup_corpus()
    kept, record = run(NearDedup(), examples, tmp_path)

    assert [ex.id for ex in kept] == [f"s:{i}" for i in range(20)]
    assert record.findings["rejected_by_reason"] == {"near_duplicate": 3}
    assert record.findings["num_clusters"] == 3
    assert record.findings["duplicate_rows"] == 3
    params = record.findings["params"]
    assert params["bands"] * params["rows"] <= 128
    clusters = {c["kept"]: c for c in record.findings["clusters"]}
    assert set(clusters) == {"s:3", "s:7", "s:11"}
    for copy_id, original in copies.items():
        [member] = clusters[original]["members"]
        assert member["id"] == copy_id
        assert member["jaccard"] >= 0.8
        assert copy_id in clusters[original]["member_texts"]
    rejected = rejected_rows(tmp_path, "near_dedup")
    assert set(rejected) == set(copies)
    assert re.fullmatch(r"Jaccard 0\.\d{3} with s:3 \(kept; threshold 0\.8\)", rejected["s:20"]["detail"])


def test_near_dedup_leaves_unrelated_rows_alone(tmp_path):
    rng = random.Random(11)
    examples = [make(i, " ".join(random_words(rng, 60))) for i in range(30)]
    # rows that share short phrases but are otherwise different
    examples += [make(30 + i, f"please answer the question {i}: " + " ".join(random_words(rng, 40))) for i in range(5)]
    kept, record = run(NearDedup(), examples, tmp_path)
    assert len(kept) == 35
    assert record.rows_rejected == 0
    assert record.findings["clusters"] == []
    assert "rejected_by_reason" not in record.findings


def test_near_dedup_tag_keeps_all_rows_and_groups_clusters(tmp_path):
    examples, copies = near_dup_corpus()
    kept, record = run(NearDedup(NearDedup.Config(action="tag")), examples, tmp_path)

    assert [ex.id for ex in kept] == [ex.id for ex in examples]
    assert record.rows_rejected == 0
    groups = {ex.id: ex.group for ex in kept}
    for copy_id, original in copies.items():
        assert groups[copy_id] == groups[original] == f"near:{original}"
    untouched = [ex for ex in kept if ex.id not in copies and ex.id not in copies.values()]
    assert len(untouched) == 17
    assert all(ex.group is None for ex in untouched)
    assert record.findings["num_clusters"] == 3


def test_near_dedup_keep_longest(tmp_path):
    rng = random.Random(3)
    words = random_words(rng, 60)
    short = make(0, " ".join(words))
    longer = make(1, " ".join(words + ["one", "more", "sentence"]))
    other = make(2, " ".join(random_words(rng, 60)))

    kept, record = run(NearDedup(NearDedup.Config(keep="longest")), [short, longer, other], tmp_path)
    assert [ex.id for ex in kept] == ["s:1", "s:2"]
    assert record.findings["clusters"][0]["kept"] == "s:1"
    assert "with s:1 (kept;" in rejected_rows(tmp_path, "near_dedup")["s:0"]["detail"]

    kept_first, _ = run(NearDedup(), [short, longer, other], tmp_path / "first")
    assert [ex.id for ex in kept_first] == ["s:0", "s:2"]


def test_near_dedup_on_the_response_field(tmp_path):
    rng = random.Random(5)
    answer = " ".join(random_words(rng, 60))
    examples = [
        make(0, "First question?", answer),
        make(1, "A different question?", answer),
        make(2, "First question?", " ".join(random_words(rng, 60))),
    ]
    kept, _ = run(NearDedup(NearDedup.Config(field="response")), examples, tmp_path)
    assert [ex.id for ex in kept] == ["s:0", "s:2"]


def test_near_dedup_config_checks_bands():
    with pytest.raises(ValidationError, match="exceeds num_perm"):
        NearDedup.Config(num_perm=64, bands=10, rows=8)
    with pytest.raises(ValidationError, match="set both"):
        NearDedup.Config(bands=4)
    assert NearDedup.Config(num_perm=64, bands=8, rows=8).bands == 8


# --- minhash ------------------------------------------------------------------------------------------------------


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    def grams(text: str) -> set[tuple[str, ...]]:
        words = [w for w in re.split(r"[^\w]+", text.lower()) if w]
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


def test_estimated_jaccard_matches_true_jaccard():
    rng = random.Random(13)
    base = random_words(rng, 100)
    variants = []
    for changed in (2, 4, 8, 12):  # edit that many evenly spaced words: more edits, lower similarity
        words = list(base)
        for i in range(0, len(words), max(1, 100 // changed)):
            words[i] = "edit" + str(i)
        variants.append(" ".join(words))
    texts = [" ".join(base), *variants, " ".join(random_words(rng, 100))]
    shingles = minhash.word_shingles(texts, 5)
    sig = minhash.signatures(shingles, len(texts), num_perm=512, seed=1)
    pairs = np.array([[0, j] for j in range(1, len(texts))])
    estimates = minhash.estimated_jaccard(sig, pairs)
    truths = [true_jaccard(texts[0], texts[j]) for j in range(1, len(texts))]

    assert truths[0] > 0.8 and truths[-2] < 0.35 and truths[-1] == 0.0  # the pairs span the range
    for estimate, truth in zip(estimates, truths):
        assert abs(estimate - truth) < 0.1, (estimate, truth)


def test_signatures_are_deterministic_and_identical_texts_match():
    texts = ["the quick brown fox jumps over the lazy dog", "the quick brown fox jumps over the lazy dog", "short"]
    sig_a = minhash.signatures(minhash.word_shingles(texts, 5), 3, num_perm=64, seed=1)
    sig_b = minhash.signatures(minhash.word_shingles(texts, 5), 3, num_perm=64, seed=1)
    assert np.array_equal(sig_a, sig_b)
    assert minhash.estimated_jaccard(sig_a, np.array([[0, 1], [0, 2]])).tolist() == [1.0, 0.0]


def test_optimal_bands_fit_num_perm():
    for threshold in (0.5, 0.8, 0.95):
        bands, rows = minhash.optimal_bands(threshold, 128)
        assert bands * rows <= 128


def test_word_cache_gives_the_same_shingles_as_fresh_hashing():
    cache = minhash.WordCache()
    first = ["a b c d e f!", "x y z", "", "hello world again and again."]
    cache.words(first)
    later = ["x y z", "new text, unseen", "a b c d e f!", "", "end."]  # reordered, new and empty texts
    cached, fresh = minhash.word_shingles(later, 2, cache), minhash.word_shingles(later, 2)
    assert np.array_equal(cached.hashes, fresh.hashes) and np.array_equal(cached.row_of, fresh.row_of)
    assert minhash.text_words(["end.  "]).offsets.tolist() == [0, 1]  # trailing punctuation adds no word


def test_exact_dedup_tells_rows_apart_by_their_tool_call_arguments(tmp_path):
    """Two rows whose only difference is a tool call's arguments are different training rows (a trained answer)."""
    from tunesmith.curate.record import Message

    def tool_row(i: int, email: str) -> Example:
        call = [{"id": "c1", "type": "function",
                 "function": {"name": "update_email", "arguments": json.dumps({"email": email})}}]
        turns = (Message("user", "Change my email, please."), Message("assistant", "", tool_calls=call),
                 Message("tool", "done", tool_call_id="c1"), Message("assistant", "Your email is updated."))
        return Example(id=f"t:{i}", source="t.jsonl", row=i, line=i + 1, messages=turns)

    rows = [tool_row(0, "tomasz.nowak77@gmail.com"), tool_row(1, "priya.raman@protonmail.com"),
            tool_row(2, "tomasz.nowak77@gmail.com")]
    kept, record = run(ExactDedup(), rows, tmp_path)
    assert [ex.id for ex in kept] == ["t:0", "t:1"] and record.rows_rejected == 1
