"""Tests for reading sources and the `validate` stage: load-time problems with file and line, per-row checks
with reason and field, placeholder fix-ups, format detection (JSONL, JSON, CSV, Parquet, column mapping) and
the errors that stop a run (on_error=fail, broken JSON files, missing files, unknown columns).

Run: pytest tests/curate/test_sources_validate.py -q
"""

import json

import pytest

from tunesmith.curate.record import Message
from tunesmith.curate.sources import SourceConfig, SourceError, read_source
from tunesmith.curate.stage import DataError, StageContext
from tunesmith.curate.validate import Validate


def write_jsonl(path, rows) -> str:
    """Write rows (dicts are dumped, str/bytes written as-is) one per line; return the path as a string."""
    data = b""
    for row in rows:
        if isinstance(row, bytes):
            data += row
        elif isinstance(row, str):
            data += row.encode("utf-8")
        else:
            data += json.dumps(row).encode("utf-8")
        data += b"\n"
    path.write_bytes(data)
    return str(path)


def validate(tmp_path, path, source_options=None, **config):
    """read_source + Validate; return the survivors, the stage record and the rejected rows by id."""
    examples, _ = read_source(SourceConfig(path=str(path), **(source_options or {})))
    kept, record = Validate(Validate.Config(**config)).run(examples, StageContext("validate", tmp_path / "rejected"))
    assert record.rows_in == record.rows_out + record.rows_rejected
    rejected_file = tmp_path / "rejected" / "validate.jsonl"
    rejected = {}
    if rejected_file.exists():
        for line in rejected_file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            rejected[row["id"]] = row
    return kept, record, rejected


def pc(prompt, completion):
    return {"prompt": prompt, "completion": completion}


def chat(*turns):
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


# --- load-time problems in JSONL ------------------------------------------------------------------------------


def test_jsonl_load_problems_are_rejected_with_line_numbers(tmp_path):
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            pc("one", "1"),
            pc("two", "2"),
            '{"prompt": "three", "completion": ',  # line 3: malformed
            b'{"prompt": "caf\xe9", "completion": "x"}',  # line 4: latin-1 byte
            '["prompt", "completion"]',  # line 5: an array
            '"just a string"',  # line 6: a string
            pc("seven", "7"),
        ],
    )
    kept, record, rejected = validate(tmp_path, path)

    assert [ex.id for ex in kept] == ["data:0", "data:1", "data:6"]
    assert [ex.line for ex in kept] == [1, 2, 7]
    assert record.findings["rejected_by_reason"] == {"invalid_utf8": 1, "malformed_json": 1, "not_an_object": 2}
    assert (record.rows_in, record.rows_out, record.rows_rejected) == (7, 3, 4)
    assert record.rejected_file == "rejected/validate.jsonl"

    malformed = rejected["data:2"]
    assert malformed["reason"] == "malformed_json"
    assert malformed["where"].endswith("data.jsonl:3")
    assert malformed["line"] == 3
    assert malformed["raw"].startswith('{"prompt": "three"')
    assert "column" in malformed["detail"]

    bad_bytes = rejected["data:3"]
    assert bad_bytes["reason"] == "invalid_utf8"
    assert bad_bytes["where"].endswith(":4")
    assert "0xe9" in bad_bytes["detail"]

    assert rejected["data:4"]["reason"] == "not_an_object"
    assert "list" in rejected["data:4"]["detail"]
    assert rejected["data:5"]["reason"] == "not_an_object"
    assert "str" in rejected["data:5"]["detail"]


def test_bom_is_accepted_and_blank_lines_keep_line_numbers(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(pc("first", "a")).encode() + b"\n"
        b"\n"
        b"   \n" + json.dumps(pc("second", "b")).encode() + b"\n"
        b'{"prompt": broken\n'
        b"\n"
    )
    kept, record, rejected = validate(tmp_path, path)

    assert [(ex.id, ex.line) for ex in kept] == [("bom:0", 1), ("bom:1", 4)]
    assert kept[0].messages == (Message("user", "first"), Message("assistant", "a"))
    assert record.findings["rejected_by_reason"] == {"malformed_json": 1}
    assert rejected["bom:2"]["where"].endswith("bom.jsonl:5")


