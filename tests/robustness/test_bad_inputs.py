"""Curation on bad inputs: it never crashes, never loses a row silently, and says clearly what is wrong.

Each file of tests/fixtures/bad/ (its README's tables are the specification) runs through the real pipeline:
rejected rows must land in rejected/<stage>.jsonl with reason, line/row and field; unreadable files, bad
configs and bad cards must stop `tunesmith` with exit code 2 and a message naming the file, never a traceback.
Big inputs (a 10 MB row, a 100,000-turn conversation, 100,000-deep nesting) are generated in tmp_path.

Run: .venv/bin/python -m pytest -q tests/robustness/test_bad_inputs.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.artifacts import open_card
from tunesmith.cli import main

from .corpus import BAD, ROOT, assert_no_row_lost, curate, fragments, read_tables, rejected_rows, where

TABLES = read_tables()
REJECTS = TABLES["Rejected rows"]
REJECT_FILES = sorted({row["file"] for row in REJECTS})
ACCEPTED = {row["file"]: int(row["rows"]) for row in TABLES["Accepted"]}
ERRORS = {row["file"]: row["the message says"] for row in TABLES["Clear errors"]}
CONFIGS = {row["file"]: row["the message says"] for row in TABLES["Bad configs"]}
CARDS = {row["folder"]: row["the message says"] for row in TABLES["Bad cards"]}
# problems found here that are not fixed yet (each case is then an expected failure until it is)
KNOWN_GAPS: dict[str, str] = {}


def run_cli(argv: list[str], capsys, monkeypatch) -> tuple[int, list[str]]:
    """Run `tunesmith` in-process with a wide console (no wrapping); return the code and the non-blank lines."""
    monkeypatch.setenv("COLUMNS", "2000")
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, [line.rstrip() for line in (out + err).splitlines() if line.strip()]


def test_the_tables_cover_every_file():
    data = {p.name for p in BAD.iterdir() if p.is_file()} - {"README.md", "make_parquet.py"}
    assert data == set(REJECT_FILES) | set(ACCEPTED) | set(ERRORS)
    assert {p.name for p in (BAD / "configs").iterdir()} == set(CONFIGS)
    assert {p.name for p in (BAD / "cards").iterdir()} == set(CARDS)
    assert len(data) + len(CONFIGS) + len(CARDS) >= 40


@pytest.mark.parametrize("name", REJECT_FILES)
def test_bad_rows_are_rejected_with_reason_place_and_field(tmp_path, name):
    path = BAD / name
    result = curate(tmp_path, path)
    kept, rejected = assert_no_row_lost(result.directory)
    expected = sorted((r["stage"], r["reason"], where(path, r["at"]), r["field"]) for r in REJECTS if r["file"] == name)
    got = sorted((r["stage"], r["reason"], r["where"], r.get("field", "")) for r in rejected)
    assert got == expected
    read = result.card.sources[0].rows
    assert len(kept) == read - len(expected)  # every other row of the file is a good one
    for row in rejected:  # the rejected file keeps what was read, so a person can fix the row
        assert row.get("fields") is not None or row.get("raw") is not None or row["messages"]


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_unusual_but_valid_files_keep_every_row(tmp_path, name):
    result = curate(tmp_path, BAD / name)
    kept, rejected = assert_no_row_lost(result.directory)
    assert (len(kept), rejected) == (ACCEPTED[name], [])
    assert all(not m["content"].startswith("\ufeff") for row in kept for m in row["messages"])


def _error_case(name: str, known: dict[str, str]):
    marks = [pytest.mark.xfail(reason=known[name], strict=True)] if name in known else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_unreadable_files_stop_with_one_clear_line(tmp_path, name, capsys, monkeypatch):
    config = tmp_path / "curate.yaml"
    config.write_text(json.dumps({"name": "bad", "output_dir": str(tmp_path / "out"),
                                  "sources": [{"path": str(BAD / name)}], "stages": [{"stage": "validate"}]}))
    code, lines = run_cli(["curate", str(config)], capsys, monkeypatch)
    assert code == 2
    assert len(lines) == 1 and "ERROR" in lines[0], lines
    assert f"{BAD / name}" in lines[0]
    for piece in fragments(ERRORS[name]):
        assert piece in lines[0]
    assert not list((tmp_path / "out").glob("*/*/card.json"))


@pytest.mark.parametrize("name", [_error_case(n, KNOWN_GAPS) for n in sorted(CONFIGS)])
def test_bad_configs_name_the_file_and_the_key(tmp_path, name, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs name their sources relative to the repository root
    path = Path("tests/fixtures/bad/configs") / name
    code, lines = run_cli(["curate", str(path), f"output_dir={tmp_path}"], capsys, monkeypatch)
    assert code == 2
    assert lines[0].split("ERROR", 1)[-1].strip().startswith("tests/fixtures/bad/"), lines[0]  # the file first
    message = "\n".join(lines)
    for piece in fragments(CONFIGS[name]):
        assert piece in message


def test_a_folder_given_as_the_config_is_a_clear_error(tmp_path, capsys, monkeypatch):
    """`tunesmith curate some/dir/` is an easy slip; it must not end in a traceback."""
    code, lines = run_cli(["curate", str(tmp_path)], capsys, monkeypatch)
    assert code == 2 and str(tmp_path) in lines[0]


@pytest.mark.parametrize(("override", "says"), [
    ("stages.validate.max_chars=many", "max_chars"),
    ("stages.nosuch.threshold=0.5", "no single list entry named 'nosuch'"),
    ("sources.3.path=x.jsonl", "index 3 is out of range"),
    ("gates", "is not of the form key=value"),
])
def test_bad_overrides_name_the_override(tmp_path, override, says, capsys, monkeypatch):
    config = tmp_path / "curate.yaml"
    config.write_text(json.dumps({"name": "bad", "sources": [{"path": str(BAD / "bom.jsonl")}]}))
    code, lines = run_cli(["curate", str(config), override], capsys, monkeypatch)
    assert code == 2 and says in "\n".join(lines)


@pytest.mark.parametrize("folder", sorted(CARDS))
def test_bad_cards_are_refused_naming_the_file(folder, capsys, monkeypatch):
    card = BAD / "cards" / folder
    code, lines = run_cli(["card", "validate", str(card)], capsys, monkeypatch)
    assert code == 2
    message = "\n".join(lines)
    for piece in fragments(CARDS[folder]):
        assert piece in message
    with pytest.raises((ValueError, FileNotFoundError)) as info:  # CardError and schema errors are ValueErrors
        open_card(card)
    for piece in fragments(CARDS[folder]):
        assert piece in str(info.value)


@pytest.mark.parametrize("name", ["misspelt_role.jsonl", "sharegpt_bad.jsonl", "alpaca_bad.jsonl",
                                  "rows_not_objects.json", "stray_quote.csv", "nulls.parquet"])
def test_on_error_fail_stops_at_the_first_bad_row_naming_file_place_and_field(tmp_path, name, capsys, monkeypatch):
    first = next(r for r in REJECTS if r["file"] == name)
    config = tmp_path / "curate.yaml"
    config.write_text(json.dumps({"name": "bad", "output_dir": str(tmp_path / "out"),
                                  "sources": [{"path": str(BAD / name)}],
                                  "stages": [{"stage": "validate", "on_error": "fail"}]}))
    code, lines = run_cli(["curate", str(config)], capsys, monkeypatch)
    assert code == 2 and "ERROR" in lines[-1] and not any("ERROR" in line for line in lines[:-1])  # one line, last
    assert f"{where(BAD / name, first['at'])}: " in lines[-1]
    assert (f"field {first['field']}: " if first["field"] else "") in lines[-1]


def test_all_files_at_once_through_every_stage_and_the_cli(tmp_path, tiny_tokenizer_dir, capsys, monkeypatch):
    """Every readable bad file as one source each, all stages (token_stats on the tiny tokenizer), the HTML report."""
    files = [BAD / name for name in [*REJECT_FILES, *sorted(ACCEPTED)]]
    config = {
        "name": "all-bad", "output_dir": str(tmp_path / "out"), "tokenizer": str(tiny_tokenizer_dir),
        "sources": [{"path": str(p), "name": p.name.replace(".", "_")} for p in files],
        "stages": [{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "near_dedup"}, {"stage": "pii"},
                   {"stage": "bias_audit"}, {"stage": "token_stats", "max_seq_len": 64},
                   {"stage": "split", "ratios": {"train": 0.8, "test": 0.2}}, {"stage": "contamination"}],
        "gates": {"min_rows": 1, "max_rejected_rate": None},  # 95% of this corpus is bad on purpose
    }
    (tmp_path / "curate.yaml").write_text(json.dumps(config))
    code, lines = run_cli(["curate", str(tmp_path / "curate.yaml")], capsys, monkeypatch)
    assert code == 0, lines
    version = tmp_path / "out" / "all-bad" / "v1"
    assert (version / "report.html").is_file()
    _, rejected = assert_no_row_lost(version)
    by_validate = sorted((r["reason"], r["where"]) for r in rejected if r["stage"] == "validate")
    assert by_validate == sorted((r["reason"], where(BAD / r["file"], r["at"])) for r in REJECTS
                                 if r["stage"] == "validate")


# --- big inputs, made at run time ------------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
GOOD = {"prompt": "What is the capital of France?", "completion": "Paris is the capital of France."}


def _turns(n: int, role: str, text: str, user: str, assistant: str) -> list[dict]:
    return [{role: user if i % 2 == 0 else assistant, text: f"turn {i}"} for i in range(n)]


def _big_file(tmp_path: Path, kind: str) -> Path:
    big = {"prompt": "Summarise this.", "completion": "word " * (TEN_MB // 5)}
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([GOOD, big]), tmp_path / "big.parquet")
        return tmp_path / "big.parquet"
    if kind == "csv":
        text = f"prompt,completion\n{GOOD['prompt']},{GOOD['completion']}\n{big['prompt']},{big['completion']}\n"
        (tmp_path / "big.csv").write_text(text, encoding="utf-8")
        return tmp_path / "big.csv"
    if kind == "json":
        (tmp_path / "big.json").write_text(json.dumps([GOOD, big]), encoding="utf-8")
        return tmp_path / "big.json"
    rows = {
        "jsonl": big,
        "turns": {"messages": _turns(100_000, "role", "content", "user", "assistant")},
        "sharegpt_turns": {"conversations": _turns(100_000, "from", "value", "human", "gpt")},
    }
    path = tmp_path / f"big_{kind}.jsonl"
    if kind == "deep":
        path.write_text(json.dumps(GOOD) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
        return path
    first = {"jsonl": GOOD, "turns": {"messages": _turns(2, "role", "content", "user", "assistant")},
             "sharegpt_turns": {"conversations": _turns(2, "from", "value", "human", "gpt")}}[kind]
    path.write_text(json.dumps(first) + "\n" + json.dumps(rows[kind]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("kind", "reason", "at"), [
    ("jsonl", "too_long", ":2"), ("json", "too_long", "row 1"), ("csv", "too_long", ":3"),
    ("parquet", "too_long", "row 1"), ("turns", "too_many_turns", ":2"), ("sharegpt_turns", "too_many_turns", ":2"),
    ("deep", "malformed_json", ":2"),
])
def test_big_inputs_are_rejected_not_fatal(tmp_path, kind, reason, at):
    path = _big_file(tmp_path, kind)
    result = curate(tmp_path, path)
    kept, rejected = assert_no_row_lost(result.directory)
    assert len(kept) == 1
    assert [(r["reason"], r["where"]) for r in rejected] == [(reason, where(path, at))]
    card_sample = result.card.stage("validate").findings["rejected_samples"][0]
    assert len(json.dumps(card_sample)) < 100_000  # the card shows a clipped row; rejected/ keeps it whole
    assert rejected_rows(result.directory)[0]["where"].startswith(str(path))
