"""Preference and KTO rows: each documented shape read into prompt + chosen `messages` and `rejected` turns.

The rows are the documented examples of TRL's dataset formats (https://huggingface.co/docs/trl/dataset_formats),
Anthropic HH-RLHF transcripts, UltraFeedback-binarized rows and LLaMA-Factory's ShareGPT ranking format.
Run: .venv/bin/python -m pytest tests/curate/test_preference.py -q
"""

from collections import Counter

import pytest

from tunesmith.artifacts import SourceRecord
from tunesmith.curate.formats import RowProblem
from tunesmith.curate.preference import PREFERENCE_KEYS, card_task, preference_example, prompt_group
from tunesmith.curate.record import Example, Message
from tunesmith.errors import UsageError

SKY = "What color is the sky?"


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def read(fields, fmt="preference", fixups=None):
    """preference_example on a raw row of a pretend `p.jsonl`."""
    raw = Example(id="p:0", source="p.jsonl", row=0, line=1, format=fmt, fields=fields)
    return preference_example(raw, fmt, fields, Counter() if fixups is None else fixups)


def problem(fields, fmt="preference") -> RowProblem:
    with pytest.raises(RowProblem) as caught:
        read(fields, fmt)
    return caught.value


def turns(messages):
    return [(m.role, m.content) for m in messages]


