"""The Parquet form of a split row: one fixed schema, written deterministically, read back to the JSONL dicts.

Ground floor (imports nothing of tunesmith): curate/card.py writes shards with it, card_integrity.py reads them.
pyarrow is imported inside the functions, so reading a card's JSON (`card show`) does not pay for it.

A row (curate/record.py Example.to_json) has regular parts, stored as columns that `datasets.load_dataset` shows
as they are (id, messages as a list of structs, source, row, line, group, rejected, label), and irregular parts
stored as JSON text (a message's tool_calls, a row's meta and tools), since their keys and types vary per row.
Absent keys are nulls, so a row comes back with exactly the keys it was written with, in the sorted key order
the JSONL writer uses (chat templates that dump tool calls see the same text from either format).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# rows per row group: the unit a reader streams; cut by count, so the bytes never depend on the batch size
ROW_GROUP_ROWS = 10_000
# fixed writer options: the same rows give byte-identical files (no timestamps are written; created_by names the
# pyarrow version, so a pyarrow upgrade may change the bytes and with them the fingerprint)
WRITER_OPTIONS = {"compression": "zstd", "compression_level": 3, "version": "2.6", "use_dictionary": True,
                  "write_statistics": True, "data_page_version": "1.0"}
MESSAGE_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")  # tool_calls as JSON text
JSON_COLUMNS = ("meta", "tools")

_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def parquet_schema():
    import pyarrow as pa

    message = pa.struct([(field, pa.string()) for field in MESSAGE_FIELDS])
    return pa.schema([
        ("id", pa.string()), ("messages", pa.list_(message)), ("source", pa.string()), ("row", pa.int64()),
        ("line", pa.int64()), ("meta", pa.string()), ("group", pa.string()), ("rejected", pa.list_(message)),
        ("label", pa.bool_()), ("tools", pa.string()),
    ])


def _message_record(message: dict[str, Any]) -> dict[str, Any]:
    record = {field: message.get(field) for field in MESSAGE_FIELDS}
    if record["tool_calls"] is not None:
        record["tool_calls"] = _ENCODER.encode(record["tool_calls"])
    return record


def to_record(row: dict[str, Any]) -> dict[str, Any]:
    """A split row as a Parquet record of `parquet_schema()`."""
    record = {name: row.get(name) for name in ("id", "source", "row", "line", "group", "label")}
    record["messages"] = [_message_record(m) for m in row["messages"]]
    record["rejected"] = [_message_record(m) for m in row["rejected"]] if "rejected" in row else None
    for name in JSON_COLUMNS:
        record[name] = _ENCODER.encode(row[name]) if name in row else None
    return record


def _loads(text: str, column: str) -> Any:
    """A JSON column's value; ValueError (never RecursionError) for text a forged shard holds there."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"column {column}: JSON nested too deeply to parse") from None


def _message_row(record: dict[str, Any]) -> dict[str, Any]:
    message = {key: value for key, value in sorted(record.items()) if value is not None}
    if "tool_calls" in message:
        message["tool_calls"] = _loads(message["tool_calls"], "tool_calls")
    return message


def from_record(record: dict[str, Any]) -> dict[str, Any]:
    """The row dict the JSONL split file holds for the same example: same keys, values and key order."""
    row = {}
    for key, value in sorted(record.items()):
        if value is None:
            continue
        if key in ("messages", "rejected"):
            value = [_message_row(m) for m in value]
        elif key in JSON_COLUMNS:
            value = _loads(value, key)
        row[key] = value
    return row


def write_table(writer, records: list[dict[str, Any]]) -> None:
    """Append `records` to an open pyarrow ParquetWriter as one row group."""
    import pyarrow as pa

    writer.write_table(pa.Table.from_pylist(records, schema=parquet_schema()), row_group_size=len(records))


def open_writer(path: Path):
    import pyarrow.parquet as pq

    return pq.ParquetWriter(path, parquet_schema(), **WRITER_OPTIONS)


def parquet_row_count(path: Path) -> int:
    """Rows recorded in a Parquet file's footer (reading the footer only); ValueError for a file that is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"not a readable Parquet file ({str(err).splitlines()[0]})") from None


def iter_parquet_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a Parquet shard, one row group at a time (memory set by the row group, not the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
        if not handle.schema_arrow.equals(parquet_schema()):
            raise ValueError("its columns are not those of a tunesmith split shard")
        for group in range(handle.num_row_groups):
            yield from handle.read_row_group(group).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"not a readable Parquet file ({str(err).splitlines()[0]})") from None
