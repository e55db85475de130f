"""One reader per file type (JSONL, JSON, CSV/TSV, Parquet, hub dataset), each turning a file into raw Examples.

A reader never drops a row: a line that is not UTF-8, not valid JSON, not an object or not a well-formed CSV
record becomes an Example with `problem` set, which `validate` rejects with its file and line. A file that
cannot be read at all (UTF-16, a broken JSON array, a CSV quote never closed) raises SourceError.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import decimal
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from tunesmith.curate.record import Example
from tunesmith.errors import UsageError

# UTF-32 first: its little-endian mark starts like UTF-16's
_WIDE_BOMS = [(codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
              (codecs.BOM_UTF16_BE, "UTF-16")]
log = logging.getLogger(__name__)
JSON_COLUMNS = ("messages", "conversations")  # CSV cells holding a conversation as a JSON array
NOT_UTF8 = "not_utf8_bytes"  # key of the stand-in for binary values that are not UTF-8 text
_ARRAY_START = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*\[")  # a BOM, blank space, then `[`


class SourceError(UsageError):
    """A source that cannot be read at all (missing file, unknown type, broken JSON array)."""


def _check_encoding(path: Path, data: bytes) -> None:
    """Refuse UTF-16/32 files up front: read as UTF-8 they would only give garbled rows."""
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            raise SourceError(f"{path}: the file is {encoding} encoded (it starts with a {encoding} byte order mark); "
                              "save it as UTF-8")


def _json_type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _unreadable(err: Exception) -> str:
    """Why json.loads failed without a JSONDecodeError: a >4300-digit integer, or nesting deeper than ~1000."""
    return "nested too deeply" if isinstance(err, RecursionError) else str(err).split(":")[0]


def _bad(name: str, source: str, row: int, line: int | None, problem: str, detail: str, raw: str) -> Example:
    return Example(id=f"{name}:{row}", source=source, row=row, line=line, problem=problem, detail=detail,
                   raw=raw[:2000])


def parse_jsonl(path: Path, name: str) -> list[Example]:
    examples, source, row = [], str(path), 0
    with open(path, "rb") as handle:
        data = handle.read()
    _check_encoding(path, data)
    if _json_array(data):  # a pretty-printed array would be read line by line as a run of broken rows
        log.info("%s: the .jsonl file holds one JSON array of rows; reading it as JSON", path)
        return _json_rows(path, name, json.loads(data.decode("utf-8-sig")))
    # JSON strings cannot hold a raw CR or LF, so \r, \n and \r\n all end a line (old Mac files use \r alone)
    for line_no, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        row += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            detail = f"invalid UTF-8 byte 0x{raw[err.start]:02x} at byte {err.start} of the line (save the file as UTF-8)"
            examples.append(_bad(name, source, row - 1, line_no, "invalid_utf8", detail, raw.decode("utf-8", "replace")))
            continue
        try:
            value = json.loads(text[1:] if text.startswith("\ufeff") else text)  # a BOM, also of a pasted-in file
        except json.JSONDecodeError as err:
            nul = "; the line holds NUL bytes (binary junk, or a UTF-16 file?)" if "\x00" in text else ""
            detail = f"malformed JSON at column {err.colno}: {err.msg}{nul}"
            examples.append(_bad(name, source, row - 1, line_no, "malformed_json", detail, text))
            continue
        except (ValueError, RecursionError) as err:
            detail = f"unreadable JSON: {_unreadable(err)}"
            examples.append(_bad(name, source, row - 1, line_no, "malformed_json", detail, text))
            continue
        if not isinstance(value, dict):
            detail = f"the line is a JSON {_json_type(value)}, expected an object with the row's fields"
            examples.append(_bad(name, source, row - 1, line_no, "not_an_object", detail, text))
            continue
        examples.append(Example(id=f"{name}:{row - 1}", source=source, row=row - 1, line=line_no, fields=value))
    return examples


def _decode(path: Path, data: bytes, what: str) -> str:
    """The whole file as text, or a SourceError naming the line of the first byte that is not UTF-8."""
    _check_encoding(path, data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SourceError(f"{path}:{line}: invalid UTF-8 byte 0x{data[err.start]:02x} (byte {err.start} of the "
                          f"file); save the {what} as UTF-8") from None


def parse_json(path: Path, name: str) -> list[Example]:
    text = _decode(path, path.read_bytes(), "JSON file")
    if not text.strip():
        raise SourceError(f"{path}: the file is empty; expected a JSON array of rows")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg != "Extra data":
            raise SourceError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
        if _json_lines(text, err):
            log.info("%s: the .json file holds one JSON object per line; reading it as JSON Lines", path)
            return parse_jsonl(path, name)
        raise SourceError(f"{path}: the file holds more than one JSON value (the second starts at line {err.lineno}, "
                          f"column {err.colno}); save the rows as one JSON array, or one object per line as "
                          ".jsonl") from None
    except (ValueError, RecursionError) as err:
        raise SourceError(f"{path}: unreadable JSON: {_unreadable(err)}") from None
    if isinstance(value, dict):
        lists = [k for k, v in value.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise SourceError(f"{path}: expected a JSON array of rows, or an object holding exactly one array "
                              f"(this one holds {len(lists)}: {lists[:5]})")
        value = value[lists[0]]
    if not isinstance(value, list):
        raise SourceError(f"{path}: expected a JSON array of rows, found a {_json_type(value)}")
    return _json_rows(path, name, value)


def _json_rows(path: Path, name: str, value: list) -> list[Example]:
    examples = []
    for row, item in enumerate(value):
        if isinstance(item, dict):
            examples.append(Example(id=f"{name}:{row}", source=str(path), row=row, line=None, fields=item))
        else:
            detail = f"row {row} is a JSON {_json_type(item)}, expected an object with the row's fields"
            examples.append(_bad(name, str(path), row, None, "not_an_object", detail, json.dumps(item)))
    return examples


def _json_array(data: bytes) -> bool:
    """A JSON array saved as .jsonl: it starts with `[` and the whole file is one JSON array.

    A JSON Lines file can start with `[` only if its first row is an array, which is not a row; such a file as a
    whole then fails to parse (two values), so it keeps being read line by line and that row is named. An array
    on a single line is one JSON Lines row (not an object, so rejected naming its line), not a file of rows.
    """
    if not _ARRAY_START.match(data) or b"\n" not in data.strip():  # a match, not lstrip: no copy of a large file
        return False
    try:
        return isinstance(json.loads(data.decode("utf-8-sig")), list)
    except (ValueError, RecursionError):  # also UnicodeDecodeError: the line reader names the bad line
        return False


def _json_lines(text: str, err: json.JSONDecodeError) -> bool:
    """A JSON Lines file saved as .json: an object filling the first line, then more (json.loads: "Extra data")."""
    first = text.lstrip()
    return first.startswith("{") and "\n" not in text[len(text) - len(first) : err.pos].rstrip()


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


def parse_tsv(path: Path, name: str) -> list[Example]:
    """Tab-separated values, read as CSV with a tab between cells (quotes work as in CSV)."""
    return parse_csv(path, name, delimiter="\t")


def parse_csv(path: Path, name: str, delimiter: str = ",") -> list[Example]:
    text = _decode(path, path.read_bytes(), "TSV" if delimiter == "\t" else "CSV")
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # a cell may be as long as the whole file
    # strict: a stray quote is an error for that row, not a silent merge of the rows after it into one cell
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter)
    header = _csv_header(path, reader, delimiter)
    examples, row, line_start, lines_of_text = [], 0, 2, None
    while True:
        base = {"id": f"{name}:{row}", "source": str(path), "row": row, "line": line_start}
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            lines = f"line {line_start}" if reader.line_num == line_start else f"lines {line_start}-{reader.line_num}"
            if "unexpected end of data" in str(err):
                raise SourceError(f"{path}:{line_start}: a quoted field in this row is never closed, so {lines} "
                                  'would become one cell; close the quote (write a quote inside a field as "")') from None
            lines_of_text = lines_of_text or re.split(r"\r\n|\r|\n", text)  # csv's own line ends; split once
            raw = "\n".join(lines_of_text[line_start - 1 : reader.line_num])[:2000]
            examples.append(Example(**base, problem="malformed_csv", detail=f"{err} ({lines}; check quoting)", raw=raw))
            row, line_start = row + 1, reader.line_num + 1
            continue
        line_start = reader.line_num + 1
        if any(c.strip() for c in cells):
            examples.append(_csv_row(base, header, cells))
            row += 1
    return examples


def _jsonable(value: Any) -> Any:
    """A Parquet/hub value as JSON types: dates as ISO text, decimals as floats, bytes decoded as UTF-8.

    Bytes that are not UTF-8 (an image column, say) become a small stand-in object rather than rejecting the
    row: they may sit in a column nobody reads, and `validate` names them if a text field holds them.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as err:
            return {NOT_UTF8: len(value), "bad_byte": f"0x{value[err.start]:02x}", "at": err.start}
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return str(value)


