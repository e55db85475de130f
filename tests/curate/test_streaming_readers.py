"""Readers stream: the first row comes before the rest of the file is read, bad lines are rows, memory stays flat.

Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/curate/test_streaming_readers.py
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunesmith.curate import json_stream, readers
from tunesmith.curate.sources import SourceConfig, SourceError, check_source, iter_source, read_source

ROWS = 30_000  # ~3 MB: several of the readers' 1 MiB chunks


def _rows(n: int = ROWS) -> list[dict]:
    return [{"prompt": f"question {i:06d}", "response": f"answer {i:06d} " + "x" * 60} for i in range(n)]


def _write(path: Path, rows: list[dict]) -> Path:
    kind = path.suffix
    if kind in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind in (".csv", ".tsv"):
        sep = "\t" if kind == ".tsv" else ","
        path.write_text(f"prompt{sep}response\n" + "".join(f"{r['prompt']}{sep}{r['response']}\n" for r in rows))
    elif path.name.endswith("object.json"):
        path.write_text(json.dumps({"meta": {"note": "x"}, "rows": rows}, indent=1))
    elif kind == ".json":
        path.write_text(json.dumps(rows, indent=1))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1000, compression="none",
                       use_dictionary=False, write_statistics=False)
    return path


def _swap(path: Path, old: bytes, new: bytes) -> None:
    """Change the file in place, same length, so only a reader that has not read that part yet sees it."""
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))


@pytest.mark.parametrize("name", ["big.jsonl", "big.ndjson", "big.csv", "big.tsv", "big.json", "big-object.json",
                                  "big.parquet"])
def test_each_format_yields_its_first_row_before_it_reads_the_end_of_the_file(tmp_path, name):
    path = _write(tmp_path / name, _rows())
    stream = iter_source(SourceConfig(path=str(path)))
    first = next(stream)
    assert first.fields["prompt"] == "question 000000"
    _swap(path, b"question 029990", b"QUESTION 029990")  # a row near the end, changed after the first row came
    rest = list(stream)
    prompts = [ex.fields["prompt"] for ex in rest]
    assert "QUESTION 029990" in prompts and "question 029990" not in prompts
    assert len(rest) == ROWS - 1 and [ex.row for ex in rest[:2]] == [1, 2]


def test_bad_jsonl_lines_are_rows_with_their_line_numbers_and_the_stream_goes_on(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": \n\n[1, 2]\n{"prompt": "\xff"}\r\n'
                     b'{"prompt": "c", "response": "d"}\r{"prompt": "e", "response": "f"}')
    examples, record = read_source(SourceConfig(path=str(path)))
    shown = [(ex.row, ex.line, ex.problem) for ex in examples]
    assert shown == [(0, 1, None), (1, 2, "malformed_json"), (2, 4, "not_an_object"), (3, 5, "invalid_utf8"),
                     (4, 6, None), (5, 7, None)]
    assert record.rows == 6 and record.format == "prompt_completion" and len(record.sha256) == 64


def test_a_bad_csv_record_keeps_the_line_it_starts_on(tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text('prompt,response\n"two\nlines",b\nc,"d"x\nthree,cells,here\ne,f\n')
    examples, _ = read_source(SourceConfig(path=str(path)))
    assert [(ex.row, ex.line, ex.problem) for ex in examples] == [
        (0, 2, None), (1, 4, "malformed_csv"), (2, 5, "malformed_csv"), (3, 6, None)]
    assert examples[0].fields["prompt"] == "two\nlines" and examples[1].raw == 'c,"d"x'


def test_a_broken_json_array_far_in_names_its_line_after_the_rows_before_it(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(_rows(), indent=1)[:-4] + "\n oops")
    stream = iter_source(SourceConfig(path=str(path)))
    assert next(stream).row == 0
    err = pytest.raises(json.JSONDecodeError, json.loads, path.read_text()).value
    assert err.lineno > 100_000
    with pytest.raises(SourceError, match=rf"broken.json: malformed JSON at line {err.lineno}, column {err.colno}: "
                                          f"{err.msg}"):
        list(stream)


def test_json_values_and_errors_are_json_loads_own_across_chunk_boundaries(tmp_path, monkeypatch):
    """With 5-character chunks every value is cut somewhere; rows still equal json.loads, NaN and surrogates too."""
    monkeypatch.setattr(json_stream, "CHUNK", 5)
    text = '[\n {"a": NaN, "b": "\\ud800", "c": 1e400, "d": 123456789012345678901234567890},\n {"e": "é😀"}\n]'
    path = tmp_path / "values.json"
    path.write_text(text, encoding="utf-8")
    got = [ex.fields for ex in readers.parse_json(path, "v")]
    want = json.loads(text)
    assert math.isnan(got[0].pop("a")) and math.isnan(want[0].pop("a"))
    assert got == want
    path.write_text('[\n {"a": 1},\n {"a" 2}\n]')
    err = pytest.raises(json.JSONDecodeError, json.loads, path.read_text()).value
    with pytest.raises(SourceError, match=rf"at line {err.lineno}, column {err.colno}: {err.msg}"):
        list(readers.parse_json(path, "v"))


def test_check_source_refuses_unreadable_sources_without_reading_rows(tmp_path):
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for path, message in [(tmp_path / "missing.jsonl", "file not found"), (tmp_path / "folder.jsonl", "is a folder"),
                          (tmp_path / "notes.txt", "cannot tell the file type")]:
        with pytest.raises(SourceError, match=message):
            check_source(SourceConfig(path=str(path)))
    assert check_source(SourceConfig(path=str(_write(tmp_path / "ok.csv", _rows(2))))) == "csv"


def test_check_source_peeks_at_the_first_rows_for_errors_a_run_would_meet_at_once(tmp_path):
    (tmp_path / "blank.jsonl").write_text("\n\n")
    (tmp_path / "odd.jsonl").write_text('{"q": 1}\n')
    for name, message in [("blank.jsonl", "no rows"), ("odd.jsonl", "cannot detect the format")]:
        config = SourceConfig(path=str(tmp_path / name))
        assert check_source(config, peek=False) == "jsonl"
        with pytest.raises(SourceError, match=message):
            check_source(config)


def test_a_source_with_no_rows_is_an_error_when_its_stream_ends(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n  \n\n")
    with pytest.raises(SourceError, match="no rows"):
        next(iter_source(SourceConfig(path=str(path))))


def test_format_is_detected_from_the_first_rows_and_renames_warn_at_the_end(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"q": "a", "output": "b", "instruction": "i"}] * 200 + [{"messages": []}] * 500
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples, record = read_source(SourceConfig(path=str(path), columns={"q": "question", "typo": "x"}))
    assert record.format == "alpaca" and {ex.format for ex in examples} == {"alpaca"}
    assert examples[0].fields.keys() == {"question", "output", "instruction"}
    assert len(record.warnings) == 1 and "'typo'" in record.warnings[0]


def test_a_hub_dataset_is_streamed_when_online(monkeypatch):
    import datasets

    asked = {}

    def fake_load(path, split, revision, streaming):
        asked.update(path=path, streaming=streaming)
        return ({"prompt": f"p{i}", "response": "r"} for i in range(3))

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    examples, record = read_source(SourceConfig(path="org/data"))
    assert asked == {"path": "org/data", "streaming": True}
    assert [ex.id for ex in examples] == ["data:0", "data:1", "data:2"] and record.sha256 is None


_MEASURE = """
import sys
from tunesmith.curate.sources import SourceConfig, iter_source