# --- per-row checks ---------------------------------------------------------------------------------------------

ROW_CASES = [
    # (row, reason, field)
    ({"completion": "hi"}, "missing_field", "prompt"),
    ({"prompt": "hi", "completion": 3}, "wrong_type", "completion"),
    (chat(("user", "hi"), ("assistant", "  \n\t ")), "empty_turn", "messages[1].content"),
    (chat(("system", "be kind"), ("user", "hi")), "no_assistant_turn", "messages"),
    (chat(("user", "hi"), ("user", "again"), ("assistant", "ok")), "roles_out_of_order", "messages[1].role"),
    (chat(("assistant", "hello"), ("user", "hi"), ("assistant", "ok")), "roles_out_of_order", "messages[0].role"),
    (
        chat(("user", "hi"), ("assistant", "ok"), ("system", "late"), ("user", "x"), ("assistant", "y")),
        "system_not_first",
        "messages[2].role",
    ),
    (chat(("user", "hi"), ("asistant", "ok")), "unknown_role", "messages[1].role"),
    (chat(("user", "bell \x07 here"), ("assistant", "ok")), "control_characters", "messages[0].content"),
    (chat(("user", "hi"), ("assistant", "ok"), ("user", "and?")), "last_turn_not_assistant", "messages"),
]


@pytest.mark.parametrize(
    ("row", "reason", "field"), ROW_CASES, ids=[f"{i}-{case[1]}" for i, case in enumerate(ROW_CASES)]
)
def test_row_check(tmp_path, row, reason, field):
    good = chat(("user", "fine"), ("assistant", "yes")) if "messages" in row else pc("fine", "yes")
    path = write_jsonl(tmp_path / "rows.jsonl", [good, row, good])
    kept, record, rejected = validate(tmp_path, path)

    assert [ex.id for ex in kept] == ["rows:0", "rows:2"]
    assert record.findings["rejected_by_reason"] == {reason: 1}
    bad = rejected["rows:1"]
    assert bad["reason"] == reason
    assert bad["field"] == field
    assert bad["where"].endswith("rows.jsonl:2")


def test_missing_and_wrong_type_name_the_field(tmp_path):
    path = write_jsonl(
        tmp_path / "alp.jsonl",
        [
            {"instruction": "do it", "output": "done"},
            {"instruction": "do it"},
            {"instruction": "do it", "output": 42},
            {"instruction": ["a"], "output": "x"},
        ],
    )
    kept, record, rejected = validate(tmp_path, path, source_options={"format": "alpaca"})
    assert [ex.id for ex in kept] == ["alp:0"]
    assert record.findings["rejected_by_reason"] == {"missing_field": 1, "wrong_type": 2}
    assert rejected["alp:1"]["detail"] == "field 'output' is missing"
    assert rejected["alp:2"]["detail"] == "field 'output' is int, expected a string"
    assert rejected["alp:3"]["field"] == "instruction"
    assert "list" in rejected["alp:3"]["detail"]


def test_unknown_role_suggests_the_closest(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [chat(("user", "hi"), ("asistant", "ok"))])
    _, _, rejected = validate(tmp_path, path)
    assert "did you mean 'assistant'" in rejected["r:0"]["detail"]


def test_lone_surrogate_is_invalid_utf8_and_the_rejected_file_stays_utf8(tmp_path):
    path = tmp_path / "sur.jsonl"
    path.write_text(
        '{"prompt": "broken \\ud800 text", "completion": "ok"}\n{"prompt": "fine", "completion": "ok"}\n',
        encoding="utf-8",
    )
    kept, record, rejected = validate(tmp_path, path)
    assert [ex.id for ex in kept] == ["sur:1"]
    assert record.findings["rejected_by_reason"] == {"invalid_utf8": 1}
    assert rejected["sur:0"]["field"] == "prompt"  # the input's field, not the converted turn
    assert "surrogate" in rejected["sur:0"]["detail"]
    # the bad text is shown with U+FFFD so the rejected file and the card can be written as UTF-8
    assert rejected["sur:0"]["fields"]["prompt"] == "broken \ufffd text"
    json.dumps(record.findings["rejected_samples"]).encode("utf-8")


