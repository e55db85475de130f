"""Hostile artifacts still get the one-line contract: JSON nested deeper than Python's parser can go, forged but
self-consistent cards (hashes and fingerprint recomputed) whose split rows `train` cannot read, and source file
names that are not UTF-8 all end with exit 2 and a message naming the file (line) and field, never a traceback.

Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/robustness/test_hostile_artifacts.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.reports.test_run_report import make_run
from tests.train.runs import config_for
from tunesmith import card_integrity
from tunesmith.artifact_io import ArtifactError, load_json
from tunesmith.artifacts import CardError, SplitRecord, card_fingerprint, open_card, read_card
from tunesmith.cli import main
from tunesmith.curate import record
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.reports.run_data import load_run
from tunesmith.train.trainer import train

FIXTURE = Path(__file__).parents[1] / "fixtures" / "sft_tiny.jsonl"
EVAL_CONFIG = Path(__file__).parents[2] / "configs" / "eval" / "default.yaml"
DEEP = "[" * 200_000 + "]" * 200_000  # far past the recursion limit of json.loads
BAD_NAME = os.fsdecode(b"bad\xffname.jsonl")  # how Python sees a file name that is not UTF-8: 'bad\udcffname'


def run_cli(argv: list[str], capsys, monkeypatch) -> tuple[int, list[str]]:
    """`tunesmith -q ARGV` in-process on a wide console: the exit code and the non-blank lines printed."""
    monkeypatch.setenv("COLUMNS", "2000")
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "this is a bug" not in out + err, out + err
    return code, [line.strip() for line in (out + err).splitlines() if line.strip()]


def one_line(code: int, lines: list[str], *pieces: str) -> str:
    assert code == 2 and len(lines) == 1, (code, lines)
    for piece in pieces:
        assert piece in lines[0], (piece, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    """One curated version (train and test splits) in JSONL, since the forged rows are JSON lines (Parquet's fixed
    columns cannot hold most of them); tests copy it before forging it."""
    folder = tmp_path_factory.mktemp("curated")
    config = CurateConfig(name="tiny", output_dir=str(folder), sources=[{"path": str(FIXTURE)}],
                          stages=[{"stage": "validate"}, {"stage": "split", "ratios": {"train": 0.7, "test": 0.3}}],
                          report=False, split_format="jsonl")
    return run_curate(config).directory


def forge(curated: Path, tmp_path: Path, line: bytes) -> tuple[Path, Path]:
    """A copy of the version whose first train row is `line`, with the split hash and the card's fingerprint
    recomputed, so that nothing but the row itself is wrong; (the version folder, the forged split file)."""
    version = tmp_path / "forged"
    os.makedirs(version)
    for path in curated.rglob("*"):
        if path.is_file():
            (version / path.relative_to(curated)).parent.mkdir(parents=True, exist_ok=True)
            (version / path.relative_to(curated)).write_bytes(path.read_bytes())
    data = json.loads((version / "card.json").read_text(encoding="utf-8"))
    split = version / data["splits"]["train"]["file"]
    split.write_bytes(b"".join([line + b"\n", *split.read_bytes().splitlines(keepends=True)[1:]]))
    data["splits"]["train"]["sha256"] = hashlib.sha256(split.read_bytes()).hexdigest()
    splits = {name: SplitRecord(**record) for name, record in data["splits"].items()}
    data["fingerprint"] = card_fingerprint(data["config"], splits)
    (version / "card.json").write_text(json.dumps(data), encoding="utf-8")
    return version, split


def row_with(**changes) -> bytes:
    row = {"id": "tiny:0", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
           "source": "tiny", "row": 0}
    row.update(changes)
    return json.dumps({k: v for k, v in row.items() if v is not ...}).encode()


# ---- 1. nesting deeper than the parser's stack ----------------------------------------------------------------

def test_load_json_turns_deep_nesting_bad_utf8_and_bad_syntax_into_the_given_error(tmp_path):
    """The one helper: each failure is the caller's error class, naming file (and line), never RecursionError."""
    cases = [(DEEP, "nested too deeply"), (b'{"a": "\xff"}', "not valid UTF-8 (byte 7)"),
             ('{"a": }', "not valid JSON"), ('\ufeff{}'.encode("utf-16"), "not valid UTF-8")]
    for text, words in cases:
        with pytest.raises(CardError) as caught:
            load_json(text, tmp_path / "x.jsonl", 3, CardError, "curate it again")
        assert str(caught.value).startswith(f"{tmp_path / 'x.jsonl'}:3: ") and words in str(caught.value)
        assert str(caught.value).endswith("; curate it again")
    with pytest.raises(ArtifactError, match=r"card\.json: not valid JSON at line 2"):
        load_json("{\n,}", tmp_path / "card.json")


