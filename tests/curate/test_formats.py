"""Every documented row shape read in full: alpaca with history/system and its Dolly and `response` variants,
ShareGPT with function_call/observation and tools, OpenAI messages with content parts and tool calls, plain text,
JSON Lines saved as .json, ignored columns, multimodal rows and the column profile, on hand-made fixture rows
(tests/fixtures/formats/) that follow each format's documented shape.

Run: .venv/bin/python -m pytest tests/curate/test_formats.py -q
"""

import json
import logging
import typing
from pathlib import Path

import pytest

from tunesmith.curate.record import Message
from tunesmith.curate.sources import FORMATS, SourceConfig, SourceError, read_source
from tunesmith.curate.stage import StageContext
from tunesmith.curate.validate import Validate

FORMATS_DIR = Path(__file__).parent.parent / "fixtures" / "formats"


def validate(tmp_path, name_or_path, **source):
    """read_source + Validate on one fixture; the survivors, the stage record and the rejected rows by id."""
    path = name_or_path if isinstance(name_or_path, Path) else FORMATS_DIR / name_or_path
    examples, record = read_source(SourceConfig(path=str(path), **source))
    kept, stage = Validate().run(examples, StageContext("validate", tmp_path / "rejected"))
    rejected_file = tmp_path / "rejected" / "validate.jsonl"
    rejected = {}
    if rejected_file.exists():
        rejected = {r["id"]: r for r in map(json.loads, rejected_file.read_text(encoding="utf-8").splitlines())}
    return kept, stage, rejected, record


def test_alpaca_history_comes_before_the_instruction_and_system_first(tmp_path):
    """LLaMA-Factory alpaca: system, then every [prompt, answer] pair of `history`, then instruction+input -> output."""
    kept, stage, rejected, record = validate(tmp_path, "alpaca_history.json")
    assert record.format == "alpaca" and not rejected
    assert kept[0].messages == (
        Message("system", "You are a careful nurse."),
        Message("user", "What is a normal body temperature?"),
        Message("assistant", "About 98.6 degrees Fahrenheit."),
        Message("user", "Is 99 a fever?"),
        Message("assistant", "No, 99 F is within the normal range for most adults."),
        Message("user", "And in Celsius?"),
        Message("assistant", "About 37 degrees Celsius."),
    )
    assert kept[1].messages == (Message("user", "Summarise the text.\n\nCats sleep for about fifteen hours a day."),
                                Message("assistant", "Cats sleep most of the day."))
    assert stage.findings["ignored_columns"] == {}


def test_a_history_pair_that_is_not_two_strings_is_rejected_naming_it(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"instruction": "q", "output": "a", "history": [["only one"]]}) + "\n")
    kept, _, rejected, _ = validate(tmp_path, path)
    assert not kept
    assert (rejected["h:0"]["reason"], rejected["h:0"]["field"]) == ("wrong_type", "history[0]")


def test_dolly_context_and_response_are_read_and_category_is_listed_as_ignored(tmp_path, caplog):
    """databricks-dolly: instruction + context -> response; the unread `category` column is named with its count."""
    with caplog.at_level(logging.WARNING):
        kept, stage, rejected, record = validate(tmp_path, "dolly.jsonl")
    assert record.format == "alpaca" and not rejected
    assert kept[0].messages == (Message("user", "When was the bridge opened?\n\nThe Golden Gate Bridge opened in 1937."),
                                Message("assistant", "It opened in 1937."))
    assert kept[1].messages == (Message("user", "Name three primary colours."),
                                Message("assistant", "Red, yellow and blue."))
    assert stage.findings["ignored_columns"] == {"category": 2}
    sentence = "ignored columns: category (2 rows); keep one with `keep_columns: [category]` on the source"
    assert stage.findings["warnings"] == [sentence]
    assert f"validate: {sentence}" in caplog.text


def test_instruction_input_response_variant(tmp_path):
    kept, _, rejected, record = validate(tmp_path, "alpaca_response.jsonl")
    assert record.format == "alpaca" and not rejected
    assert kept[0].messages == (Message("user", "Translate to German.\n\nGood morning"),
                                Message("assistant", "Guten Morgen"))


def test_keep_columns_keeps_the_column_on_the_row_and_off_the_ignored_list(tmp_path):
    kept, stage, _, _ = validate(tmp_path, "dolly.jsonl", keep_columns=["category"])
    assert [ex.meta for ex in kept] == [{"category": "closed_qa"}, {"category": "brainstorming"}]
    assert stage.findings["ignored_columns"] == {} and stage.findings["warnings"] == []


