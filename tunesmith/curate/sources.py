"""Read the configured sources (JSONL, JSON, CSV, Parquet files or a hub dataset) into raw Examples.

Reading never drops a row: a line that is not valid JSON, not UTF-8 or not an object becomes an Example
with `problem` set, which the `validate` stage rejects with its file and line. Format detection and
column renaming happen here; turning fields into chat messages is `validate`'s job.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tunesmith.artifacts import SourceRecord, sha256_file
from tunesmith.config import StrictModel
from tunesmith.curate.record import Example

log = logging.getLogger(__name__)

FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt")
FILE_TYPES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# keys that identify each format, most specific first
FORMAT_KEYS: list[tuple[str, set[str]]] = [
    ("messages", {"messages"}),
    ("sharegpt", {"conversations"}),
    ("alpaca", {"instruction", "output"}),
    ("prompt_completion", {"prompt", "completion"}),
    ("prompt_completion", {"prompt", "response"}),
]


class SourceError(ValueError):
    """A source that cannot be read at all (missing file, unknown type, broken JSON array)."""


class SourceConfig(StrictModel):
    path: str = Field(description="File path (.jsonl, .json, .csv, .parquet) or a Hugging Face dataset id.")
    name: str | None = Field(None, description="Short name used in row ids; defaults to the file stem.")
    type: Literal["auto", "jsonl", "json", "csv", "parquet", "hub"] = Field(
        "auto", description="How to read the source; auto goes by the file extension."
    )
    format: Literal["auto", "alpaca", "prompt_completion", "messages", "sharegpt"] = Field(
        "auto", description="Row format; auto detects it from the column names."
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Rename input columns to the format's names, e.g. {question: prompt}."
    )
    hub_split: str = Field("train", description="Split to read from a hub dataset.")
    revision: str | None = Field(None, description="Revision (commit or tag) of a hub dataset.")
    keep_columns: list[str] = Field(
        default_factory=list, description="Extra columns carried on each row (e.g. for `split.stratify`)."
    )


def source_name(config: SourceConfig) -> str:
    return config.name or Path(config.path).stem or config.path


def file_type(config: SourceConfig) -> str:
    if config.type != "auto":
        return config.type
    suffix = Path(config.path).suffix.lower()
    if suffix in FILE_TYPES:
        return FILE_TYPES[suffix]
    if not Path(config.path).exists() and config.path.count("/") == 1:
        return "hub"
    raise SourceError(f"{config.path}: cannot tell the file type from {suffix!r}; set `type:` on the source")


def detect_format(rows: list[dict[str, Any]], path: str) -> str:
    """Pick the format whose identifying keys appear in most of the first rows."""
    votes: dict[str, int] = {}
    for row in rows[:200]:
        for fmt, keys in FORMAT_KEYS:
            if keys <= row.keys():
                votes[fmt] = votes.get(fmt, 0) + 1
                break
    if not votes:
        seen = sorted({k for row in rows[:20] for k in row})
        raise SourceError(
            f"{path}: cannot detect the format from columns {seen}; expected one of "
            "messages | conversations | instruction+output | prompt+completion. "
            "Set `format:` and `columns:` on the source."
        )
    return max(votes, key=votes.get)


def _parse_jsonl(path: Path, name: str) -> list[Example]:
    examples, source, row = [], str(path), 0
    with open(path, "rb") as handle:
        data = handle.read()
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        row += 1
        try:
            value = json.loads(raw)  # bytes: decoded as UTF-8 (a BOM is accepted) inside the C parser
        except UnicodeDecodeError as err:
            detail = f"invalid UTF-8 byte 0x{raw[err.start]:02x} at byte {err.start} of the line"
            examples.append(_bad(name, source, row - 1, line_no, "invalid_utf8", detail, raw.decode("utf-8", "replace")))
            continue
        except json.JSONDecodeError as err:
            detail = f"malformed JSON at column {err.colno}: {err.msg}"
            examples.append(_bad(name, source, row - 1, line_no, "malformed_json", detail, raw.decode("utf-8")))
            continue
        if not isinstance(value, dict):
            detail = f"the line is a JSON {type(value).__name__}, expected an object with the row's fields"
            examples.append(_bad(name, source, row - 1, line_no, "not_an_object", detail, raw.decode("utf-8")))
            continue
        examples.append(Example(id=f"{name}:{row - 1}", source=source, row=row - 1, line=line_no, fields=value))
    return examples


def _bad(name: str, source: str, row: int, line: int, problem: str, detail: str, raw: str) -> Example:
    return Example(id=f"{name}:{row}", source=source, row=row, line=line, problem=problem, detail=detail,
                   raw=raw[:2000])


def _parse_json(path: Path, name: str) -> list[Example]:
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: invalid UTF-8 at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if isinstance(value, dict):
        lists = [k for k, v in value.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise SourceError(f"{path}: expected a JSON array of rows (or an object holding exactly one array)")
        value = value[lists[0]]
    if not isinstance(value, list):
        raise SourceError(f"{path}: expected a JSON array of rows, found a {type(value).__name__}")
    examples = []
    for row, item in enumerate(value):
        base = {"id": f"{name}:{row}", "source": str(path), "row": row, "line": None}
        if isinstance(item, dict):
            examples.append(Example(**base, fields=item))
        else:
            detail = f"row {row} is a JSON {type(item).__name__}, expected an object with the row's fields"
            examples.append(Example(**base, problem="not_an_object", detail=detail, raw=json.dumps(item)[:2000]))
    return examples


def _parse_csv(path: Path, name: str) -> list[Example]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: invalid UTF-8 at byte {err.start}; save the CSV as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    header = next(reader, None)
    if not header:
        raise SourceError(f"{path}: the CSV file is empty (no header row)")
    examples = []
    row = 0
    line_start = 2
    for cells in reader:
        base = {"id": f"{name}:{row}", "source": str(path), "row": row, "line": line_start}
        line_start = reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        row += 1
        if len(cells) != len(header):
            detail = f"{len(cells)} cells but the header has {len(header)} columns (check quoting)"
            examples.append(Example(**base, problem="malformed_csv", detail=detail, raw=",".join(cells)[:2000]))
            continue
        fields: dict[str, Any] = dict(zip(header, cells))
        for key in ("messages", "conversations"):
            if isinstance(fields.get(key), str) and fields[key].lstrip().startswith("["):
                try:
                    fields[key] = json.loads(fields[key])
                except json.JSONDecodeError as err:
                    fields[key] = f"<unparseable JSON: {err.msg}>"
        examples.append(Example(**base, fields=fields))
    return examples


def _parse_rows(rows: list[Any], path: str, name: str) -> list[Example]:
    examples = []
    for row, item in enumerate(rows):
        base = {"id": f"{name}:{row}", "source": path, "row": row, "line": None}
        examples.append(Example(**base, fields=dict(item)))
    return examples


def _read_parquet(path: Path, name: str) -> list[Example]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise SourceError(f"{path}: cannot read Parquet: {err}") from None
    return _parse_rows(table.to_pylist(), str(path), name)


def _read_hub(config: SourceConfig, name: str) -> list[Example]:
    import datasets

    try:
        dataset = datasets.load_dataset(config.path, split=config.hub_split, revision=config.revision)
    except Exception as err:  # offline, missing or private datasets all land here
        raise SourceError(f"{config.path}: cannot load the hub dataset ({type(err).__name__}: {err})") from None
    return _parse_rows(list(dataset), config.path, name)


def read_source(config: SourceConfig) -> tuple[list[Example], SourceRecord]:
    """Read one source into raw Examples (renamed columns, detected format) and describe it."""
    kind, name = file_type(config), source_name(config)
    path = Path(config.path)
    if kind != "hub" and not path.is_file():
        raise SourceError(f"{config.path}: file not found")
    readers = {"jsonl": _parse_jsonl, "json": _parse_json, "csv": _parse_csv, "parquet": _read_parquet}
    examples = _read_hub(config, name) if kind == "hub" else readers[kind](path, name)
    if config.columns:
        for ex in examples:  # the reader owns these fresh records, so it fills them in place
            if ex.fields:
                ex.fields = {config.columns.get(k, k): v for k, v in ex.fields.items()}
    parsed = [ex.fields for ex in examples if ex.fields is not None]
    if config.format != "auto":
        fmt = config.format
    elif parsed:
        fmt = detect_format(parsed, config.path)
    else:
        fmt = "messages"
    for ex in examples:
        ex.format = fmt
        if config.keep_columns and ex.fields is not None:
            ex.meta = {k: ex.fields[k] for k in config.keep_columns if k in ex.fields}
    sha = sha256_file(path) if kind != "hub" else None
    log.info("read %d rows from %s (%s, format %s)", len(examples), config.path, kind, fmt)
    if not examples:
        log.warning("%s holds no rows", config.path)
    return examples, SourceRecord(path=config.path, format=fmt, rows=len(examples), sha256=sha)
