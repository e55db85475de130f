"""Write a dataset version: split files, fingerprint, quality gates, README dataset card and card.json (last).

A version is assembled in a temporary folder and renamed into place, so `<name>/<version>/card.json`
exists only for complete versions. The same inputs and config give the same fingerprint and reuse that version
(after reuse.py has checked it against the fresh build).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from tunesmith.artifact_io import sha256_file
from tunesmith.artifacts import (
    CARD_FILE,
    GateRecord,
    SplitRecord,
    StageRecord,
    card_fingerprint,
    read_card,
)
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.record import Example

# names in a dataset folder that are never versions: work folders and the lock (hidden) and kept gate failures
NOT_VERSIONS = (".", "failed-")

# one encoder for all rows: json.dumps with options builds a new encoder on every call
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def write_splits(examples: list[Example], directory: Path) -> dict[str, SplitRecord]:
    """One JSONL file per split (all rows in `all.jsonl` when nothing assigned splits)."""
    by_split: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_split[example.split or "all"].append(example)
    records = {}
    for name in sorted(by_split):
        path = directory / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for example in by_split[name]:
                handle.write(_ROW_ENCODER.encode(example.to_json()) + "\n")
        records[name] = SplitRecord(file=path.name, rows=len(by_split[name]), sha256=sha256_file(path))
    return records


def fingerprint(config: CurateConfig, splits: dict[str, SplitRecord]) -> str:
    """sha256 over the split contents and the config (without where the output goes); computed by the ground
    floor from the config as the card stores it, so readers of card.json can recompute it."""
    return card_fingerprint(config.model_dump(mode="json"), splits)


def check_gates(config: CurateConfig, stages: list[StageRecord], splits: dict[str, SplitRecord]) -> list[GateRecord]:
    gates, by_name = config.gates, {s.name: s for s in stages}
    rows_in = stages[0].rows_in if stages else 0
    measured: dict[str, tuple[float | None, float]] = {}
    train_rows = splits["train"].rows if "train" in splits else sum(s.rows for s in splits.values())
    measured["min_rows"] = (gates.min_rows, train_rows)
    dupes = sum(by_name[n].rows_rejected for n in ("exact_dedup", "near_dedup") if n in by_name)
    measured["max_duplicate_rate"] = (gates.max_duplicate_rate, dupes / rows_in if rows_in else 0.0)
    if "pii" in by_name:
        measured["max_pii_rows"] = (gates.max_pii_rows, by_name["pii"].findings.get("rows_with_pii", 0))
    if "contamination" in by_name:
        value = by_name["contamination"].findings.get("contaminated_rows", 0)
        measured["max_contamination_rows"] = (gates.max_contamination_rows, value)
    if "token_stats" in by_name:
        value = by_name["token_stats"].findings.get("trainable_tokens", {}).get("total", 0)
        measured["min_trainable_tokens"] = (gates.min_trainable_tokens, value)
    rejected = sum(s.rows_rejected for s in stages)
    measured["max_rejected_rate"] = (gates.max_rejected_rate, rejected / rows_in if rows_in else 0.0)
    records = []
    for name, (limit, value) in measured.items():
        if limit is None:
            continue
        passed = value >= limit if name.startswith("min_") else value <= limit
        records.append(GateRecord(name=name, limit=float(limit), value=round(float(value), 6), passed=passed))
    return records


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
