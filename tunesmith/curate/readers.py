"""One reader per file type (JSONL, JSON, CSV/TSV, Parquet, hub dataset), each streaming a file as raw Examples.

A reader never drops a row: a line that is not UTF-8, not valid JSON, not an object or not a well-formed CSV
record becomes an Example with `problem` set, which `validate` rejects with its file and line. A file that
cannot be read at all (UTF-16, a broken JSON array, a CSV quote never closed) raises SourceError, when the
reader gets there. Readers hold one line, record, row group or JSON row at a time, never the file.
"""

from __future__ import annotations

import codecs
import datetime
import decimal
import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tunesmith.curate.json_stream import CHUNK, JsonSyntax, TextWindow, array_items, object_members, utf8_error_at
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


def _utf8_error(path: Path, handle: BinaryIO, what: str) -> SourceError:
    """The SourceError naming the line of the file's first byte that is not UTF-8 (found by reading it again)."""
    offset, byte, line = utf8_error_at(handle) or (0, 0, 1)
    return SourceError(f"{path}:{line}: invalid UTF-8 byte 0x{byte:02x} (byte {offset} of the file); save the "
                       f"{what} as UTF-8")


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """The file's lines without their ends, as bytes.splitlines gives them: \\r, \\n and \\r\\n each end a line."""
    pending: list[bytes] = []
    while block := handle.read(CHUNK):
        parts = block.splitlines(keepends=True)
        if pending:  # the unfinished line of the last block; a \r there may be the start of \r\n
            parts[:1] = (b"".join(pending) + parts[0]).splitlines(keepends=True)
        last = parts[-1]
        finished = parts if last.endswith(b"\n") else parts[:-1]
        pending = [] if last.endswith(b"\n") else [last]
        for part in finished:
            yield part[:-2] if part.endswith(b"\r\n") else part[:-1]
    if pending:
        yield pending[0].removesuffix(b"\r")


def parse_jsonl(path: Path, name: str) -> Iterator[Example]:
    with open(path, "rb") as handle:
        _check_encoding(path, handle.read(4))
        handle.seek(0)
        # a pretty-printed array would be read line by line as a run of broken rows
        if _ARRAY_START.match(handle.read(1 << 16)) and _json_array(handle):
            log.info("%s: the .jsonl file holds one JSON array of rows; reading it as JSON", path)
            handle.seek(0)
            yield from _json_rows(path, name, array_items(_window(path, handle, "JSON file", skip=True)))
            return
        handle.seek(0)
        yield from _jsonl_rows(path, name, _lines(handle))


def _jsonl_rows(path: Path, name: str, lines: Iterable[bytes]) -> Iterator[Example]:
    source, row = str(path), 0
    # JSON strings cannot hold a raw CR or LF, so \r, \n and \r\n all end a line (old Mac files use \r alone)
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        row += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            detail = f"invalid UTF-8 byte 0x{raw[err.start]:02x} at byte {err.start} of the line (save the file as UTF-8)"
            yield _bad(name, source, row - 1, line_no, "invalid_utf8", detail, raw.decode("utf-8", "replace"))
            continue
        try:
            value = json.loads(text[1:] if text.startswith("\ufeff") else text)  # a BOM, also of a pasted-in file
        except json.JSONDecodeError as err:
            nul = "; the line holds NUL bytes (binary junk, or a UTF-16 file?)" if "\x00" in text else ""
            detail = f"malformed JSON at column {err.colno}: {err.msg}{nul}"
            yield _bad(name, source, row - 1, line_no, "malformed_json", detail, text)
            continue
        except (ValueError, RecursionError) as err:
            detail = f"unreadable JSON: {_unreadable(err)}"
            yield _bad(name, source, row - 1, line_no, "malformed_json", detail, text)
            continue
        if not isinstance(value, dict):
            detail = f"the line is a JSON {_json_type(value)}, expected an object with the row's fields"
            yield _bad(name, source, row - 1, line_no, "not_an_object", detail, text)
            continue
        yield Example(id=f"{name}:{row - 1}", source=source, row=row - 1, line=line_no, fields=value)


