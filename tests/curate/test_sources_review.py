"""Reading sources, the cases a hostile review found: a JSON array saved as .jsonl, two renames onto one column,
a rename of a column no row has, TSV files, and error messages that name every format and say what to do.

Run: .venv/bin/python -m pytest -q tests/curate/test_sources_review.py
"""

import json
import logging

import pytest

from tunesmith.config import ConfigError, validate_config
from tunesmith.curate.sources import FORMAT_KEYS, SourceConfig, SourceError, read_source

ROWS = [{"prompt": "What is two and two?", "completion": "Four."},
        {"prompt": "Name a primary colour.", "completion": "Red."}]


def test_a_pretty_printed_json_array_saved_as_jsonl_is_read_as_json(tmp_path, caplog):
    """`[{...},{...}]` spread over lines in a .jsonl file gives its 2 rows, not 8 malformed lines, and says so."""
    path = tmp_path / "array.jsonl"
    path.write_text(json.dumps(ROWS, indent=2))
    with caplog.at_level(logging.INFO):
        examples, record = read_source(SourceConfig(path=str(path)))
    assert [ex.fields for ex in examples] == ROWS
    assert all(ex.problem is None for ex in examples) and record.rows == 2 and record.format == "prompt_completion"
    assert "holds one JSON array of rows; reading it as JSON" in caplog.text


def test_jsonl_whose_first_line_is_an_array_is_still_read_line_by_line(tmp_path):
    """Only a file that is one JSON array as a whole switches reader: a stray array row stays a named bad row."""
    path = tmp_path / "rows.jsonl"
    path.write_text('["prompt", "completion"]\n' + json.dumps(ROWS[0]) + "\n")
    examples, _ = read_source(SourceConfig(path=str(path)))
    assert [ex.problem for ex in examples] == ["not_an_object", None]
    assert examples[0].line == 1


def test_two_renames_onto_one_name_are_refused_when_the_config_is_read():
    """{question: prompt, answer: prompt} would let `answer` silently overwrite `question`: one line, no run."""
    with pytest.raises(ConfigError) as caught:
        validate_config(SourceConfig, {"path": "x.jsonl", "columns": {"question": "prompt", "answer": "prompt"}},
                        "c.yaml")
    assert "renames 'question' and 'answer' both to 'prompt'" in str(caught.value)


def test_a_rename_of_a_column_no_row_has_is_warned_and_recorded(tmp_path, caplog):
    """`columns: {nothere: prompt}` does nothing; the log and the source record both say which rename and why."""
    path = tmp_path / "pc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with caplog.at_level(logging.WARNING):
        examples, record = read_source(SourceConfig(path=str(path), columns={"nothere": "prompt"}))
    assert len(examples) == 2 and record.format == "prompt_completion"
    assert len(record.warnings) == 1
    assert "renames 'nothere' to 'prompt', but no row has a 'nothere' column" in record.warnings[0]
    assert record.warnings[0] in caplog.text


def test_a_used_rename_gives_no_warning(tmp_path):
    """A rename that some row can use is not reported, even if other rows lack the column."""
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "Q?", "completion": "A."}) + "\n" + json.dumps(ROWS[0]) + "\n")
    _, record = read_source(SourceConfig(path=str(path), columns={"question": "prompt"}))
    assert record.warnings == []


def test_tsv_files_are_read_with_tabs_between_cells(tmp_path):
    """A .tsv file is read (quotes as in CSV), instead of being refused with advice audit cannot follow."""
    path = tmp_path / "pc.tsv"
    path.write_text('prompt\tcompletion\nWhat is two and two?\tFour.\n"Say ""hi""\tplease"\tHi.\n')
    examples, record = read_source(SourceConfig(path=str(path)))
    assert record.format == "prompt_completion"
    assert [ex.fields for ex in examples] == [ROWS[0],
                                              {"prompt": 'Say "hi"\tplease', "completion": "Hi."}]


def test_a_csv_file_with_tabs_is_pointed_to_tsv(tmp_path):
    """A tab-separated file named .csv: the message says it was read as comma-separated and how to fix it."""
    path = tmp_path / "pc.csv"
    path.write_text("prompt\tcompletion\nQ\tA\n")
    with pytest.raises(SourceError, match=r"one column; a \.csv file is read with ',' between columns; .* \.tsv"):
        read_source(SourceConfig(path=str(path)))


def test_an_unknown_extension_lists_what_is_read_and_a_fix_audit_can_follow(tmp_path):
    """The message names every extension read and says to save or rename the file (audit has no --type)."""
    path = tmp_path / "rows.txt"
    path.write_text(json.dumps(ROWS[0]) + "\n")
    with pytest.raises(SourceError) as caught:
        read_source(SourceConfig(path=str(path)))
    text = str(caught.value)
    assert "cannot tell the file type from '.txt'" in text and "save or rename the file" in text
    assert all(ext in text for ext in (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet"))


def test_the_format_detection_error_lists_every_formats_keys(tmp_path):
    """Every identifying key set of FORMAT_KEYS is named, the preference ones included, with its format."""
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "Q?", "answer": "A."}) + "\n")
    with pytest.raises(SourceError) as caught:
        read_source(SourceConfig(path=str(path)))
    text = str(caught.value)
    assert "chosen+conversations+rejected (preference_sharegpt)" in text
    assert "chosen+rejected (preference)" in text and "completion+label+prompt (kto)" in text
    for fmt, keys in FORMAT_KEYS:
        assert f"{'+'.join(sorted(keys))} ({fmt})" in text
    assert "--columns" in text and "--format" in text
