"""The fixes after a hostile review of the format readers: HTML and C++ text with `<video>`/`<image>` kept, per-turn
keys and second answer columns listed as ignored, `weight: 0` turns refused, rejections naming the input's own
field, ShareGPT conversations in role/content style, format hints on mistyped fields and two system prompts.

Rows are hand-made in the documented shapes (OpenAI fine-tuning `weight`, LLaMA-Factory ShareGPT/alpaca).
Run: .venv/bin/python -m pytest tests/curate/test_formats_review.py -q
"""

import json
import logging

import pytest

from tunesmith.curate.formats import media_token
from tunesmith.curate.record import Message
from tunesmith.curate.sources import SourceConfig, read_source
from tunesmith.curate.stage import StageContext
from tunesmith.curate.validate import Validate


def run(tmp_path, rows, **source):
    """Write rows to r.jsonl, read and validate them; (kept, stage record, rejected rows by id)."""
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    examples, _ = read_source(SourceConfig(path=str(path), **source))
    kept, stage = Validate().run(examples, StageContext("validate", tmp_path / "rejected"))
    rejected_file = tmp_path / "rejected" / "validate.jsonl"
    rejected = {}
    if rejected_file.exists():
        rejected = {r["id"]: r for r in map(json.loads, rejected_file.read_text(encoding="utf-8").splitlines())}
    return kept, stage, rejected


def turns(*pairs, key="role", text="content"):
    return [{key: who, text: what} for who, what in pairs]


# --- 1. media tokens ------------------------------------------------------------------------------------------

def test_html_and_cpp_text_naming_media_tags_is_kept_without_a_review_item(tmp_path):
    """`<video>` in a question about HTML, `<audio>` in markup with its closing tag and `std::vector<image>` are
    text: the rows are kept and nothing is flagged."""
    rows = [{"instruction": "What does the <video> element do in HTML5?", "output": "It embeds a video player."},
            {"instruction": "Fix my HTML", "input": "<html><body><audio>\n<source src='a.mp3'></audio></body></html>",
             "output": "Add the controls attribute: <audio controls>."},
            {"instruction": "In C++, what is std::vector<image>?", "output": "A vector of `image` values."}]
    kept, stage, rejected = run(tmp_path, rows)
    assert len(kept) == 3 and not rejected
    assert "review" not in stage.findings and stage.findings["media_token_rows"] == 0


def test_a_bare_image_token_without_media_is_a_review_item_naming_the_input_field(tmp_path):
    """LLaMA-Factory's `<image>` opening a turn, in a row with no images column: kept, and one review item in the
    shared convention pointing at the input's field (here alpaca's `instruction`)."""
    kept, stage, rejected = run(tmp_path, [{"instruction": "<image>How many birds?", "output": "Three."}])
    assert len(kept) == 1 and not rejected
    (item,) = stage.findings["review"]
    assert (item["kind"], item["id"], item["field"], item["text"]) == ("media_token", "r:0", "instruction",
                                                                       "<image>How many birds?")
    assert item["where"].endswith("r.jsonl:1") and "no image" in item["detail"]
    assert stage.findings["review_total"] == 1


def test_the_same_token_with_an_images_column_is_still_rejected_as_multimodal(tmp_path):
    row = {"messages": turns(("user", "<image>What is this?"), ("assistant", "A cat.")), "images": ["cat.png"]}
    _, stage, rejected = run(tmp_path, [row])
    assert (rejected["r:0"]["reason"], rejected["r:0"]["field"]) == ("multimodal_unsupported", "images")


@pytest.mark.parametrize(("text", "kind"), [
    ("<image>What is it?", "image"), ("Look:\n<audio>\nWhat is that sound?", "audio"), ("<video><video>Compare", "video"),
    ("What does the <video> element do?", None), ("std::vector<image> v;", None),
    ("<audio>\n<source src='a.mp3'></audio>", None),
])
def test_media_token_tells_a_placeholder_from_markup_and_code(text, kind):
    assert media_token(text) == kind