def _window(path: Path, handle: BinaryIO, what: str, skip: bool = False) -> TextWindow:
    win = TextWindow(handle, lambda: _utf8_error(path, handle, what))
    if skip:
        win.skip_ws()
    return win


def parse_json(path: Path, name: str) -> Iterator[Example]:
    with open(path, "rb") as handle:
        _check_encoding(path, handle.read(4))
        handle.seek(0)
        win = _window(path, handle, "JSON file")
        char = win.skip_ws()
        if not char or (char.isspace() and win.rest_is_space()):
            raise SourceError(f"{path}: the file is empty; expected a JSON array of rows")
        try:
            if char == "[":
                yield from _json_rows(path, name, array_items(win))
            elif char == "{":
                key = _one_array(path, win)
                if key is None:
                    log.info("%s: the .json file holds one JSON object per line; reading it as JSON Lines", path)
                    yield from parse_jsonl(path, name)
                    return
                handle.seek(0)  # pass 2: the rows of that one array
                win = _window(path, handle, "JSON file", skip=True)
                yield from _json_rows(path, name, object_members(win, take=key))
            else:
                _scalar(path, win, char)
            _no_more(path, win)
        except SourceError:
            raise
        except JsonSyntax as err:
            raise SourceError(f"{path}: malformed JSON at line {err.line}, column {err.col}: {err.msg}") from None
        except (ValueError, RecursionError) as err:
            raise SourceError(f"{path}: unreadable JSON: {_unreadable(err)}") from None


