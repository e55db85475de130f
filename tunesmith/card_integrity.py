"""Is a dataset card true? Its fingerprint recomputed, its split and rejected files re-hashed and re-counted
inside its folder, its stage counts chained from the sources to the splits, and its split rows readable.

Ground floor, below artifacts.py (which re-exports these names): imports only artifact_io, errors and split_files
(the Parquet row form), so that artifacts.py can use it; the card schemas appear here as annotations only.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.artifact_io import file_kind, load_json, open_regular
from tunesmith.errors import UsageError
from tunesmith.split_files import from_record, iter_parquet_records, parquet_row_count

if TYPE_CHECKING:
    from tunesmith.artifacts import DatasetCard, ShardRecord, SplitRecord


class CardError(UsageError):
    """A card that must not be used: its split files changed or its quality gates failed."""


# the chat roles curation writes (curate/record.py ROLES, which lives above this floor; a test keeps them equal)
ROLES = ("system", "user", "assistant", "tool")
# the roles of a preference row's rejected answer (curate/preference.py ANSWER_ROLES)
ANSWER_ROLES = ("assistant", "tool")
# the fields each card task puts in every split row, besides id and messages (curate/record.py Example.to_json)
TASK_FIELDS = {"sft": (), "preference": ("rejected",), "kto": ("label",)}

# top-level config keys that say where a version goes and how it is shown, not what it holds
# where the output goes and how the work is run, which never change what is written
FINGERPRINT_EXCLUDES = ("output_dir", "version", "report", "background_inspectors", "executor", "workers",
                        "batch_size", "ray_address")


def card_fingerprint(config: dict[str, Any], splits: dict[str, SplitRecord]) -> str:
    """sha256 over the split hashes and the resolved curate config (as stored in `card.config`).

    Computable from card.json alone, so every reader can check that the recorded fingerprint still matches.
    """
    payload = {
        "config": {key: value for key, value in config.items() if key not in FINGERPRINT_EXCLUDES},
        "splits": {name: record.sha256 for name, record in sorted(splits.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _unusable(directory: Path, name: str) -> tuple[Path, str | None]:
    """The real path of a file a card names, and why it cannot be read (None when it can).

    The name alone is checked when the card is read; here its real path must stay inside the card folder
    (a symlink may not lead out) and be a regular file, which is checked without opening it (a FIFO blocks).
    """
    root = os.path.realpath(directory)
    real = os.path.realpath(Path(directory) / name)
    if os.path.commonpath([root, real]) != root:
        return Path(real), f"resolves to {real}, outside the card's folder (a symlink?)"
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return Path(real), "is missing"
    if not stat.S_ISREG(mode):
        return Path(real), f"is {file_kind(mode)}, not a regular file"
    return Path(real), None


def _hash_and_count(path: Path, what: str) -> tuple[str, int]:
    """sha256 and line count of a file in one bounded-memory pass."""
    digest, lines, last = hashlib.sha256(), 0, b"\n"
    with open_regular(path, what) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            lines += block.count(b"\n")
            last = block[-1:]
    return digest.hexdigest(), lines + (last != b"\n")  # a last line without its newline still counts


def shards_sha256(shards: list[ShardRecord]) -> str:
    """A sharded split's sha256: over its shards' `sha256sum` lines in order, so every shard's bytes, name and
    place are in the fingerprint."""
    listing = "".join(f"{shard.sha256}  {shard.file}\n" for shard in shards)
    return hashlib.sha256(listing.encode()).hexdigest()


def split_problems(card: DatasetCard, directory: Path) -> list[str]:
    """Split files (each shard) of a card that are missing, not regular files inside its folder, or changed
    (re-hashed and re-counted) since it was written."""
    problems = []
    for name, split in card.splits.items():
        if split.shards is not None:
            problems += _listing_problems(name, split, directory)
        for part in split.parts():
            problem = _part_problem(name, part, directory)
            if problem is not None:
                problems.append(problem)
    return problems


def _listing_problems(name: str, split: SplitRecord, directory: Path) -> list[str]:
    """A sharded split's own record against its shard records (both are on the card)."""
    problems = []
    if shards_sha256(split.shards) != split.sha256:
        problems.append(f"{directory}: split {name!r}: field splits.{name}.sha256 is not the hash of its shards' "
                        "hashes; the card was edited: restore it, or curate the version again")
    if sum(shard.rows for shard in split.shards) != split.rows:
        problems.append(f"{directory}: split {name!r}: the card records {split.rows} rows (field splits.{name}.rows)"
                        f", its shards {sum(s.rows for s in split.shards)}; the card was edited: restore it, or "
                        "curate the version again")
    return problems


