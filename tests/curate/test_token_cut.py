"""token_stats and cut answers (issue 11, item 6): rows whose last answer's end-of-turn token falls beyond
max_seq_len are warned about and rejected by default, so a card curated at max_seq_len N passes train's pre-flight
check at N; preference rows are counted and judged on both answers. Uses the tiny ChatML tokenizer.

Run: .venv/bin/python -m pytest tests/curate/test_token_cut.py -q
"""

import json

import pytest

from tunesmith.chat import encode_rows
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext
from tunesmith.curate.token_count import exact_counts
from tunesmith.curate.token_stats import TokenStats
from tunesmith.models import load_tokenizer
from tunesmith.train.data import TrainDataError, preflight

WORDS = "the order ships lamps to Lyon".split()


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return load_tokenizer(str(tiny_tokenizer_dir))


def row(i: int, *turns: tuple[str, str], rejected: tuple[str, ...] = ()) -> Example:
    return Example(id=f"t:{i}", source="t.jsonl", row=i, line=i + 1, messages=tuple(Message(*t) for t in turns),
                   rejected=tuple(Message("assistant", r) for r in rejected))


def answer(words: int) -> str:
    return " ".join(WORDS[k % len(WORDS)] for k in range(words))


def run(tokenizer, examples, tmp_path, **config):
    ctx = StageContext("token_stats", tmp_path / "rejected", extra={"tokenizer": tokenizer, "tokenizer_name": "t"})
    kept, record = TokenStats(TokenStats.Config(**config)).run(examples, ctx)
    rejected = tmp_path / "rejected" / "token_stats.jsonl"
    lines = [json.loads(line) for line in rejected.open()] if rejected.exists() else []
    return kept, record, {line["id"]: line for line in lines}


def refused(tokenizer, example: Example, max_seq_len: int) -> bool:
    try:
        preflight(tokenizer, encode_rows(tokenizer, [example.to_json()], max_seq_len), max_seq_len)
    except TrainDataError:
        return True
    return False


def test_rows_token_stats_keeps_at_n_pass_train_preflight_at_n_and_the_rest_are_the_ones_it_refuses(tokenizer,
                                                                                                    tmp_path):
    """Answers of 1..59 words at max_seq_len=48: every kept row passes train's pre-flight at 48, and a single-turn
    row is rejected exactly when pre-flight would refuse it (same template, same max_seq_len meaning)."""
    examples = [row(k, ("user", "Extract the order"), ("assistant", answer(k))) for k in range(1, 60)]
    kept, record, rejected = run(tokenizer, examples, tmp_path, max_seq_len=48)
    assert 0 < len(kept) < len(examples)
    preflight(tokenizer, encode_rows(tokenizer, [ex.to_json() for ex in kept], 48), 48)  # the card trains
    assert {ex.id for ex in examples if refused(tokenizer, ex, 48)} == set(rejected)
    assert {line["reason"] for line in rejected.values()} == {"answer_cut"}
    assert record.findings["cut_answer_rows"] == len(rejected)


def test_cut_answers_are_warned_about_and_rejected_with_their_lengths(tokenizer, tmp_path):
    """The rejected row says where its answer ends and how long it is; the warning gives the count and names
    reject_cut_answers and reject_truncated."""
    examples = [row(0, ("user", "Extract the order"), ("assistant", answer(3))),
                row(1, ("user", "Extract the order"), ("assistant", answer(80)))]
    counts = exact_counts(tokenizer, [[(m.role, m.content) for m in examples[1].messages]], 40, 8)
    end, length = int(counts.answer_end[0]), int(counts.lengths[0])
    kept, record, rejected = run(tokenizer, examples, tmp_path, max_seq_len=40)
    assert [ex.id for ex in kept] == ["t:0"]
    assert rejected["t:1"]["detail"] == (f"the answer ends at token {end} of {length} > max_seq_len=40: "
                                         "training would never see its end-of-turn token")
    [warning] = record.findings["warnings"]
    assert warning.startswith("1 row(s) have an answer cut by max_seq_len=40")
    assert "reject_cut_answers" in warning and "reject_truncated" in warning
    assert record.findings["cut_answer_example_ids"] == ["t:1"]