def test_too_long_uses_max_chars(tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [pc("short", "ok"), pc("x" * 30, "y" * 30)])
    kept, record, rejected = validate(tmp_path, path, max_chars=50)
    assert [ex.id for ex in kept] == ["long:0"]
    assert record.findings["rejected_by_reason"] == {"too_long": 1}
    assert rejected["long:1"]["detail"] == "60 characters (max_chars=50)"


def test_whitespace_is_stripped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "ws.jsonl", [pc("  hello  ", "world\n"), pc("a", "b")])
    kept, record, _ = validate(tmp_path, path)
    assert kept[0].messages == (Message("user", "hello"), Message("assistant", "world"))
    assert record.findings["fixups"] == {"stripped_whitespace": 1}


# --- alpaca placeholder inputs ------------------------------------------------------------------------------------


def test_placeholder_input_is_dropped_by_default(tmp_path):
    path = write_jsonl(
        tmp_path / "ph.jsonl",
        [
            {"instruction": "Name a colour.", "input": "<noinput>", "output": "Red."},
            {"instruction": "Add them.", "input": "2 and 3", "output": "5"},
        ],
    )
    kept, record, _ = validate(tmp_path, path)
    assert record.rows_rejected == 0
    assert record.findings["fixups"]["dropped_placeholder_input"] == 1
    assert kept[0].messages == (Message("user", "Name a colour."), Message("assistant", "Red."))
    assert kept[1].messages[0] == Message("user", "Add them.\n\n2 and 3")


def test_placeholder_input_rejected_on_request(tmp_path):
    path = write_jsonl(
        tmp_path / "ph.jsonl",
        [
            {"instruction": "Name a colour.", "input": "<noinput>", "output": "Red."},
            {"instruction": "Add them.", "input": "2 and 3", "output": "5"},
        ],
    )
    kept, record, rejected = validate(tmp_path, path, placeholder_action="reject")
    assert [ex.id for ex in kept] == ["ph:1"]
    assert record.findings["rejected_by_reason"] == {"placeholder_input": 1}
    assert rejected["ph:0"]["field"] == "input"


# --- formats ------------------------------------------------------------------------------------------------------

EXPECTED = (
    Message("system", "Be brief."),
    Message("user", "Translate to French.\n\nHello"),
    Message("assistant", "Bonjour"),
)
PLAIN = (Message("user", "What is 2+2?"), Message("assistant", "4"))


def test_formats_are_detected_and_normalised_to_the_same_messages(tmp_path):
    alpaca = {"system": "Be brief.", "instruction": "Translate to French.", "input": "Hello", "output": "Bonjour"}
    prompt_completion = {"system": "Be brief.", "prompt": "Translate to French.\n\nHello", "completion": "Bonjour"}
    messages = chat(("system", "Be brief."), ("user", "Translate to French.\n\nHello"), ("assistant", "Bonjour"))
    sharegpt = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Translate to French.\n\nHello"},
            {"from": "gpt", "value": "Bonjour"},
        ]
    }
    expected_format = {
        "alpaca": alpaca,
        "prompt_completion": prompt_completion,
        "messages": messages,
        "sharegpt": sharegpt,
    }
    for fmt, row in expected_format.items():
        path = write_jsonl(tmp_path / f"{fmt}.jsonl", [row])
        examples, source = read_source(SourceConfig(path=path))
        assert source.format == fmt
        assert source.rows == 1
        assert len(source.sha256) == 64
        kept, record = Validate().run(examples, StageContext("validate", tmp_path / fmt))
        assert [ex.messages for ex in kept] == [EXPECTED], fmt
        assert kept[0].fields is None
        assert record.findings["formats"] == {f"{path} ({fmt})": 1}