def test_sharegpt_function_call_and_observation_become_a_tool_call_and_its_result(tmp_path):
    """LLaMA-Factory sharegpt: top-level system first, function_call -> assistant tool_calls, observation -> tool."""
    kept, stage, rejected, record = validate(tmp_path, "sharegpt_tools.json")
    assert record.format == "sharegpt" and not rejected
    row = kept[0]
    assert [m.role for m in row.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert row.messages[0].content == "You can call tools."
    assert row.messages[2].tool_calls == [{"type": "function",
                                           "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert json.loads(row.messages[3].content) == {"temperature_c": 18, "sky": "cloudy"}
    assert row.messages[4].content == "It is 18 degrees C and cloudy in Paris."
    assert row.tools[0]["name"] == "get_weather"  # the JSON text of `tools` is parsed and kept with the row
    assert kept[1].messages[0] == Message("system", "Be friendly.") and kept[1].tools is None
    assert stage.findings["ignored_columns"] == {}


def test_openai_content_parts_tool_calls_and_tool_turns_are_kept_in_the_split_row(tmp_path):
    """Text parts are joined; null content beside tool_calls is allowed; tool turns keep tool_call_id and name."""
    kept, stage, rejected, record = validate(tmp_path, "openai_tools.jsonl")
    assert record.format == "messages" and not rejected
    written = kept[0].to_json()
    assert written["messages"] == [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Add 2 and 3,\nthen 4 and 5."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 3}"}},
            {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 4, \"b\": 5}"}}]},
        {"role": "tool", "content": "5", "tool_call_id": "call_1", "name": "add"},
        {"role": "tool", "content": "9", "tool_call_id": "call_2", "name": "add"},
        {"role": "assistant", "content": "2 + 3 = 5 and 4 + 5 = 9."},
    ]
    assert written["tools"][0]["function"]["name"] == "add"
    assert "tools" not in kept[1].to_json()
    assert stage.findings["fixups"]["joined_content_parts"] == 1


@pytest.mark.parametrize("turns, reason, field", [
    ([("user", "q", None), ("tool", "5", None), ("assistant", "a", None)], "roles_out_of_order", "messages[1].role"),
    ([("user", "q", "call"), ("assistant", "a", None)], "malformed_tool_call", "messages[0].tool_calls"),
    ([("user", "q", None), ("assistant", None, "call"), ("user", "again", None), ("assistant", "a", None)],
     "roles_out_of_order", "messages[2].role"),
    ([("user", "q", None), ("assistant", None, "call")], "last_turn_not_assistant", "messages"),
    ([("user", "q", None), ("assistant", None, "call"), ("tool", "5", None)], "last_turn_not_assistant", "messages"),
])
def test_tool_turns_must_answer_a_tool_call(tmp_path, turns, reason, field):
    """assistant(tool_calls) -> tool (one or more) -> assistant is the only place a tool turn may stand."""
    call = [{"id": "c", "type": "function", "function": {"name": "add", "arguments": "{}"}}]
    row = {"messages": [{"role": r, "content": c, **({"tool_calls": call} if t else {})} for r, c, t in turns]}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(row) + "\n")
    kept, _, rejected, _ = validate(tmp_path, path)
    assert not kept and (rejected["t:0"]["reason"], rejected["t:0"]["field"]) == (reason, field)


def test_plain_text_rows_are_read_and_rejected_with_a_sentence_and_a_count(tmp_path):
    """`text` rows are detected (not "missing field"); training needs user/assistant turns, so they are rejected
    as plain_text_unsupported with a sentence saying why and what to do, and the card records format text."""
    kept, stage, rejected, record = validate(tmp_path, "text.jsonl")
    assert record.format == "text" and not kept
    assert {r["reason"] for r in rejected.values()} == {"plain_text_unsupported"}
    assert "not chat SFT data" in rejected["text:0"]["detail"]
    assert stage.findings["rejected_by_reason"] == {"plain_text_unsupported": 2}
    assert any(w.startswith("2 rows were rejected as plain_text_unsupported") for w in stage.findings["warnings"])