@pytest.mark.parametrize("action", ["validate", "show"])
@pytest.mark.parametrize("text", [DEEP, '{"name": ' + "[" * 500 + "]" * 500 + "}"], ids=["past-python", "past-200"])
def test_a_deeply_nested_card_is_one_line(tmp_path, capsys, monkeypatch, action, text):
    """Nesting past Python's stack (json.loads) or past pydantic's 200 levels: both one line naming card.json."""
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "card.json").write_text(text, encoding="utf-8")
    code, lines = run_cli(["card", action, str(tmp_path / "deep")], capsys, monkeypatch)
    one_line(code, lines, str(tmp_path / "deep" / "card.json"))
    assert "nested too deeply" in lines[0] or "recursion limit" in lines[0]


@pytest.mark.parametrize("command", ["report", "eval"])
def test_a_deeply_nested_run_json_is_one_line_for_report_and_eval(tmp_path, capsys, monkeypatch, command):
    run = make_run(tmp_path)
    (run / "run.json").write_text(DEEP, encoding="utf-8")
    argv = ["report", str(run)] if command == "report" else ["eval", str(EVAL_CONFIG), f"run={run}"]
    code, lines = run_cli(argv, capsys, monkeypatch)
    one_line(code, lines, f"{run / 'run.json'}: JSON nested too deeply")


def test_a_deeply_nested_samples_line_is_one_line_naming_file_and_line(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path)
    samples = run / "eval" / "samples.jsonl"
    lines = samples.read_text(encoding="utf-8").splitlines(keepends=True)
    samples.write_text("".join(lines[:1] + [DEEP + "\n"] + lines[2:]), encoding="utf-8")
    code, printed = run_cli(["report", str(run)], capsys, monkeypatch)
    one_line(code, printed, f"{samples}:2: JSON nested too deeply", "tunesmith eval")


def test_a_deeply_nested_or_non_utf8_metrics_line_is_left_out_and_said(tmp_path, capsys, monkeypatch):
    """metrics.jsonl may end cut by a crash, so bad lines are left out with a notice, never fatal or a crash."""
    run = make_run(tmp_path)
    (run / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 2.5}\n' + DEEP.encode() + b'\n{"step": "\xff"}\n')
    art = load_run(run)
    assert art.metrics == [{"step": 1, "loss": 2.5}]
    assert art.notices["training"].startswith("2 line(s) of metrics.jsonl")
    code, _ = run_cli(["report", str(run), "--out", str(tmp_path / "r.html")], capsys, monkeypatch)
    assert code == 0 and (tmp_path / "r.html").is_file()


def test_a_deeply_nested_split_row_in_a_self_consistent_card_is_refused(curated, tmp_path, capsys, monkeypatch):
    version, split = forge(curated, tmp_path, DEEP.encode())
    with pytest.raises(CardError, match="nested too deeply"):
        open_card(version)
    code, lines = run_cli(["card", "validate", str(version)], capsys, monkeypatch)
    one_line(code, lines, f"{split}:1: JSON nested too deeply")