# --- 2. per-turn keys, weights and second answer columns ---------------------------------------------------------

def test_weight_zero_turns_are_refused_and_other_turn_keys_are_listed_as_ignored(tmp_path, caplog):
    """OpenAI fine-tuning rows: a `weight: 0` assistant turn must not be trained, which training cannot honour yet,
    so the row is rejected naming the turn; `weight: 1` and `reasoning_content` are listed (per row) as ignored
    per-turn keys, in the findings and the warning sentence."""
    draft = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "Bad draft", "weight": 0},
             {"role": "user", "content": "try again"}, {"role": "assistant", "content": "Good", "weight": 1}]
    kept_row = [{"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "Fine", "weight": 1, "reasoning_content": "think first"}]
    with caplog.at_level(logging.WARNING):
        kept, stage, rejected = run(tmp_path, [{"messages": draft}, {"messages": kept_row}, {"messages": kept_row}])
    assert [ex.id for ex in kept] == ["r:1", "r:2"]
    assert (rejected["r:0"]["reason"], rejected["r:0"]["field"]) == ("turn_weight_unsupported", "messages[1].weight")
    assert "cannot honour turn weights" in rejected["r:0"]["detail"]
    assert stage.findings["ignored_turn_keys"] == {"messages[].weight": 2, "messages[].reasoning_content": 2}
    assert stage.findings["ignored_columns"] == {}
    assert "ignored per-turn keys: messages[].weight (2 rows), messages[].reasoning_content (2 rows)" in caplog.text


def test_sharegpt_turn_weights_are_refused_naming_the_conversation_turn(tmp_path):
    row = {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "draft", "weight": 0},
                             {"from": "human", "value": "again"}, {"from": "gpt", "value": "final", "weight": 1}]}
    kept, _, rejected = run(tmp_path, [row])
    assert not kept
    assert (rejected["r:0"]["reason"], rejected["r:0"]["field"]) == ("turn_weight_unsupported",
                                                                     "conversations[1].weight")


@pytest.mark.parametrize(("row", "answer"), [
    ({"instruction": "Name a colour", "output": "red", "response": "blue"}, "red"),
    ({"prompt": "Name a colour", "completion": "red", "response": "blue"}, "red"),
])
def test_a_second_answer_column_that_is_not_read_is_listed_as_ignored(tmp_path, row, answer):
    """alpaca reads `output` before `response`, prompt/completion `completion` before `response`: the other one is
    not trained on, so it is listed as ignored rather than silently dropped."""
    kept, stage, _ = run(tmp_path, [row])
    assert kept[0].messages[-1] == Message("assistant", answer)
    assert stage.findings["ignored_columns"] == {"response": 1}


def test_response_alone_is_read_and_not_listed(tmp_path):
    kept, stage, _ = run(tmp_path, [{"instruction": "Name a colour", "response": "blue"}])
    assert kept[0].messages[-1] == Message("assistant", "blue") and stage.findings["ignored_columns"] == {}


# --- 3. rejections name the input's own field ------------------------------------------------------------------

@pytest.mark.parametrize(("row", "reason", "field"), [
    ({"system": "sys", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                                         {"from": "gpt", "value": "a2"}]}, "roles_out_of_order", "conversations[2].from"),
    ({"system": "sys", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]},
     "empty_turn", "conversations[1].value"),
    ({"instruction": "q", "output": "a", "history": [["h1", ""], ["h2", "a2"]]}, "empty_turn", "history[0][1]"),
    ({"instruction": "q", "output": "a", "history": [["h1", "x\u0007y"]]}, "control_characters", "history[0][1]"),
    ({"instruction": "  ", "output": "a", "system": "s"}, "empty_turn", "instruction"),
    ({"prompt": "q", "completion": " ", "system": "s"}, "empty_turn", "completion"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                   {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a"}]},
     "roles_out_of_order", "messages[2].role"),
])
def test_rejections_name_the_field_of_the_input_row_not_a_converted_turn(tmp_path, row, reason, field):
    """A top-level `system` or alpaca's history shifts the converted turns; the rejection still names the field a
    person finds in the file."""
    _, _, rejected = run(tmp_path, [row])
    assert (rejected["r:0"]["reason"], rejected["r:0"]["field"]) == (reason, field)
    assert field.split(".")[0].split("[")[0] in rejected["r:0"]["detail"]


