"""Fixes after the hostile review of preference/KTO curation: TRL's implicit prompt on plain strings, KTO labels
that contradict each other (not duplicates: both kept and reported), label balance on the card, 1/0 labels, and
the bias stage's language share ignoring rows too short to tell.

Run: .venv/bin/python -m pytest tests/curate/test_preference_review.py -q
"""

from collections import Counter

import pytest

from tests.curate.rows import chat_row
from tests.curate.test_preference import problem, read, turns
from tunesmith.artifacts import read_card
from tunesmith.curate.bias import BiasAudit
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.dedup import ExactDedup
from tunesmith.curate.pipeline import run_curate
from tunesmith.curate.profile import ColumnProfile
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext

STAGES = [{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "token_stats", "max_seq_len": 128},
          {"stage": "split", "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}]


# 1. TRL's implicit prompt on plain strings


def test_plain_implicit_prompt_rows_split_at_the_shared_words_as_trl_does():
    """The reviewer's rows: the shared 'The sky 0 is' is the user prompt, ' blue.' / ' green.' the answers."""
    fixups = Counter()
    for n in range(3):
        example = read({"chosen": f"The sky {n} is blue.", "rejected": f"The sky {n} is green."}, fixups=fixups)
        assert turns(example.messages) == [("user", f"The sky {n} is"), ("assistant", " blue.")]
        assert turns(example.rejected) == [("assistant", " green.")]
    assert fixups["prompt_from_shared_text"] == 3 and fixups["prompt_from_shared_turns"] == 0


def test_the_implicit_text_prompt_never_ends_inside_a_word():
    """'blue' vs 'bluer' share 'blue', but the prompt stops before that word, so each answer is whole words."""
    example = read({"chosen": "The sky is blue", "rejected": "The sky is bluer"})
    assert turns(example.messages) == [("user", "The sky is"), ("assistant", " blue")]
    assert turns(example.rejected) == [("assistant", " bluer")]


@pytest.mark.parametrize("fields, reason, field, said", [
    ({"chosen": "Blue sky.", "rejected": "Green sky."}, "no_shared_prompt", "rejected", "share no leading words"),
    ({"chosen": "Bluish.", "rejected": "Blue."}, "no_shared_prompt", "rejected", "give a 'prompt' column"),
    ({"chosen": "The sky is blue.", "rejected": "The sky is blue. Or grey."}, "empty_answer", "chosen",
     "leaves chosen empty"),
    ({"chosen": "The sky is blue.", "rejected": " The sky is blue. "}, "chosen_equals_rejected", "rejected",
     "same text"),
])
def test_plain_rows_without_a_usable_shared_prefix_are_refused_in_a_clear_sentence(fields, reason, field, said):
    """No shared words (or a shared part inside a word) gives no prompt; a prefix that is a whole answer gives none."""
    refused = problem(fields)
    assert (refused.reason, refused.field) == (reason, field) and said in refused.detail, refused.detail


def test_hh_transcripts_still_go_through_the_turn_split_not_the_text_split():
    """Plain strings that are Human/Assistant transcripts keep their turns (the text split would keep the markers)."""
    fixups = Counter()
    example = read({"chosen": "\n\nHuman: Sky?\n\nAssistant: Blue.", "rejected": "\n\nHuman: Sky?\n\nAssistant: Red."},
                   fixups=fixups)
    assert turns(example.messages) == [("user", "Sky?"), ("assistant", "Blue.")]
    assert fixups["prompt_from_shared_turns"] == 1


# 3. KTO labels 1/0


@pytest.mark.parametrize("value, label", [(1, True), (0, False), ("1", True), (" 0 ", False)])
def test_kto_labels_1_and_0_are_read_as_true_and_false_and_counted(value, label):
    fixups = Counter()
    assert read({"prompt": "Q", "completion": "A", "label": value}, "kto", fixups).label is label
    assert fixups["label_from_number"] == 1


@pytest.mark.parametrize("value", [2, -1, 1.0, "yes", "01", None, [1]])
def test_other_kto_labels_are_refused_saying_what_is_accepted(value):
    refused = problem({"prompt": "Q", "completion": "A", "label": value}, "kto")
    assert (refused.reason, refused.field) == ("bad_label", "label")
    assert "true/false or 1/0" in refused.detail


# 2. contradicting KTO labels, and label balance


def kto_row(i: int, prompt: str, completion: str, label: bool) -> Example:
    return Example(id=f"k:{i}", source="k.jsonl", row=i, line=i + 1, label=label,
                   messages=(Message("user", prompt), Message("assistant", completion)))


def dedup(rows, tmp_path, **config):
    kept, record = ExactDedup(ExactDedup.Config(**config)).run(rows, StageContext("exact_dedup", tmp_path / "rej"))
    return kept, record


def test_the_same_answer_labelled_true_and_false_is_kept_twice_and_reported_naming_both_rows(tmp_path):
    """The label is in the key: the false row is no duplicate of the true row; a true repeat still is one."""
    rows = [kto_row(0, "Sky?", "Blue.", True), kto_row(1, "Sky?", "Blue.", False), kto_row(2, "Sky?", "Blue.", True),
            kto_row(3, "Sea?", "Wet.", True)]
    kept, record = dedup(rows, tmp_path)
    assert [ex.id for ex in kept] == ["k:0", "k:1", "k:3"]
    assert record.findings["rejected_by_reason"] == {"exact_duplicate": 1}
    assert record.findings["conflicting_labels"] == {"pairs": 1, "rows": 2}
    (warning,) = record.findings["warnings"]
    assert warning.startswith("1 KTO answer(s) appear labelled both true and false") and "k:0 and k:1" in warning
    (item,) = record.findings["review"]
    assert record.findings["review_total"] == 1
    assert item["kind"] == "conflicting_label" and item["id"] == "k:1" and item["field"] == "label"
    assert item["where"] == rows[1].where and item["text"] == "Blue."
    assert "k:0" in item["detail"] and "labelled false" in item["detail"] and "labelled true" in item["detail"]


def test_one_prompt_with_a_good_and_a_bad_answer_is_no_conflict_even_keyed_on_the_prompt(tmp_path):
    """Keyed on the prompt alone, a true and a false row are KTO's usual pair: one of each kept, nothing reported."""
    rows = [kto_row(0, "Sky?", "Blue.", True), kto_row(1, "Sky?", "Red.", False), kto_row(2, "Sky?", "Azure.", True)]
    kept, record = dedup(rows, tmp_path, fields=["prompt"])
    assert [ex.id for ex in kept] == ["k:0", "k:1"]
    assert "conflicting_labels" not in record.findings and not record.findings.get("review")


def test_sft_rows_dedup_as_before_without_label_findings(tmp_path):
    kept, record = dedup([chat_row(0, "Hi"), chat_row(1, "hi ")], tmp_path)
    assert [ex.id for ex in kept] == ["s:0"] and "conflicting_labels" not in record.findings


def test_profile_counts_kto_labels_and_warns_when_one_side_is_under_a_tenth():
    def profile_of(true: int, false: int) -> ColumnProfile:
        profile = ColumnProfile()
        for i in range(true + false):
            row = kto_row(i, f"Q{i}?", f"A{i}.", i < true)
            profile.add(None, row.messages, row)
        return profile

    lopsided = profile_of(19, 1)
    assert lopsided.findings()["kto_labels"] == {"true": 19, "false": 1, "true_share": 0.95}
    (warning,) = [w for w in lopsided.warnings() if w.startswith("KTO labels")]
    assert "only 1 of 20 rows (5%) are labelled false (undesirable answers)" in warning
    balanced = profile_of(10, 10)
    assert balanced.findings()["kto_labels"]["true_share"] == 0.5
    assert not [w for w in balanced.warnings() if w.startswith("KTO labels")]
    assert not [w for w in profile_of(0, 5).warnings() if "labelled false" in w]  # the missing side is named
    assert [w for w in profile_of(0, 5).warnings() if "labelled true (desirable answers)" in w]
    sft = ColumnProfile()
    sft.add(None, chat_row(0, "Hi").messages, chat_row(0, "Hi"))
    assert "kto_labels" not in sft.findings()


def test_a_kto_csv_with_1_0_labels_curates_with_label_counts_and_the_conflict_on_the_card(tmp_path,
                                                                                         tiny_tokenizer_dir):
    """End to end: '1'/'0' CSV cells become labels (a fix-up), the card counts them, the contradiction is reported."""
    lines = ["prompt,completion,label"] + [f"Is item {n} blue?,Item {n} is blue.,{n % 2}" for n in range(12)]
    lines.append("Is item 0 blue?,Item 0 is blue.,1")  # item 0 was labelled 0 above: a contradiction
    source = tmp_path / "kto.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = CurateConfig(name="kto", output_dir=str(tmp_path / "out"), tokenizer=str(tiny_tokenizer_dir),
                          stages=STAGES, sources=[{"path": str(source)}], gates={"min_rows": 5})
    card = read_card(run_curate(config).directory)
    validate, dedup_record = card.stage("validate"), card.stage("exact_dedup")
    assert card.task == "kto" and validate.rows_rejected == 0
    assert validate.findings["fixups"]["label_from_number"] == 13
    assert validate.findings["profile"]["kto_labels"] == {"true": 7, "false": 6, "true_share": 0.5385}
    assert dedup_record.rows_rejected == 0 and dedup_record.findings["conflicting_labels"]["pairs"] == 1
    assert [item["kind"] for item in dedup_record.findings["review"]] == ["conflicting_label"]


# 4. the language share counts only rows long enough to tell


def bias(rows, tmp_path):
    _, record = BiasAudit(BiasAudit.Config()).run(rows, StageContext("bias_audit", tmp_path / "rej"))
    return record.findings


def test_short_english_rows_are_too_short_to_tell_not_foreign(tmp_path):
    """'Sky 0?' / 'weather?' rows once read as '100% not English': now they are counted apart and warn nothing."""
    rows = [chat_row(i, f"Sky {i}?", "weather?") for i in range(8)]
    findings = bias(rows, tmp_path)
    assert findings["language_too_short"] == 8 and findings["languages"] == {}
    assert not [w for w in findings["warnings"] if w.startswith("languages:")]
    assert "8 sampled row(s) were too short to tell their language" in findings["coverage"]


def test_long_foreign_rows_still_warn_and_say_how_many_rows_were_too_short(tmp_path):
    french = "Pouvez-vous m'expliquer pourquoi le ciel est bleu pendant la journée ?"
    rows = [chat_row(i, french, "La lumière est diffusée par l'air.") for i in range(3)]
    rows += [chat_row(3 + i, "Sky?", "Blue.") for i in range(2)]
    findings = bias(rows, tmp_path)
    assert findings["languages"] == {"fr": 3} and findings["language_too_short"] == 2
    (warning,) = [w for w in findings["warnings"] if w.startswith("languages:")]
    assert warning.startswith("languages: 100% of the sampled rows are not English (counting the 3 rows long enough "
                              "to tell; 2 more sampled row(s) were too short to tell)")