def test_json_lines_saved_as_json_are_read_as_json_lines(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        kept, _, rejected, record = validate(tmp_path, "lines_saved_as.json")
    assert [ex.messages[1].content for ex in kept] == ["Rome.", "Madrid.", "Lima."] and not rejected
    assert [ex.line for ex in kept] == [1, 2, 4]  # line numbers, as for any JSON Lines file
    assert "reading it as JSON Lines" in caplog.text


def test_two_pretty_printed_json_values_are_named_not_extra_data(tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps([{"prompt": "a", "completion": "b"}], indent=1) + "\n" + json.dumps([], indent=1))
    with pytest.raises(SourceError) as caught:
        read_source(SourceConfig(path=str(path)))
    assert "more than one JSON value" in str(caught.value) and "Extra data" not in str(caught.value)


def test_multimodal_rows_are_rejected_with_counts_by_kind(tmp_path, caplog):
    """An images column and image_url/input_audio parts each reject the row; a bare <image> token with no media in
    the row is only a review item (it may be text); an empty images list does not reject either (the column is
    then listed as ignored)."""
    with caplog.at_level(logging.WARNING):
        kept, stage, rejected, _ = validate(tmp_path, "multimodal.jsonl")
    assert [ex.messages[-1].content for ex in kept] == ["Three birds.", "4"]
    assert {i: (r["reason"], r["field"]) for i, r in rejected.items()} == {
        "multimodal:0": ("multimodal_unsupported", "images"),
        "multimodal:1": ("multimodal_unsupported", "messages[0].content[1]"),
        "multimodal:2": ("multimodal_unsupported", "messages[0].content[0]"),
    }
    assert "tunesmith trains on text only" in rejected["multimodal:1"]["detail"]
    assert stage.findings["multimodal"] == {"rows": 3, "by_kind": {"images column": 1, "image_url part": 1,
                                                                   "input_audio part": 1}}
    assert [(r["kind"], r["id"], r["field"]) for r in stage.findings["review"]] == [
        ("media_token", "multimodal:3", "messages[0].content")]
    assert stage.findings["ignored_columns"] == {"images": 1}  # the kept row's empty list; rejected rows' media not
    assert "3 rows hold images, audio or video" in caplog.text


def test_every_format_can_be_named_in_the_source_config():
    literal = set(typing.get_args(SourceConfig.model_fields["format"].annotation)) - {"auto"}
    assert literal == set(FORMATS)


def test_preference_rows_are_detected_before_sft_and_keep_both_answers(tmp_path):
    """A prompt/chosen/rejected row also has `prompt`; it must be read as preference, not prompt_completion."""
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}) + "\n")
    kept, stage, rejected, record = validate(tmp_path, path)
    assert record.format == "preference" and not rejected
    assert kept[0].messages == (Message("user", "Capital of France?"), Message("assistant", "Paris."))
    assert kept[0].rejected == (Message("assistant", "Lyon."),)
    assert stage.findings["ignored_columns"] == {}


def test_a_constant_instruction_is_warned_about_by_the_column_profile(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"instruction": "Answer the question.", "input": "",
                                        "output": str(2 * i)}) + "\n" for i in range(30)))
    _, stage, _, _ = validate(tmp_path, path)
    assert stage.findings["profile"]["rows"] == 30
    assert any("instruction is one value in all 30 rows" in w for w in stage.findings["warnings"])


@pytest.mark.parametrize("split_format", ["parquet", "jsonl"])
def test_the_split_files_keep_every_turn_tool_call_tool_list_and_kept_column(tmp_path, tiny_tokenizer_dir,
                                                                            split_format):
    """Through the real curate: what validate read is what the split files hold (nothing lost on the way), in
    Parquet shards (the default: tool calls, tools and meta as JSON text) and in JSONL."""
    from tunesmith.card_integrity import split_rows
    from tunesmith.curate.config import CurateConfig
    from tunesmith.curate.pipeline import run_curate

    config = CurateConfig.model_validate({
        "name": "formats", "output_dir": str(tmp_path / "out"), "tokenizer": str(tiny_tokenizer_dir),
        "sources": [{"path": str(FORMATS_DIR / "openai_tools.jsonl")}, {"path": str(FORMATS_DIR / "sharegpt_tools.json")},
                    {"path": str(FORMATS_DIR / "dolly.jsonl"), "keep_columns": ["category"]},
                    {"path": str(FORMATS_DIR / "alpaca_history.json")}],
        "stages": [{"stage": "validate"}, {"stage": "split", "ratios": {"train": 1.0}}],
        "gates": {"min_rows": 1}, "split_format": split_format,
    })
    result = run_curate(config)
    train = result.card.splits["train"]
    assert train.shown() == {"parquet": "train-00000-of-00001.parquet", "jsonl": "train.jsonl"}[split_format]
    rows = {r["id"]: r for r in split_rows(result.directory, train, "train")}
    assert len(rows) == 8
    tool_row = rows["openai_tools:0"]
    assert [m["role"] for m in tool_row["messages"]] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert [c["id"] for c in tool_row["messages"][2]["tool_calls"]] == ["call_1", "call_2"]
    assert tool_row["messages"][3]["tool_call_id"] == "call_1" and tool_row["tools"][0]["function"]["name"] == "add"
    assert rows["sharegpt_tools:0"]["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert rows["sharegpt_tools:0"]["tools"][0]["name"] == "get_weather"
    assert rows["dolly:0"]["meta"] == {"category": "closed_qa"}
    assert len(rows["alpaca_history:0"]["messages"]) == 7