@pytest.mark.parametrize("column", ["meta", "tools", "tool_calls"])
def test_a_deeply_nested_json_column_in_a_self_consistent_parquet_shard_is_refused(tmp_path, capsys, monkeypatch,
                                                                                  column):
    """Parquet shards (the default) keep meta, tools and tool calls as JSON text: nesting there is one line too."""
    from tunesmith.artifacts import ShardRecord
    from tunesmith.card_integrity import shards_sha256
    from tunesmith.split_files import iter_parquet_records, open_writer, write_table

    config = CurateConfig(name="tiny", output_dir=str(tmp_path / "out"), sources=[{"path": str(FIXTURE)}],
                          stages=[{"stage": "validate"}, {"stage": "split", "ratios": {"train": 1.0}}], report=False)
    version = run_curate(config).directory
    capsys.readouterr()  # curate's own log
    data = json.loads((version / "card.json").read_text(encoding="utf-8"))
    [shard] = data["splits"]["train"]["shards"]
    path = version / shard["file"]
    records = list(iter_parquet_records(path))
    if column == "tool_calls":
        records[0]["messages"][-1]["tool_calls"] = DEEP
    else:
        records[0][column] = DEEP
    path.unlink()
    writer = open_writer(path)
    write_table(writer, records)
    writer.close()
    shard["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    data["splits"]["train"]["sha256"] = shards_sha256([ShardRecord(**shard)])
    data["fingerprint"] = card_fingerprint(data["config"], {n: SplitRecord(**r) for n, r in data["splits"].items()})
    (version / "card.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CardError, match="nested too deeply"):
        open_card(version)
    code, lines = run_cli(["card", "validate", str(version)], capsys, monkeypatch)
    one_line(code, lines, f"{path} row 1: column {column}: JSON nested too deeply")


# ---- 2. forged split rows that hashes cannot catch -------------------------------------------------------------

FORGED_ROWS = {
    "id missing": (row_with(id=...), "field id: missing"),
    "id a number": (row_with(id=7), "field id: int, not a non-empty string"),
    "id empty": (row_with(id=""), "field id: '', not a non-empty string"),
    "messages empty": (row_with(messages=[]), "field messages: list, not a non-empty list"),
    "message a string": (row_with(messages=["hi"]), "field messages.0: str, not an object"),
    "role bogus": (row_with(messages=[{"role": "wizard", "content": "x"}]),
                   "field messages.0.role: 'wizard', not one of system, user, assistant"),
    "role missing": (row_with(messages=[{"content": "x"}]), "field messages.0.role: missing"),
    "content a list": (row_with(messages=[{"role": "user", "content": ["x"]}]),
                       "field messages.0.content: list, not a string"),
    "row a list": (b"[1, 2]", "a row must be a JSON object, not list"),
}


@pytest.mark.parametrize("case", FORGED_ROWS)
def test_a_forged_row_fails_card_validate_in_one_line_naming_file_line_and_field(curated, tmp_path, capsys,
                                                                                 monkeypatch, case):
    line, words = FORGED_ROWS[case]
    version, split = forge(curated, tmp_path, line)
    assert read_card(version).fingerprint == card_fingerprint(read_card(version).config, read_card(version).splits)
    code, lines = run_cli(["card", "validate", str(version)], capsys, monkeypatch)
    one_line(code, lines, f"{split}:1: {words}")
    with pytest.raises(CardError, match=f"{split.name}:1: "):
        open_card(version)


@pytest.mark.parametrize("case", ["id missing", "id a number", "role bogus", "content a list"])
def test_train_refuses_a_forged_row_with_card_error_before_loading_a_model(curated, tmp_path, case):
    """What crashed chat.encode_rows with KeyError/TypeError is now refused when the card is opened."""
    line, words = FORGED_ROWS[case]
    version, split = forge(curated, tmp_path, line)
    config = config_for(version, tmp_path / "no-model-needed", tmp_path)
    with pytest.raises(CardError) as caught:
        train(config)
    assert f"{split}:1: {words}" in str(caught.value)
    assert not (tmp_path / "runs").exists()  # refused before any run folder was claimed


def test_the_split_row_roles_are_the_roles_curation_writes():
    """card_integrity sits below curate/ and keeps its own copy of the roles; they must not drift apart."""
    assert card_integrity.ROLES == record.ROLES


def test_the_curated_rows_pass_the_row_check(curated):
    """The check refuses nothing curation writes (the fixture holds system, user and assistant turns)."""
    rows = open_card(curated).rows
    assert sum(len(r) for r in rows.values()) == sum(s.rows for s in read_card(curated).splits.values())


# ---- 3. source file names that are not UTF-8 -------------------------------------------------------------------

def test_audit_of_a_file_whose_name_is_not_utf8_is_one_line(tmp_path, capsys, monkeypatch):
    source = tmp_path / BAD_NAME
    source.write_bytes(FIXTURE.read_bytes())
    code, lines = run_cli(["audit", str(source), "--out", str(tmp_path / "audit")], capsys, monkeypatch)
    one_line(code, lines, "tunesmith audit: path:", r"bad\xffname.jsonl", "is not valid UTF-8; rename the file")
    assert not (tmp_path / "audit").exists()


def test_audit_with_a_bad_format_or_non_utf8_out_is_one_line_naming_the_option(tmp_path, capsys, monkeypatch):
    """Every argument audit turns into a config is named as the user typed it, not as a config field."""
    out = str(tmp_path / "audit")
    code, lines = run_cli(["audit", str(FIXTURE), "--format", "bogus", "--out", out], capsys, monkeypatch)
    one_line(code, lines, "tunesmith audit: --format:", "'sharegpt'")
    code, lines = run_cli(["audit", str(FIXTURE), "--out", str(tmp_path / BAD_NAME)], capsys, monkeypatch)
    one_line(code, lines, "tunesmith audit: --out:", "is not valid UTF-8")


def test_curate_with_a_source_path_or_name_that_is_not_utf8_names_the_field(tmp_path, capsys, monkeypatch):
    source = tmp_path / BAD_NAME
    source.write_bytes(FIXTURE.read_bytes())
    config = tmp_path / "curate.yaml"
    config.write_text(json.dumps({"name": "ds", "output_dir": str(tmp_path / "out"), "report": False,
                                  "sources": [{"path": str(FIXTURE)}], "stages": [{"stage": "validate"}]}))
    for override, words in [(f"sources.0.path={source}", "rename the file to a UTF-8 name"),
                            (f"sources.0.name={BAD_NAME}", "give a name in UTF-8 text")]:
        code, lines = run_cli(["curate", str(config), override], capsys, monkeypatch)
        field = override.split("=")[0]
        assert code == 2 and any(line.startswith(f"{field}:") and r"\xff" in line and words in line
                                 for line in lines), lines
    assert not (tmp_path / "out").exists()
