"""The CSV and TSV reader: csv.reader over the open file, one record at a time, each keeping its first line number.

A record csv cannot parse (a stray quote) is one row with `problem` set; a quote never closed, a bad header or
bytes that are not UTF-8 fail the source (SourceError) when the reader gets there.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.curate.readers import JSON_COLUMNS, SourceError, _check_encoding, _unreadable, _utf8_error
from tunesmith.curate.record import Example


def _csv_header(path: Path, reader, delimiter: str) -> list[str]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise SourceError(f"{path}:1: the header row is not valid {kind} ({err})") from None
    if not header:
        raise SourceError(f"{path}: the {kind} file is empty (no header row)")
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|,".replace(delimiter, "")):
        fix = ("a .tsv file is read with tabs between columns" if delimiter == "\t" else
               "a .csv file is read with ',' between columns; save it so, or name a tab-separated file .tsv")
        raise SourceError(f"{path}:1: the header {header[0]!r} is one column; {fix}")
    seen: dict[str, int] = {}
    for i, column in enumerate(header, start=1):
        if column in seen:
            raise SourceError(f"{path}:1: column {column!r} appears twice in the header (columns {seen[column]} and "
                              f"{i}); rename one")
        seen[column] = i
    return header


def _csv_row(base: dict, header: list[str], cells: list[str]) -> Example:
    if len(cells) != len(header):
        detail = f"{len(cells)} cells but the header has {len(header)} columns (check quoting)"
        return Example(**base, problem="malformed_csv", detail=detail, raw=",".join(cells)[:2000])
    fields: dict[str, Any] = dict(zip(header, cells))
    for key in JSON_COLUMNS:
        if isinstance(fields.get(key), str) and fields[key].lstrip().startswith("["):
            try:
                fields[key] = json.loads(fields[key])
            except (ValueError, RecursionError) as err:
                why = f"{err.msg} at column {err.colno}" if isinstance(err, json.JSONDecodeError) else _unreadable(err)
                detail = f"column {key!r} is not a valid JSON list of turns: {why}"
                return Example(**base, problem="malformed_json", detail=detail, raw=fields[key][:2000])
    return Example(**base, fields=fields)


def parse_tsv(path: Path, name: str) -> Iterator[Example]:
    """Tab-separated values, read as CSV with a tab between cells (quotes work as in CSV)."""
    return parse_csv(path, name, delimiter="\t")


class _RecordLines:
    """The text lines csv.reader pulls, remembering those of the record being read (up to 2000 characters)."""

    def __init__(self, lines: Iterator[str]):
        self.lines, self.kept, self.size = lines, [], 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        if self.size < 2000:
            self.kept.append(line[:-2] if line.endswith("\r\n") else line[:-1] if line.endswith(("\r", "\n")) else line)
            self.size += len(line)
        return line

    def take(self) -> str:
        raw, self.kept, self.size = "\n".join(self.kept), [], 0
        return raw[:2000]


def parse_csv(path: Path, name: str, delimiter: str = ",") -> Iterator[Example]:
    what = "TSV" if delimiter == "\t" else "CSV"
    with open(path, "rb") as binary:
        _check_encoding(path, binary.read(4))
        binary.seek(0)
        # a cell may be as long as the whole file (a character is at least one byte)
        csv.field_size_limit(max(csv.field_size_limit(), os.fstat(binary.fileno()).st_size + 1))
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        try:
            yield from _csv_records(path, name, text, delimiter)
        except UnicodeDecodeError:
            raise _utf8_error(path, binary, what) from None
        finally:
            text.detach()


def _csv_records(path: Path, name: str, text: io.TextIOWrapper, delimiter: str) -> Iterator[Example]:
    lines = _RecordLines(iter(text))
    # strict: a stray quote is an error for that row, not a silent merge of the rows after it into one cell
    reader = csv.reader(lines, strict=True, delimiter=delimiter)
    header = _csv_header(path, reader, delimiter)
    row, line_start = 0, 2
    while True:
        base = {"id": f"{name}:{row}", "source": str(path), "row": row, "line": line_start}
        lines.take()
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            lines_shown = f"line {line_start}" if reader.line_num == line_start else f"lines {line_start}-{reader.line_num}"
            if "unexpected end of data" in str(err):
                raise SourceError(f"{path}:{line_start}: a quoted field in this row is never closed, so {lines_shown} "
                                  'would become one cell; close the quote (write a quote inside a field as "")') from None
            detail = f"{err} ({lines_shown}; check quoting)"
            yield Example(**base, problem="malformed_csv", detail=detail, raw=lines.take())
            row, line_start = row + 1, reader.line_num + 1
            continue
        line_start = reader.line_num + 1
        if any(c.strip() for c in cells):
            yield _csv_row(base, header, cells)
            row += 1