def _part_problem(name: str, part: ShardRecord, directory: Path) -> str | None:
    """Why one split file (a shard, or a split's one file) is not what the card records; None when it is."""
    file = Path(directory) / part.file
    real, problem = _unusable(directory, part.file)
    if problem is not None:
        return f"{file}: split {name!r} {problem}"
    sha256, lines = _hash_and_count(real, f"split {name!r}")
    if sha256 != part.sha256:
        return f"{file}: split {name!r} changed since the card was written (sha256 mismatch)"
    try:
        rows = parquet_row_count(real) if is_parquet(part.file) else lines
    except ValueError as err:
        return f"{file}: split {name!r}: {err}"
    if rows != part.rows:
        return (f"{file}: the card records {part.rows} rows (field splits.{name}.rows), the file has {rows}; "
                "the card was edited: restore it, or curate the version again")
    return None


def is_parquet(file: str) -> bool:
    return file.endswith(".parquet")


def card_problems(card: DatasetCard, directory: Path, card_file: Path, rejected_required: bool = True) -> list[str]:
    """Everything that makes a card disagree with itself or its files: see split_problems and record_problems."""
    return split_problems(card, directory) + record_problems(card, directory, card_file, rejected_required)


def record_problems(card: DatasetCard, directory: Path, card_file: Path, rejected_required: bool = True) -> list[str]:
    """The card's records against each other and its rejected files: the fingerprint recomputed from the split
    hashes and config, the stage counts chained from the sources to the splits, the rejected files' rows.

    `rejected_required=False` lets training and eval use a version whose rejected/ rows were deleted.
    """
    problems = _rejected_problems(card, directory, rejected_required)
    recomputed = card_fingerprint(card.config, card.splits)
    if recomputed != card.fingerprint:
        problems.append(f"{card_file}: field fingerprint is {card.fingerprint[:16]}… but the card's split hashes and "
                        f"config give {recomputed[:16]}…; a split or the config was changed after curation: "
                        "restore the version's files, or curate it again")
    return problems + _stage_count_problems(card, card_file)


def _rejected_problems(card: DatasetCard, directory: Path, required: bool) -> list[str]:
    expected: dict[str, int] = {}
    for stage in card.stages:
        if stage.rejected_file is not None:
            expected[stage.rejected_file] = expected.get(stage.rejected_file, 0) + stage.rows_rejected
    problems = []
    for name, rows in expected.items():
        real, problem = _unusable(directory, name)
        if problem == "is missing" and not required:
            continue
        if problem is None:
            counted = _hash_and_count(real, "rejected file")[1]
            problem = None if counted == rows else f"has {counted} rows, but the stages record {rows} rejected"
        if problem is not None:
            problems.append(f"{Path(directory) / name}: rejected file {problem}")
    return problems


def _stage_count_problems(card: DatasetCard, card_file: Path) -> list[str]:
    """Each stage takes in what the one before put out; the first reads the sources, the last fills the splits."""
    flow = [("the sources", "sources.rows", sum(s.rows for s in card.sources))]
    flow += [(f"stage {s.name!r}", f"stages.{i}.rows_out", s.rows_out) for i, s in enumerate(card.stages)]
    problems = []
    for i, stage in enumerate(card.stages):
        what, field, rows = flow[i]
        if stage.rows_in != rows:
            problems.append(f"{card_file}: field stages.{i}.rows_in is {stage.rows_in}, but {what} "
                            f"put out {rows} ({field})")
    split_rows = sum(s.rows for s in card.splits.values())
    what, field, rows = flow[-1]
    if split_rows != rows:
        problems.append(f"{card_file}: the splits record {split_rows} rows (splits.*.rows), but {what} put out "
                        f"{rows} ({field})")
    return problems


def split_rows(directory: Path, split: SplitRecord, name: str, task: str | None = None) -> Iterator[dict]:
    """Every row of a split, shard after shard in order, checked as `iter_split_rows` checks them."""
    for part in split.parts():
        yield from iter_split_rows(Path(directory) / part.file, name, task)