def status(key):  # KiB; VmHWM is this process's own peak (ru_maxrss would start from pytest's, inherited at fork)
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])

before = status("VmRSS")  # resident now, the imports done
stream, rows = iter_source(SourceConfig(path=sys.argv[1])), 0
try:
    while True:
        next(stream); rows += 1
except StopIteration as stop:
    assert stop.value.rows == rows
print(rows, status("VmHWM") - before)
"""


def test_reading_a_150_mb_jsonl_keeps_memory_flat(tmp_path):
    """Peak RSS growth while streaming ~150 MB stays a small fraction of the file (the old reader held it all)."""
    path = tmp_path / "big.jsonl"
    line = json.dumps({"prompt": "p" * 1500, "response": "r" * 3500}) + "\n"
    with open(path, "w") as out:
        for _ in range(30):
            out.write(line * 1000)
    size_kib = path.stat().st_size // 1024
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_MEASURE), str(path)], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).parents[2])
    rows, growth_kib = map(int, done.stdout.split())
    print(f"streamed {rows} rows, {size_kib // 1024} MiB: peak RSS grew {growth_kib / 1024:.1f} MiB")
    assert rows == 30_000 and size_kib > 140_000
    assert growth_kib < size_kib / 8  # measured: ~3 MiB (the whole-file reader grew ~20x the file)
