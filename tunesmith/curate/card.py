"""Write a dataset version: split files, fingerprint, quality gates, README dataset card and card.json (last).

A version is assembled in a temporary folder and renamed into place, so `<name>/<version>/card.json`
exists only for complete versions. The same inputs and config give the same fingerprint and reuse that version
(after reuse.py has checked it against the fresh build).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from tunesmith.artifact_io import sha256_file
from tunesmith.artifacts import (
    CARD_FILE,
    GateRecord,
    ShardRecord,
    SplitRecord,
    StageRecord,
    card_fingerprint,
    read_card,
)
from tunesmith.card_integrity import shards_sha256
from tunesmith.curate.config import DEFAULT_SHARD_ROWS, CurateConfig
from tunesmith.curate.record import Example
from tunesmith.split_files import ROW_GROUP_ROWS, open_writer, to_record, write_table

# names in a dataset folder that are never versions: work folders and the lock (hidden) and kept gate failures
NOT_VERSIONS = (".", "failed-")

# one encoder for all rows: json.dumps with options builds a new encoder on every call
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


class SplitWriter:
    """Writes survivors as they stream in, per split (`all` when nothing assigned splits); within a split the rows
    keep their order, and Parquet shards and row groups are cut by row count, so the files never depend on the
    batch size or the workers.

    `jsonl`: one `<split>.jsonl` per split, as cards always had. `parquet`: shards of `shard_rows` rows named
    `<split>-00000-of-00003.parquet` (written as `<split>-00000.parquet`, renamed at close once the count is
    known). Callers pass the config's `split_format`; jsonl is the default for those that do not.
    """

    def __init__(self, directory: Path, split_format: str = "jsonl", shard_rows: int = DEFAULT_SHARD_ROWS):
        self.directory, self.split_format, self.shard_rows = Path(directory), split_format, shard_rows
        self.handles: dict[str, object] = {}
        self.rows: dict[str, int] = defaultdict(int)
        self.shards: dict[str, list[ShardRecord]] = defaultdict(list)  # closed shards, under their first names
        self.pending: dict[str, list[dict]] = defaultdict(list)  # Parquet records of the row group being filled

    def write(self, batch: list[Example]) -> None:
        if self.split_format == "jsonl":
            self._write_jsonl(batch)
            return
        for example in batch:
            self._add_record(example.split or "all", to_record(example.to_json()))

    def _write_jsonl(self, batch: list[Example]) -> None:
        for example in batch:
            name = example.split or "all"
            handle = self.handles.get(name)
            if handle is None:
                handle = self.handles[name] = open(self.directory / f"{name}.jsonl", "w", encoding="utf-8")
            handle.write(_ROW_ENCODER.encode(example.to_json()) + "\n")
            self.rows[name] += 1

    def _add_record(self, name: str, record: dict) -> None:
        pending = self.pending[name]
        pending.append(record)
        self.rows[name] += 1
        in_shard = (self.rows[name] - 1) % self.shard_rows + 1
        if in_shard == self.shard_rows:
            self._flush(name, end_shard=True)
        elif len(pending) == ROW_GROUP_ROWS:
            self._flush(name, end_shard=False)

    def _flush(self, name: str, end_shard: bool) -> None:
        """Write the pending records as one row group of the open shard (opening it first), closing it at its end."""
        if self.pending[name]:
            if name not in self.handles:
                self.handles[name] = open_writer(self._shard_path(name, len(self.shards[name])))
            write_table(self.handles[name], self.pending[name])
            self.pending[name] = []
        if end_shard and name in self.handles:
            self.handles.pop(name).close()
            path = self._shard_path(name, len(self.shards[name]))
            rows = self.rows[name] - sum(shard.rows for shard in self.shards[name])
            self.shards[name].append(ShardRecord(file=path.name, rows=rows, sha256=sha256_file(path)))

    def _shard_path(self, name: str, index: int) -> Path:
        return self.directory / f"{name}-{index:05d}.parquet"

    def close(self) -> dict[str, SplitRecord]:
        if self.split_format == "jsonl":
            return self._close_jsonl()
        for name in list(self.pending):
            self._flush(name, end_shard=True)
        return {name: self._sharded_record(name) for name in sorted(self.shards)}

    def _sharded_record(self, name: str) -> SplitRecord:
        """Rename the split's shards to their `-of-` names (the bytes, and so the hashes, stay)."""
        count, shards = len(self.shards[name]), []
        for index, shard in enumerate(self.shards[name]):
            final = f"{name}-{index:05d}-of-{count:05d}.parquet"
            os.replace(self.directory / shard.file, self.directory / final)
            shards.append(ShardRecord(file=final, rows=shard.rows, sha256=shard.sha256))
        return SplitRecord(rows=self.rows[name], sha256=shards_sha256(shards), shards=shards)

    def _close_jsonl(self) -> dict[str, SplitRecord]:
        records = {}
        for name in sorted(self.handles):
            self.handles[name].close()
            path = self.directory / f"{name}.jsonl"
            records[name] = SplitRecord(file=path.name, rows=self.rows[name], sha256=sha256_file(path))
        self.handles = {}
        return records

    def abort(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles = {}


def write_splits(examples: list[Example], directory: Path, split_format: str = "jsonl",
                 shard_rows: int = DEFAULT_SHARD_ROWS) -> dict[str, SplitRecord]:
    """The split files of `examples` (all rows in `all` when nothing assigned splits); see SplitWriter."""
    writer = SplitWriter(directory, split_format, shard_rows)
    try:
        writer.write(examples)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def fingerprint(config: CurateConfig, splits: dict[str, SplitRecord]) -> str:
    """sha256 over the split contents and the config (without where the output goes); computed by the ground
    floor from the config as the card stores it, so readers of card.json can recompute it."""
    return card_fingerprint(config.model_dump(mode="json"), splits)


def check_gates(config: CurateConfig, stages: list[StageRecord], splits: dict[str, SplitRecord]) -> list[GateRecord]:
    """Every set gate, with its value and which rows it measures (train by default, where the gate is about
    what training gets)."""
    gates, by_name = config.gates, {s.name: s for s in stages}
    rows_in = stages[0].rows_in if stages else 0
    train = "train split" if "train" in splits else "all rows (no train split)"
    measured: dict[str, tuple[float | None, float, str]] = {}
    train_rows = splits["train"].rows if "train" in splits else sum(s.rows for s in splits.values())
    measured["min_rows"] = (gates.min_rows, train_rows, train)
    dupes = sum(by_name[n].rows_rejected for n in ("exact_dedup", "near_dedup") if n in by_name)
    measured["max_duplicate_rate"] = (gates.max_duplicate_rate, dupes / rows_in if rows_in else 0.0,
                                      "all rows read: exact and near duplicates per input row")
    if "pii" in by_name:
        measured["max_pii_rows"] = (gates.max_pii_rows, by_name["pii"].findings.get("rows_with_pii", 0),
                                    "all rows reaching pii (before the split)")
    if "contamination" in by_name:
        found = by_name["contamination"].findings
        measured["max_contamination_rows"] = (gates.max_contamination_rows, found.get("contaminated_rows", 0),
                                              "all splits: held-out rows overlapping train, train rows overlapping "
                                              "eval files")
        measured["max_contamination_rate"] = (gates.max_contamination_rate, found["contamination_rate"],
                                              "worst share of an evaluation set (held-out rows, or an eval file's "
                                              "rows) overlapping train, after the stage's action")
    if "token_stats" in by_name:
        measured["min_trainable_tokens"] = (gates.min_trainable_tokens, *_train_tokens(stages, splits))
    rejected = sum(s.rows_rejected for s in stages)
    measured["max_rejected_rate"] = (gates.max_rejected_rate, rejected / rows_in if rows_in else 0.0,
                                     "all rows read: rejected by any stage per input row")
    records = []
    for name, (limit, value, measures) in measured.items():
        if limit is None:
            continue
        passed = value >= limit if name.startswith("min_") else value <= limit
        records.append(GateRecord(name=name, limit=float(limit), value=round(float(value), 6), passed=passed,
                                  measures=measures))
    return records


def _train_tokens(stages: list[StageRecord], splits: dict[str, SplitRecord]) -> tuple[float, str]:
    """Trainable tokens of the train split, and what that number covers.

    token_stats runs before the split, so it leaves per-row counts that `split` (and `contamination`, after its
    drops) sum per split; the last stage that did is the closest to the written files.
    """
    counted = [i for i, s in enumerate(stages) if "trainable_tokens_by_split" in s.findings]
    if not counted:  # no split stage after token_stats: its own total is all the rows it saw
        total = next(s for s in stages if s.name == "token_stats").findings["trainable_tokens"]["total"]
        return total, "all rows (no train split)" if "train" not in splits else "all splits (token_stats ran after the split)"
    last = stages[counted[-1]]
    by_split = last.findings["trainable_tokens_by_split"]
    if "train" in splits:
        value, where = by_split.get("train", 0), "train split"
    else:
        value, where = sum(by_split.values()), "all rows (no train split)"
    if any(s.rows_rejected for s in stages[counted[-1] + 1 :]):
        where += f" as counted by {last.name} (later stages removed rows, so train may hold fewer)"
    return value, where


def existing_version(dataset_dir: Path, fingerprint_: str) -> Path | None:
    """The complete version folder with this fingerprint, if one exists.

    Only real folders made here count: work folders (`.tmp-*`, any hidden name), kept failures (`failed-*`) and
    symlinked versions are skipped, since reusing one would hand out files this dataset folder does not own.
    """
    if not Path(dataset_dir).is_dir():  # a read-only curate does not make the dataset folder
        return None
    for folder in sorted(Path(dataset_dir).iterdir()):
        if folder.name.startswith(NOT_VERSIONS) or folder.is_symlink() or not folder.is_dir():
            continue
        card_path = folder / CARD_FILE
        if card_path.is_symlink() or not card_path.is_file():
            continue
        try:
            if read_card(card_path).fingerprint == fingerprint_:
                return folder
        except (ValueError, OSError):
            continue
    return None


def next_version(dataset_dir: Path) -> str:
    numbers = [int(p.name[1:]) for p in dataset_dir.glob("v*") if p.name[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"