def iter_split_rows(path: Path, split: str, task: str | None = None) -> Iterator[dict]:
    """The rows of a split file (JSONL, or a Parquet shard: the same dicts), each checked for what training and
    eval read (file:line, or file row N, and field if not).

    With the card's `task`, each row must also hold what that task needs (a rejected answer, a label) and
    nothing of another task's, so a card whose task was edited cannot pass its rows off as another kind.
    """
    rows = _parquet_rows(path, split) if is_parquet(str(path)) else _jsonl_rows(path, split)
    for where, row in rows:
        _check_row(row, where)
        if task is not None:
            _task_fields(row, where, task)
        yield row


def _jsonl_rows(path: Path, split: str) -> Iterator[tuple[str, Any]]:
    with open_regular(path, f"split {split!r}") as handle:
        for number, line in enumerate(handle, 1):
            yield f"{path}:{number}", load_json(line, path, number, CardError, "the split file was edited after "
                                                "curation")


def _parquet_rows(path: Path, split: str) -> Iterator[tuple[str, Any]]:
    with open_regular(path, f"split {split!r}"):  # refuses a FIFO or a folder before pyarrow opens it
        pass
    number = 0  # rows read whole: the one that failed is the next
    try:
        for record in iter_parquet_records(path):
            row = from_record(record)
            number += 1
            yield f"{path} row {number}", row
    except ValueError as err:  # not Parquet, other columns, or a JSON column that does not parse
        raise CardError(f"{path} row {number + 1}: {err}; the split file was edited after curation") from None


def _check_row(row: Any, where: str) -> None:
    """A row as curation writes it (see curate/record.py Example.to_json), or CardError naming where and field.

    A forged card can carry rows whose hashes and fingerprint were recomputed, so the hashes alone do not
    prove a row is readable: every field that `train` and `eval` index is checked here.
    """
    if not isinstance(row, dict):
        raise CardError(f"{where}: a row must be a JSON object, not {type(row).__name__}")
    if not isinstance(row.get("id"), str) or not row["id"]:
        said = "missing" if row.get("id") is None else f"{_shown(row['id'])}, not a non-empty string"
        raise CardError(f"{where}: field id: {said}; every split row has the id curation gave it")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        said = "missing" if messages is None else f"{type(messages).__name__}, not a non-empty list"
        raise CardError(f"{where}: field messages: {said}; every split row holds its chat messages")
    for i, message in enumerate(messages):
        problem = _message_problem(message)
        if problem is not None:
            raise CardError(f"{where}: field messages.{i}{problem}")
    _preference_fields(row, where)


def _preference_fields(row: dict, where: str) -> None:
    """A preference row's `rejected` answer (assistant or tool messages) and a KTO row's `label` (a boolean)."""
    if "rejected" in row:
        rejected = row["rejected"]
        if not isinstance(rejected, list) or not rejected:
            raise CardError(f"{where}: field rejected: {_shown(rejected)}, not a non-empty list of messages")
        for i, message in enumerate(rejected):
            problem = _message_problem(message, ANSWER_ROLES)
            if problem is not None:
                raise CardError(f"{where}: field rejected.{i}{problem}")
    if "label" in row and not isinstance(row["label"], bool):
        raise CardError(f"{where}: field label: {_shown(row['label'])}, not true or false")


def _task_fields(row: dict, where: str, task: str) -> None:
    """The fields the card's task puts in every row are there, and no other task's are."""
    wanted = TASK_FIELDS.get(task, ())
    for field in wanted:
        if field not in row:
            raise CardError(f"{where}: field {field}: missing, but the card's task is {task}, whose rows all hold it")
    for field in sorted({f for fields in TASK_FIELDS.values() for f in fields} - set(wanted)):
        if field in row:
            raise CardError(f"{where}: field {field}: present, but the card's task is {task}; the card was edited: "
                            "restore it, or curate the version again")


def _message_problem(message: Any, roles: tuple[str, ...] = ROLES) -> str | None:
    """What is wrong with one chat message, as the rest of the message after its field name (None if fine)."""
    if not isinstance(message, dict):
        return f": {type(message).__name__}, not an object with role and content"
    if message.get("role") not in roles:
        return f".role: {_shown(message.get('role'))}, not one of {', '.join(roles)}"
    if not isinstance(message.get("content"), str):
        return f".content: {_shown(message.get('content'))}, not a string"
    return None


def _shown(value: Any) -> str:
    """A bounded preview of a bad value for a one-line message."""
    if value is None:
        return "missing"
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