def test_cut_answers_kept_on_request_still_warn_that_train_will_refuse_them(tokenizer, tmp_path):
    examples = [row(1, ("user", "Extract the order"), ("assistant", answer(80)))]
    kept, record, _ = run(tokenizer, examples, tmp_path, max_seq_len=40, reject_cut_answers=False)
    assert len(kept) == 1 and refused(tokenizer, kept[0], 40)
    [warning] = record.findings["warnings"]
    assert "are kept: train at max_seq_len=40 will refuse them; set reject_cut_answers: true" in warning


def test_a_row_cut_only_after_its_answer_is_kept_unless_reject_truncated(tmp_path):
    """Only the template's "\\n" after <|im_end|> falls beyond max_seq_len (SmolLM2's tokenizer, where it is a
    token): the answer trains whole, so the row is kept (and trains); reject_truncated keeps its old meaning and
    drops every row longer than max_seq_len."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    example = row(0, ("user", "Extract the order"), ("assistant", answer(5)))
    counts = exact_counts(tokenizer, [[(m.role, m.content) for m in example.messages]], 10_000, 8)
    limit = int(counts.answer_end[0])
    assert counts.lengths[0] == limit + 1
    kept, record, _ = run(tokenizer, [example], tmp_path / "a", max_seq_len=limit)
    assert len(kept) == 1 and record.findings["truncated_rows"] == 1 and record.findings["cut_answer_rows"] == 0
    assert "warnings" not in record.findings and not refused(tokenizer, example, limit)
    kept, _, rejected = run(tokenizer, [example], tmp_path / "b", max_seq_len=limit, reject_truncated=True)
    assert kept == [] and rejected["t:0"]["reason"] == "truncated"


def test_a_multi_turn_row_whose_last_answer_is_cut_is_rejected(tokenizer, tmp_path):
    """The first answer's end of turn trains, the last answer's does not: pre-flight lets it through (it looks for
    any end of turn), token_stats rejects it because the final answer would be cut mid-way."""
    example = row(0, ("user", "Extract the order"), ("assistant", "lamps"), ("user", "More"), ("assistant", answer(80)))
    kept, _, rejected = run(tokenizer, [example], tmp_path, max_seq_len=48)
    assert kept == [] and rejected["t:0"]["reason"] == "answer_cut"
    assert not refused(tokenizer, example, 48)  # token_stats is the stricter of the two


def test_preference_rows_count_both_answers_and_a_cut_rejected_answer_rejects_the_row(tokenizer, tmp_path):
    examples = [row(0, ("user", "Extract the order"), ("assistant", answer(2)), rejected=(answer(4),)),
                row(1, ("user", "Extract the order"), ("assistant", answer(2)), rejected=(answer(80),))]
    expected = exact_counts(tokenizer, [[("user", "Extract the order"), ("assistant", answer(4))],
                                        [("user", "Extract the order"), ("assistant", answer(80))]], 40, 8)
    kept, record, rejected = run(tokenizer, examples, tmp_path, max_seq_len=40)
    assert [ex.id for ex in kept] == ["t:0"]
    assert rejected["t:1"]["reason"] == "answer_cut"
    assert rejected["t:1"]["detail"].startswith(f"the rejected answer ends at token {expected.answer_end[1]} of ")
    other = record.findings["rejected_answers"]
    assert other["rows"] == 2 and other["cut_answer_rows"] == 1 and other["truncated_rows"] == 1
    assert other["length"]["max"] == expected.lengths[1] and other["length"]["min"] == expected.lengths[0]
    assert other["trainable_tokens"]["total"] == expected.trainable.sum()
    assert record.findings["cut_answer_rows"] == 1  # the row counts once, whichever answer is cut


def test_train_preflight_names_the_curate_fix(tokenizer):
    cut = {"id": "cut:0", "messages": [{"role": "user", "content": "Extract the order"},
                                       {"role": "assistant", "content": answer(80)}]}
    with pytest.raises(TrainDataError) as failure:
        preflight(tokenizer, encode_rows(tokenizer, [cut], 40), max_seq_len=40)
    assert ("re-curate with the token_stats stage at max_seq_len: 40, whose reject_cut_answers option (on by "
            "default) rejects them") in str(failure.value)