def parse_rows(rows: list[Any], path: str, name: str, convert: bool = True) -> list[Example]:
    """Rows from Parquet or the hub; `convert` turns non-JSON values (bytes, dates) into JSON ones."""
    examples = []
    for row, item in enumerate(rows):
        fields = {str(k): _jsonable(v) for k, v in item.items()} if convert else dict(item)
        examples.append(Example(id=f"{name}:{row}", source=path, row=row, line=None, fields=fields))
    return examples


def read_parquet(path: Path, name: str) -> list[Example]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise SourceError(f"{path}: cannot read Parquet: {err}") from None
    # only columns of non-JSON types (binary, timestamp, decimal, ...) need the slower per-value conversion
    convert = not all(_plain(field.type) for field in table.schema)
    return parse_rows(table.to_pylist(), str(path), name, convert=convert)


def _plain(kind) -> bool:
    """An Arrow type whose Python values are JSON types already (text, ints, floats, lists and structs of them)."""
    import pyarrow.types as pt

    if pt.is_list(kind) or pt.is_large_list(kind) or pt.is_fixed_size_list(kind) or pt.is_dictionary(kind):
        return _plain(kind.value_type)
    if pt.is_struct(kind):
        return all(_plain(kind.field(i).type) for i in range(kind.num_fields))
    return (pt.is_string(kind) or pt.is_large_string(kind) or pt.is_integer(kind) or pt.is_float32(kind)
            or pt.is_float64(kind) or pt.is_boolean(kind) or pt.is_null(kind))


def read_hub(path: str, split: str, revision: str | None, name: str) -> list[Example]:
    import datasets

    try:
        dataset = datasets.load_dataset(path, split=split, revision=revision)
    except Exception as err:  # offline, missing or private datasets all land here
        raise SourceError(f"{path}: cannot load the hub dataset ({type(err).__name__}: {err})") from None
    return parse_rows(list(dataset), path, name)
