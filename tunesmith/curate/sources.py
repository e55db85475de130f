"""Read the configured sources (JSONL, JSON, CSV, Parquet files or a hub dataset) into raw Examples.

Reading never drops a row: a line that is not valid JSON, not UTF-8 or not an object becomes an Example
with `problem` set, which the `validate` stage rejects with its file and line (the readers are in
`readers.py`). Format detection and column renaming happen here; turning fields into chat messages is
`validate`'s job. A source with no rows at all is an error: it is almost always a wrong path or an empty export.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections import deque
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from tunesmith.artifact_io import sha256_file
from tunesmith.artifacts import SourceRecord
from tunesmith.config import StrictModel, home_path
from tunesmith.curate.csv_reader import parse_csv, parse_tsv
from tunesmith.curate.preference import PREFERENCE_FORMATS, PREFERENCE_KEYS
from tunesmith.curate.readers import SourceError, parse_json, parse_jsonl, read_hub, read_parquet
from tunesmith.curate.record import Example

log = logging.getLogger(__name__)
_SURROGATE = re.compile(r"[\ud800-\udfff]")

SFT_FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt", "text")
FORMATS = (*SFT_FORMATS, *PREFERENCE_FORMATS)
FILE_TYPES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
              ".parquet": "parquet"}
READERS = {"jsonl": parse_jsonl, "json": parse_json, "csv": parse_csv, "tsv": parse_tsv, "parquet": read_parquet}
DETECT_ROWS = 200  # detect_format votes over the first 200 parsed rows
HEAD_LIMIT = 10_000  # rows held while looking for them, so a file of broken rows cannot fill memory
# keys that identify each format, most specific first: a preference row may also hold `prompt` or `conversations`,
# and `text` often rides along with a row's real turns, so it comes last
FORMAT_KEYS: list[tuple[str, set[str]]] = [
    *PREFERENCE_KEYS,
    ("messages", {"messages"}),
    ("sharegpt", {"conversations"}),
    ("alpaca", {"instruction", "output"}),
    ("alpaca", {"instruction", "response"}),  # Dolly: instruction, context, response
    ("prompt_completion", {"prompt", "completion"}),
    ("prompt_completion", {"prompt", "response"}),
    ("text", {"text"}),
]


class SourceConfig(StrictModel):
    path: str = Field(description="File path (.jsonl, .json, .csv, .tsv, .parquet) or a Hugging Face dataset id.")
    name: str | None = Field(None, description="Short name used in row ids; defaults to the file stem.")
    type: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "hub"] = Field(
        "auto", description="How to read the source; auto goes by the file extension."
    )
    format: Literal["auto", "alpaca", "prompt_completion", "messages", "sharegpt", "text", "preference",
                    "preference_sharegpt", "kto"] = Field(
        "auto", description="Row format; auto detects it from the column names (preference and kto rows first)."
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Rename input columns to the format's names, e.g. {question: prompt}; "
        "two columns may not be renamed to one name."
    )
    hub_split: str = Field("train", description="Split to read from a hub dataset.")
    revision: str | None = Field(None, description="Revision (commit or tag) of a hub dataset.")
    keep_columns: list[str] = Field(
        default_factory=list, description="Extra columns carried on each row as `meta` in the split files (e.g. for "
        "`split.stratify`); every other column the format does not read is listed as ignored."
    )

    @field_validator("path", "name")
    @classmethod
    def _utf8_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        fix = "rename the file to a UTF-8 name" if info.field_name == "path" else "give a name in UTF-8 text"
        return value if value is None else require_utf8(value, fix)

    @field_validator("columns")
    @classmethod
    def _one_column_per_name(cls, value: dict[str, str]) -> dict[str, str]:
        """Two renames onto one name would let one column silently overwrite the other in every row."""
        onto: dict[str, list[str]] = {}
        for old, new in value.items():
            onto.setdefault(new, []).append(old)
        clashes = [f"{' and '.join(map(repr, olds))} both to {new!r}" for new, olds in onto.items() if len(olds) > 1]
        if clashes:
            raise ValueError(f"renames {'; '.join(clashes)}, and one column would overwrite the other; "
                             "rename only one of them to each name")
        return value

    @field_validator("path")
    @classmethod
    def _home_folder(cls, value: str) -> str:
        return home_path(value)


def require_utf8(value: str, fix: str) -> str:
    """`value`, refused (ValueError, for pydantic) when it holds lone surrogates.

    A file name that is not UTF-8 reaches Python as lone surrogates (`bad\\xffname` -> 'bad\\udcffname'), and
    the card, the reports and the row ids record paths and names as UTF-8 text, which cannot hold them.
    """
    if not _SURROGATE.search(value):
        return value
    try:  # the bytes of the file name, as the shell shows them
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name gives, e.g. "\\ud800" typed into YAML
        shown = value.encode("utf-8", "backslashreplace").decode("utf-8")
    raise ValueError(f'"{shown}" is not valid UTF-8; {fix}')


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
    known = ", ".join(FILE_TYPES)
    raise SourceError(f"{config.path}: cannot tell the file type from {suffix!r}; tunesmith reads {known} files "
                      "(and hub datasets): save or rename the file as one of them, or set `type:` on a curate source")


def detect_format(rows: list[dict[str, Any]], path: str) -> str:
    """Pick the format whose identifying keys appear in most of the first rows."""
    votes: dict[str, int] = {}
    for row in rows[:DETECT_ROWS]:
        for fmt, keys in FORMAT_KEYS:
            if keys <= row.keys():
                votes[fmt] = votes.get(fmt, 0) + 1
                break
    if not votes:
        seen = sorted({k for row in rows[:20] for k in row})
        expected = " | ".join(f"{'+'.join(sorted(keys))} ({fmt})" for fmt, keys in FORMAT_KEYS)
        raise SourceError(
            f"{path}: cannot detect the format from columns {seen}; expected the columns of one of: {expected}. "
            "Rename the columns with `columns:` on the source (audit: --columns OLD=NEW), or set `format:` "
            "(audit: --format)."
        )
    return max(votes, key=votes.get)


def check_source(config: SourceConfig, peek: bool = True) -> str:
    """Refuse a source that cannot be read at all, before the run; its file type.

    Without reading rows: a folder, a missing or unreadable file, an unknown type. With `peek`, also what the first
    rows show (an empty or UTF-16 file, a bad CSV header, columns of no known format, a JSON array broken at its
    start): the reader runs until the first row, holding a few hundred rows (for a JSON object holding the rows,
    its first pass reads the whole file). An error further into a file is still raised when the stream gets there.
    """
    kind = _check_file(config)
    if peek:
        stream = _stream(config, kind)
        next(stream, None)
        stream.close()
    return kind


def _check_file(config: SourceConfig) -> str:
    path = Path(config.path)
    if path.is_dir():  # before guessing the type: a folder has no extension, or a misleading one
        raise SourceError(f"{config.path}: is a folder, and a source is one file; list each file as its own source")
    kind = file_type(config)
    if kind == "hub":
        return kind
    if not path.is_file():
        what = "not a regular file" if path.exists() else "file not found"
        raise SourceError(f"{config.path}: {what}")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:  # unreadable file (permissions, a device error): say which
        raise SourceError(f"{config.path}: cannot read the file ({err.strerror or err})") from None
    return kind


def iter_source(config: SourceConfig) -> Generator[Example, None, SourceRecord]:
    """Stream one source's raw Examples (renamed columns, detected format); the generator's return value is the
    source's record (`record = yield from iter_source(config)`). Memory holds the first rows (for the format),
    not the file."""
    return (yield from _stream(config, check_source(config, peek=False)))


def _stream(config: SourceConfig, kind: str) -> Generator[Example, None, SourceRecord]:
    name = source_name(config)
    rows = _guarded(config, READERS[kind](Path(config.path), name) if kind != "hub"
                    else read_hub(config.path, config.hub_split, config.revision, name))
    renames = _Renames(config)
    head: deque[Example] = deque()
    parsed = []
    for ex in rows:  # the first rows decide the format, as detect_format reads them
        head.append(renames(ex))
        if ex.fields is not None:
            parsed.append(ex.fields)
        if len(parsed) >= DETECT_ROWS or len(head) >= HEAD_LIMIT:
            break
    if not head:
        raise SourceError(f"{config.path}: no rows (the file is empty or holds only blank lines or a header); "
                          "check the path or remove this source")
    fmt = config.format if config.format != "auto" else detect_format(parsed, config.path) if parsed else "messages"
    del parsed
    count = 0
    # the held rows leave memory as they are handed on
    for ex in itertools.chain((head.popleft() for _ in range(len(head))), (renames(ex) for ex in rows)):
        ex.format = fmt
        if config.keep_columns and ex.fields is not None:
            _keep_columns(ex, config.keep_columns)
        count += 1
        yield ex
    sha = sha256_file(Path(config.path)) if kind != "hub" else None
    log.info("read %d rows from %s (%s, format %s)", count, config.path, kind, fmt)
    return SourceRecord(path=config.path, format=fmt, rows=count, sha256=sha, warnings=renames.warnings())


def read_source(config: SourceConfig) -> tuple[list[Example], SourceRecord]:
    """Read one source into raw Examples (renamed columns, detected format) and describe it."""
    examples: list[Example] = []
    stream = iter_source(config)
    while True:
        try:
            examples.append(next(stream))
        except StopIteration as stop:
            return examples, stop.value


def _guarded(config: SourceConfig, rows: Iterator[Example]) -> Iterator[Example]:
    try:
        yield from rows
    except OSError as err:  # a device error or a file removed half-way: say which source
        raise SourceError(f"{config.path}: cannot read the file ({err.strerror or err})") from None


def _keep_columns(example: Example, columns: list[str]) -> None:
    """Carry `keep_columns` on the row; a value holding a lone surrogate marks the row for `validate` to reject.

    Such a value cannot be written as UTF-8, so left in place it would stop the whole curate when the split
    files are written; as a row problem it costs one row, named with its file, line and column.
    """
    example.meta = {k: example.fields[k] for k in columns if k in example.fields}
    for column, value in example.meta.items():
        if example.problem is None and _SURROGATE.search(json.dumps(value, ensure_ascii=False)):
            example.problem = "invalid_utf8"
            example.detail = f"kept column {column!r} holds an unpaired UTF-16 surrogate (broken text)"


class _Renames:
    """Apply `columns:` to each row in place (the reader owns these fresh records); refuse a rename onto an
    existing column. `warnings()` names each renamed column that no row had (a typo, or the mapping of another
    file), logged too: the rename did nothing, so the rows are read by the names they have."""

    def __init__(self, config: SourceConfig):
        self.config, self.unused = config, dict(config.columns)

    def __call__(self, ex: Example) -> Example:
        columns = self.config.columns
        if not columns or not ex.fields:
            return ex
        for old in [k for k in self.unused if k in ex.fields]:
            del self.unused[old]
        for old, new in columns.items():
            if old in ex.fields and new in ex.fields and new not in columns:
                raise SourceError(f"{ex.where}: `columns:` renames {old!r} to {new!r}, but the row already has a "
                                  f"{new!r} column; rename or drop one of them")
        ex.fields = {columns.get(k, k): v for k, v in ex.fields.items()}
        return ex

    def warnings(self) -> list[str]:
        warnings = [f"{self.config.path}: `columns:` renames {old!r} to {new!r}, but no row has a {old!r} column, "
                    "so the rename does nothing; check the column's name" for old, new in self.unused.items()]
        for warning in warnings:
            log.warning("%s", warning)
        return warnings
