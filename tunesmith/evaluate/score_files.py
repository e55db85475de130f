"""Score a predictions file against one or more reference files: the library side of `tunesmith score`.

Plain text files hold one example per line (split on "\\n" only, so a stray "\\r" inside an answer does not
shift the lines; a CRLF ending is dropped). `.jsonl` files hold one JSON value per line: a string, or an
object with a `prediction`/`reference` field (or `text`), which lets an answer span several lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.table import Table

from tunesmith.errors import UsageError
from tunesmith.evaluate.metrics import MetricValue, corpus_scores, parse_metric_names


def read_texts(path: Path, field: str) -> list[str]:
    """One text per example from `path`; `field` ("prediction" or "reference") is looked up in JSONL objects."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    lines = [line.removesuffix("\r") for line in lines]
    if Path(path).suffix.lower() == ".jsonl":
        return [_json_text(line, field, path, number) for number, line in enumerate(lines, start=1)]
    return lines


def _json_text(line: str, field: str, path: Path, number: int) -> str:
    where = f"{path}:{number}"
    if not line.strip():
        raise UsageError(f"{where}: empty line; every line of a .jsonl file must hold one example")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if isinstance(row, str):
        return row
    if not isinstance(row, dict):
        raise UsageError(
            f"{where}: expected a JSON string or an object with a {field!r} or 'text' field, "
            f"got a JSON {type(row).__name__}"
        )
    key = field if field in row else "text" if "text" in row else None
    if key is None:
        raise UsageError(f"{where}: no {field!r} or 'text' field (fields: {', '.join(map(str, row)) or 'none'})")
    if not isinstance(row[key], str):
        raise UsageError(f"{where}: field {key!r} is a JSON {type(row[key]).__name__}, not a string")
    return row[key]


def score_files(
    predictions: Path, references: Sequence[Path], metrics: str | Sequence[str] | None = None
) -> dict[str, MetricValue]:
    """Corpus scores of the predictions file against the reference files (line i of each is a reference for i)."""
    names = parse_metric_names(metrics)  # an unknown name fails before any file is read
    if not references:
        raise UsageError("give at least one references file")
    hyps = read_texts(predictions, "prediction")
    if not hyps:
        raise UsageError(f"{predictions} holds no examples")
    streams = []
    for path in references:
        refs = read_texts(path, "reference")
        if len(refs) != len(hyps):
            raise UsageError(
                f"{predictions} has {len(hyps)} lines but {path} has {len(refs)}; they must match line for line"
            )
        streams.append(refs)
    return corpus_scores(hyps, [list(example) for example in zip(*streams)], names)


def score_table(values: Mapping[str, MetricValue], title: str = "scores") -> Table:
    """A rich table with each value printed to 2 decimals, as sacrebleu prints its scores."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("version", overflow="fold")
    for name, value in values.items():
        table.add_row(name, f"{value.value:.2f}", value.version)
    return table