# --- 4. ShareGPT conversations in role/content style -----------------------------------------------------------

def test_conversations_of_role_content_turns_are_read_as_messages_and_counted(tmp_path):
    """A common export: `conversations` holding OpenAI role/content turns. They are read as they are (with the
    top-level system first) and counted as a fix-up, rather than rejected with a wrong `format:` hint."""
    row = {"system": "Be brief.", "conversations": [{"role": "user", "content": "q"},
                                                    {"role": "assistant", "content": "a"}]}
    kept, stage, rejected = run(tmp_path, [row, row | {"system": "Be kind."}])
    assert not rejected
    assert kept[0].messages == (Message("system", "Be brief."), Message("user", "q"), Message("assistant", "a"))
    assert stage.findings["fixups"]["role_content_conversations"] == 2


def test_mixed_turn_styles_say_which_turn_and_what_to_do(tmp_path):
    row = {"conversations": [{"from": "human", "value": "q"}, {"role": "assistant", "content": "a"}]}
    _, _, rejected = run(tmp_path, [row])
    bad = rejected["r:0"]
    assert (bad["reason"], bad["field"]) == ("missing_field", "conversations[1].from")
    assert "role/content turn among from/value turns" in bad["detail"]


def test_sharegpt_turns_under_messages_point_at_the_columns_mapping(tmp_path):
    row = {"messages": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    _, _, rejected = run(tmp_path, [row])
    assert "`columns: {messages: conversations}`" in rejected["r:0"]["detail"]


# --- 5. format hint on a mistyped field ---------------------------------------------------------------------------

def test_a_wrong_format_on_conversational_preference_rows_names_the_format_the_keys_match(tmp_path):
    """`format: prompt_completion` on TRL conversational preference rows: 'prompt' is a list, so the row is a
    wrong_type, and the detail says the row has the keys of the preference format."""
    row = {"prompt": [{"role": "user", "content": "Sky colour?"}],
           "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Red."}]}
    _, _, rejected = run(tmp_path, [row], format="prompt_completion")
    bad = rejected["r:0"]
    assert (bad["reason"], bad["field"]) == ("wrong_type", "prompt")
    assert "the keys of the preference format but the source is read as prompt_completion" in bad["detail"]


def test_a_mistyped_field_of_the_rows_own_format_gets_no_format_hint(tmp_path):
    _, _, rejected = run(tmp_path, [{"prompt": "q", "completion": 3}])
    assert rejected["r:0"]["detail"] == "field 'completion' is int, expected a string"


# --- 6. two system prompts --------------------------------------------------------------------------------------

def test_a_top_level_system_and_a_system_turn_are_named_as_two_system_prompts(tmp_path):
    row = {"system": "top", "conversations": [{"from": "system", "value": "inner"}, {"from": "human", "value": "q"},
                                              {"from": "gpt", "value": "a"}]}
    _, _, rejected = run(tmp_path, [row])
    bad = rejected["r:0"]
    assert (bad["reason"], bad["field"]) == ("two_system_prompts", "conversations[0].from")
    assert "two system prompts, the top-level `system` field and conversations[0]" in bad["detail"]
    assert "remove the `system` field" in bad["detail"]


def test_a_late_system_turn_is_still_system_not_first_naming_it(tmp_path):
    row = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"},
                             {"from": "system", "value": "late"}, {"from": "human", "value": "q2"},
                             {"from": "gpt", "value": "a2"}]}
    _, _, rejected = run(tmp_path, [row])
    assert (rejected["r:0"]["reason"], rejected["r:0"]["field"]) == ("system_not_first", "conversations[2].from")