def test_json_array_file(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text(json.dumps([pc("What is 2+2?", "4"), "not a row", pc("Hi", "Hello")]), encoding="utf-8")
    kept, record, rejected = validate(tmp_path, path)
    assert [ex.id for ex in kept] == ["arr:0", "arr:2"]
    assert kept[0].messages == PLAIN
    assert kept[0].line is None
    assert rejected["arr:1"]["reason"] == "not_an_object"
    assert rejected["arr:1"]["where"].endswith("arr.json row 1")


def test_json_object_holding_one_array(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 2, "data": [pc("What is 2+2?", "4")]}), encoding="utf-8")
    kept, _, _ = validate(tmp_path, path)
    assert [ex.messages for ex in kept] == [PLAIN]


def test_csv_alpaca_columns_and_line_numbers(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text(
        "instruction,input,output\n"  # line 1
        "What is 2+2?,,4\n"  # line 2
        '"Translate to French.",Hello,"Bonjour"\n'  # line 3
        "\n"  # line 4: blank
        '"Write two lines.",,"line one\nline two"\n'  # lines 5-6
        "Too,few\n"  # line 7
        "Say hi,<noinput>,hi\n",  # line 8
        encoding="utf-8",
    )
    kept, record, rejected = validate(tmp_path, path)
    assert [(ex.id, ex.line) for ex in kept] == [("table:0", 2), ("table:1", 3), ("table:2", 5), ("table:4", 8)]
    assert kept[0].messages == PLAIN
    assert kept[1].messages == EXPECTED[1:]
    assert kept[2].messages[1] == Message("assistant", "line one\nline two")
    assert kept[3].messages[0] == Message("user", "Say hi")
    assert record.findings["rejected_by_reason"] == {"malformed_csv": 1}
    assert rejected["table:3"]["where"].endswith("table.csv:7")
    assert record.findings["formats"] == {f"{path} (alpaca)": 5}


def test_parquet_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "rows.parquet"
    table = pa.table(
        {
            "messages": [
                [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
                [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            ],
            "topic": ["math", "chat"],
        }
    )
    pq.write_table(table, path)
    examples, source = read_source(SourceConfig(path=str(path), keep_columns=["topic"]))
    assert source.format == "messages"
    kept, record = Validate().run(examples, StageContext("validate", tmp_path / "rejected"))
    assert record.rows_out == 2
    assert kept[0].messages == PLAIN
    assert [ex.meta for ex in kept] == [{"topic": "math"}, {"topic": "chat"}]
    assert kept[1].where.endswith("rows.parquet row 1")


def test_columns_mapping(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "What is 2+2?", "answer": "4"}])
    examples, source = read_source(SourceConfig(path=path, columns={"question": "prompt", "answer": "completion"}))
    assert source.format == "prompt_completion"
    kept, _ = Validate().run(examples, StageContext("validate", tmp_path / "rejected"))
    assert [ex.messages for ex in kept] == [PLAIN]


# --- errors that stop the run --------------------------------------------------------------------------------------


def test_on_error_fail_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "strict.jsonl", [pc("ok", "ok"), pc("ok", "ok"), {"completion": "no question"}])
    examples, _ = read_source(SourceConfig(path=path))
    stage = Validate(Validate.Config(on_error="fail"))
    with pytest.raises(DataError) as info:
        stage.run(examples, StageContext("validate", tmp_path / "rejected"))
    message = str(info.value)
    assert "strict.jsonl:3" in message
    assert "field prompt" in message
    assert not (tmp_path / "rejected" / "validate.jsonl").exists()


def test_broken_json_file_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "c" "completion": "d"}\n]\n')
    with pytest.raises(SourceError, match=r"broken\.json: malformed JSON at line 3, column 18"):
        read_source(SourceConfig(path=str(path)))


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        read_source(SourceConfig(path=str(tmp_path / "nope.jsonl")))


def test_unknown_columns(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"q": "a", "a": "b"}])
    with pytest.raises(SourceError, match="`format:`") as info:
        read_source(SourceConfig(path=path))
    assert "['a', 'q']" in str(info.value)


def test_hub_dataset_id_offline_gives_a_clear_error():
    """A hub id is read with `datasets.load_dataset`; offline (as in these tests) it fails with its name."""
    with pytest.raises(SourceError, match=r"tunesmith-test/no-such-dataset: cannot load the hub dataset"):
        read_source(SourceConfig(path="tunesmith-test/no-such-dataset"))