def _scalar(path: Path, win: TextWindow, char: str) -> None:
    """A file holding one string, number, true/false/null: refused, after json.loads' own checks."""
    if win.at_file_start() and char == "\ufeff":  # a second byte order mark: json.loads refuses it first
        raise win.syntax("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)
    value = win.value()
    _no_more(path, win)
    raise SourceError(f"{path}: expected a JSON array of rows, found a {_json_type(value)}")


def _no_more(path: Path, win: TextWindow) -> None:
    if win.skip_ws():
        line, col = win.where(win.pos)
        raise SourceError(f"{path}: the file holds more than one JSON value (the second starts at line {line}, "
                          f"column {col}); save the rows as one JSON array, or one object per line as .jsonl")


def _one_array(path: Path, win: TextWindow) -> int | None:
    """Pass 1 over a top-level object: the member number of its one array, or None for JSON Lines.

    An object filling the first line and followed by more is a JSON Lines file saved as .json.
    """
    first_line = win.where(win.pos)[0]
    members = _drain(object_members(win))
    if win.where(win.pos)[0] == first_line and win.skip_ws():
        return None
    _no_more(path, win)
    lists = [k for k, (is_array, _) in members.items() if is_array]
    if len(lists) != 1:
        raise SourceError(f"{path}: expected a JSON array of rows, or an object holding exactly one array "
                          f"(this one holds {len(lists)}: {lists[:5]})")
    return members[lists[0]][1]


def _drain(generator):
    """Run a generator to its end, discarding what it yields; its return value."""
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def _json_rows(path: Path, name: str, items: Iterable[Any]) -> Iterator[Example]:
    for row, item in enumerate(items):
        if isinstance(item, dict):
            yield Example(id=f"{name}:{row}", source=str(path), row=row, line=None, fields=item)
        else:
            detail = f"row {row} is a JSON {_json_type(item)}, expected an object with the row's fields"
            yield _bad(name, str(path), row, None, "not_an_object", detail, json.dumps(item))


def _json_array(handle: BinaryIO) -> bool:
    """A JSON array saved as .jsonl: it starts with `[` and the whole file is one JSON array (pass 1, streamed).

    A JSON Lines file can start with `[` only if its first row is an array, which is not a row; such a file as a
    whole then fails to parse (two values), so it keeps being read line by line and that row is named. An array
    on a single line is one JSON Lines row (not an object, so rejected naming its line), not a file of rows.
    """
    handle.seek(0)
    bom = handle.read(3) == codecs.BOM_UTF8  # the mark is text that bytes.strip() keeps: line 1 is not blank
    handle.seek(0)
    win = TextWindow(handle, _NotText)
    try:
        win.skip_ws()
        first_line = 1 if bom else win.where(win.pos)[0]
        _drain(array_items(win))
        return win.where(win.pos)[0] > first_line and not win.skip_ws()
    except (JsonSyntax, ValueError, RecursionError, _NotText):  # the line reader names what is wrong
        return False


class _NotText(Exception):
    pass


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


def parse_rows(rows: Iterable[Any], path: str, name: str, convert: bool = True, start: int = 0) -> Iterator[Example]:
    """Rows from Parquet or the hub; `convert` turns non-JSON values (bytes, dates) into JSON ones."""
    for row, item in enumerate(rows, start=start):
        fields = {str(k): _jsonable(v) for k, v in item.items()} if convert else dict(item)
        yield Example(id=f"{name}:{row}", source=path, row=row, line=None, fields=fields)


def read_parquet(path: Path, name: str, batch_rows: int = 1024) -> Iterator[Example]:
    """A Parquet file by record batches (row group by row group), never the whole table."""
    import pyarrow.parquet as pq

    def cannot(err: Exception) -> SourceError:
        return SourceError(f"{path}: cannot read Parquet: {err}")

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise cannot(err) from None
    with parquet:
        # only columns of non-JSON types (binary, timestamp, decimal, ...) need the slower per-value conversion
        convert = not all(_plain(field.type) for field in parquet.schema_arrow)
        # one row group at a time: iter_batches over the whole file reads row groups ahead
        groups = range(parquet.num_row_groups)
        batches = (b for g in groups for b in parquet.iter_batches(batch_size=batch_rows, row_groups=[g]))
        row = 0
        while True:
            try:
                batch = next(batches, None)
            except Exception as err:  # a damaged row group further in
                raise cannot(err) from None
            if batch is None:
                return
            yield from parse_rows(batch.to_pylist(), str(path), name, convert=convert, start=row)
            row += batch.num_rows


def _plain(kind) -> bool:
    """An Arrow type whose Python values are JSON types already (text, ints, floats, lists and structs of them)."""
    import pyarrow.types as pt

    if pt.is_list(kind) or pt.is_large_list(kind) or pt.is_fixed_size_list(kind) or pt.is_dictionary(kind):
        return _plain(kind.value_type)
    if pt.is_struct(kind):
        return all(_plain(kind.field(i).type) for i in range(kind.num_fields))
    return (pt.is_string(kind) or pt.is_large_string(kind) or pt.is_integer(kind) or pt.is_float32(kind)
            or pt.is_float64(kind) or pt.is_boolean(kind) or pt.is_null(kind))


def read_hub(path: str, split: str, revision: str | None, name: str) -> Iterator[Example]:
    """A hub dataset, streamed when online; offline, from the local cache (a stream would need the network)."""
    import datasets

    def cannot(err: Exception) -> SourceError:  # offline, missing or private datasets all land here
        return SourceError(f"{path}: cannot load the hub dataset ({type(err).__name__}: {err})")

    try:
        dataset = datasets.load_dataset(path, split=split, revision=revision,
                                        streaming=not datasets.config.HF_HUB_OFFLINE)
        rows = iter(dataset)
    except Exception as err:
        raise cannot(err) from None
    row = 0
    while True:
        try:
            item = next(rows, None)
        except Exception as err:  # a stream fails when it reaches the bad shard, or the network drops
            raise cannot(err) from None
        if item is None:
            return
        yield from parse_rows([item], path, name, start=row)
        row += 1