def test_plain_explicit_prompt_becomes_a_user_turn_with_each_answer_as_an_assistant_turn():
    """TRL 'standard' preference: prompt/chosen/rejected strings."""
    example = read({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."})
    assert turns(example.messages) == [("user", "The sky is"), ("assistant", " blue.")]
    assert turns(example.rejected) == [("assistant", " green.")]
    assert example.label is None and example.group == prompt_group([Message("user", "The sky is")])


def test_conversational_explicit_prompt_keeps_the_prompt_turns_and_answer_messages():
    """TRL conversational preference: prompt a list of messages, chosen/rejected lists of assistant messages."""
    example = read({"prompt": [{"role": "system", "content": "Be brief."}, user(SKY)],
                    "chosen": [bot("It is blue.")], "rejected": [bot("It is green.")]})
    assert turns(example.messages) == [("system", "Be brief."), ("user", SKY), ("assistant", "It is blue.")]
    assert turns(example.rejected) == [("assistant", "It is green.")]


def test_implicit_prompt_is_the_turns_chosen_and_rejected_share():
    """TRL implicit prompt: two whole conversations; their common first turns are the prompt (a counted fix-up)."""
    fixups = Counter()
    example = read({"chosen": [user("Hi"), bot("Hello!"), user(SKY), bot("It is blue.")],
                    "rejected": [user("Hi"), bot("Hello!"), user(SKY), bot("It is green.")]}, fixups=fixups)
    assert turns(example.messages) == [("user", "Hi"), ("assistant", "Hello!"), ("user", SKY),
                                       ("assistant", "It is blue.")]
    assert turns(example.rejected) == [("assistant", "It is green.")]
    assert fixups["prompt_from_shared_turns"] == 1


def test_hh_rlhf_transcripts_are_split_into_turns_and_their_shared_prompt():
    """Anthropic HH-RLHF: chosen and rejected are plain '\\n\\nHuman: ... \\n\\nAssistant: ...' transcripts."""
    example = read({"chosen": f"\n\nHuman: {SKY}\n\nAssistant: Blue, on a clear day.",
                    "rejected": f"\n\nHuman: {SKY}\n\nAssistant: I don't know."})
    assert turns(example.messages) == [("user", SKY), ("assistant", "Blue, on a clear day.")]
    assert turns(example.rejected) == [("assistant", "I don't know.")]


def test_whole_conversations_beside_a_prompt_column_take_the_shared_turns_as_prompt():
    """UltraFeedback-binarized: a prompt string, and chosen/rejected that repeat it as their first turn."""
    example = read({"prompt": SKY, "chosen": [user(SKY), bot("Blue.")], "rejected": [user(SKY), bot("Green.")]})
    assert turns(example.messages) == [("user", SKY), ("assistant", "Blue.")]
    assert turns(example.rejected) == [("assistant", "Green.")]
    mismatch = problem({"prompt": "Another question?", "chosen": [user(SKY), bot("Blue.")],
                        "rejected": [user(SKY), bot("Green.")]})
    assert (mismatch.reason, mismatch.field) == ("prompt_mismatch", "prompt")


def test_sharegpt_ranking_rows_read_conversations_as_prompt_and_one_turn_per_answer():
    """LLaMA-Factory ranking format: conversations (from/value) plus chosen/rejected single gpt turns."""
    example = read({"conversations": [{"from": "human", "value": SKY}], "system": "Be brief.",
                    "chosen": {"from": "gpt", "value": "Blue."}, "rejected": {"from": "gpt", "value": "Green."}},
                   "preference_sharegpt")
    assert turns(example.messages) == [("system", "Be brief."), ("user", SKY), ("assistant", "Blue.")]
    assert turns(example.rejected) == [("assistant", "Green.")]
    wrong = problem({"conversations": [{"from": "human", "value": SKY}], "chosen": {"from": "human", "value": "x"},
                     "rejected": {"from": "gpt", "value": "Green."}}, "preference_sharegpt")
    assert (wrong.reason, wrong.field) == ("answer_roles", "chosen[0].role")


def test_kto_rows_keep_their_boolean_label_and_no_rejected_answer():
    """TRL unpaired preference: prompt/completion/label, plain or conversational."""
    good = read({"prompt": "The sky is", "completion": " blue.", "label": True}, "kto")
    bad = read({"prompt": [user(SKY)], "completion": [bot("It is green.")], "label": False}, "kto")
    assert (good.label, good.rejected, turns(good.messages)[-1]) == (True, (), ("assistant", " blue."))
    assert (bad.label, turns(bad.messages)) == (False, [("user", SKY), ("assistant", "It is green.")])


def test_kto_label_must_be_a_boolean_and_the_words_true_false_are_a_counted_fixup():
    """'yes' and 2 are refused naming the field; 'false' (a CSV cell) is read as False and counted (1/0: see
    test_preference_review.py)."""
    for value in ("yes", 2, None):
        refused = problem({"prompt": "Q", "completion": "A", "label": value}, "kto")
        assert (refused.reason, refused.field) == ("bad_label", "label")
        assert "true (a desirable answer) or false" in refused.detail
    fixups = Counter()
    assert read({"prompt": "Q", "completion": "A", "label": " False"}, "kto", fixups).label is False
    assert fixups["label_from_text"] == 1


def test_chosen_equal_to_rejected_after_stripping_is_refused():
    """A pair whose answers differ only in surrounding whitespace prefers nothing."""
    refused = problem({"prompt": "Q", "chosen": " Blue. ", "rejected": "Blue."})
    assert (refused.reason, refused.field) == ("chosen_equals_rejected", "rejected")
    whole = problem({"chosen": [user("Q"), bot("A")], "rejected": [user("Q"), bot("A")]})
    assert whole.reason == "chosen_equals_rejected"  # the prompt ends at the shared user turn, the rest is equal


@pytest.mark.parametrize("fields, reason, field", [
    ({"prompt": "Q", "chosen": "  ", "rejected": "B"}, "empty_answer", "chosen"),
    ({"prompt": "Q", "chosen": "A", "rejected": ""}, "empty_answer", "rejected"),
    ({"prompt": " ", "chosen": "A", "rejected": "B"}, "empty_prompt", "prompt"),
    ({"prompt": "Q", "chosen": "A", "rejected": 3}, "wrong_type", "rejected"),
    ({"prompt": [user("Q"), {"role": "user"}], "chosen": "A", "rejected": "B"}, "missing_field", "prompt[1].content"),
    ({"prompt": [user("Q"), bot("Hm")], "chosen": "A", "rejected": "B"}, "prompt_not_user", "prompt"),
    ({"chosen": [bot("The sky is blue.")], "rejected": [bot("The sky is green.")]}, "no_prompt", "prompt"),
    ({"chosen": [user("Q1"), bot("A")], "rejected": [user("Q2"), bot("B")]}, "no_shared_prompt", "rejected"),
    ({"chosen": [user("Q"), bot("A"), user("more?"), bot("C")], "rejected": [user("Q"), bot("B")]},
     "answer_roles", "chosen[1].role"),
])
def test_unusable_pairs_are_refused_naming_the_field(fields, reason, field):
    """Each broken shape gives a reason code and the field a person must fix."""
    refused = problem(fields)
    assert (refused.reason, refused.field) == (reason, field), refused.detail


def test_rows_sharing_a_prompt_share_a_group_whatever_their_answers_or_whitespace():
    """split keeps a group on one side, so every pair of one prompt goes to one split."""
    a = read({"prompt": "Q", "chosen": "A", "rejected": "B"})
    b = read({"prompt": [user(" Q ")], "chosen": [bot("C")], "rejected": [bot("D")]})
    c = read({"prompt": "Q?", "chosen": "A", "rejected": "B"})
    assert a.group == b.group != c.group and a.group.startswith("prompt:")


def test_multimodal_preference_rows_are_refused():
    """A row with images (RLAIF-V style) would train on text that refers to a missing image."""
    refused = problem({"prompt": "Describe it", "chosen": "A cat", "rejected": "A dog", "images": ["a.png"]})
    assert (refused.reason, refused.field) == ("multimodal_unsupported", "images")


def test_preference_keys_are_checked_most_specific_first():
    """ShareGPT ranking rows also hold chosen+rejected: their own key set must come first."""
    names = [fmt for fmt, _ in PREFERENCE_KEYS]
    assert names.index("preference_sharegpt") < names.index("preference")
    first = next(fmt for fmt, keys in PREFERENCE_KEYS if keys <= {"conversations", "chosen", "rejected"})
    assert first == "preference_sharegpt"


def test_card_task_follows_the_sources_and_refuses_a_mix_naming_both():
    """One card, one task: a preference source beside an SFT source is refused with both paths."""
    pref, kto = SourceRecord(path="pairs.jsonl", format="preference", rows=2), SourceRecord(
        path="kto.jsonl", format="kto", rows=2)
    sft = SourceRecord(path="chat.jsonl", format="messages", rows=2)
    assert (card_task([pref]), card_task([kto]), card_task([sft, sft])) == ("preference", "kto", "sft")
    with pytest.raises(UsageError, match=r"pairs\.jsonl \(preference.*chat\.jsonl \(sft"):
        card_task([pref, sft])
