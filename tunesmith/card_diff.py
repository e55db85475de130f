"""`tunesmith card diff|validate`: compare two dataset versions; re-check a card against its files.

It sits beside artifacts.py rather than in curate/ so that `card show|diff|validate` start without importing the
curate stages (numpy, scipy, pyarrow): reading a card needs none of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunesmith.artifacts import (
    CARD_FILE,
    CardError,
    DatasetCard,
    card_location,
    read_card,
    record_problems,
    split_problems,
    split_rows,
)
from tunesmith.errors import TunesmithError


def card_dir(path: Path) -> Path:
    return card_location(path)[0]


def verify_card(path: Path) -> list[str]:
    """Problems with a card: schema errors, split and rejected files missing, outside its folder, changed or
    miscounted, a fingerprint its hashes and config do not give, stage counts that do not add up, unreadable
    rows, failed gates. Empty when `train` and `eval` will accept the card."""
    try:
        card = read_card(path)
    except TunesmithError as err:
        return [str(err)]
    return card_damage(card, path) + [f"{path}: {line}; `train` and `eval` refuse this card"
                                      for line in failed_gates(card)]


def card_damage(card: DatasetCard, path: Path) -> list[str]:
    """How a card that reads disagrees with its files (missing, changed, miscounted); empty when it is intact."""
    directory, card_file = card_location(path)
    problems = split_problems(card, directory)
    if not problems:  # rows are read only from files that are inside the folder and match the card
        problems += _row_problems(card, directory)
    return problems + record_problems(card, directory, card_file)


def failed_gates(card: DatasetCard) -> list[str]:
    """One line per failed quality gate: the card's own verdict on its data, not damage."""
    return [f"quality gate {g.name} failed ({g.value:g} against a limit of {g.limit:g})"
            for g in card.gates if not g.passed]


def _row_problems(card: DatasetCard, directory: Path) -> list[str]:
    problems = []
    for name, split in card.splits.items():
        try:
            for _ in split_rows(directory, split, name):
                pass
        except CardError as err:
            problems.append(str(err))
    return problems


ROW_CONTENT = ("messages", "rejected", "label", "tools")  # what a row trains on; a change in any is a changed row


def _row_hashes(card: DatasetCard, directory: Path) -> dict[str, str]:
    """Content hash of every row (its turns, a preference row's rejected answer, a KTO label, tools) -> split."""
    rows = {}
    for name, split in card.splits.items():
        for row in split_rows(directory, split, name):
            content = {key: row[key] for key in ROW_CONTENT if row.get(key) is not None}
            rows[hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()] = name
    return rows


def _stats(card: DatasetCard) -> dict[str, float]:
    stats: dict[str, float] = {f"rows.{k}": v.rows for k, v in card.splits.items()}
    for stage in card.stages:
        stats[f"{stage.name}.rows_rejected"] = stage.rows_rejected
    findings = {s.name: s.findings for s in card.stages}
    for key in ("mean", "p50", "p99", "max"):
        value = findings.get("token_stats", {}).get("length", {}).get(key)
        if value is not None:
            stats[f"tokens.{key}"] = value
    for stage, key in [("pii", "rows_with_pii"), ("contamination", "contaminated_rows"),
                       ("near_dedup", "num_clusters"), ("exact_dedup", "duplicates")]:
        if key in findings.get(stage, {}):
            stats[f"{stage}.{key}"] = findings[stage][key]
    return stats


def diff_cards(a: Path, b: Path) -> dict:
    """What changed from card A to card B; both are verified first, since a damaged card's fingerprint and
    files would disagree (e.g. "identical fingerprints" next to removed rows)."""
    for label, path in (("A", a), ("B", b)):
        problems = verify_card(path)
        if problems:
            raise CardError(f"card {label} ({path}) is damaged, so it cannot be compared: " + "\n  ".join(problems)
                            + "\n  run `tunesmith card validate` on it for the details")
    card_a, card_b = read_card(a), read_card(b)
    rows_a, rows_b = _row_hashes(card_a, card_dir(a)), _row_hashes(card_b, card_dir(b))
    stats_a, stats_b = _stats(card_a), _stats(card_b)
    moved = {k: (stats_a.get(k), stats_b.get(k)) for k in sorted({*stats_a, *stats_b})
             if stats_a.get(k) != stats_b.get(k)}
    return {
        "a": f"{card_a.name} {card_a.version} ({card_a.fingerprint[:12]})",
        "b": f"{card_b.name} {card_b.version} ({card_b.fingerprint[:12]})",
        "same_fingerprint": card_a.fingerprint == card_b.fingerprint,
        "rows_added": len(rows_b.keys() - rows_a.keys()),
        "rows_removed": len(rows_a.keys() - rows_b.keys()),
        "rows_changed_split": sum(1 for h in rows_a.keys() & rows_b.keys() if rows_a[h] != rows_b[h]),
        "stats": moved,
        "config_changed": card_a.config != card_b.config,
        "config_changes": config_changes(card_a.config, card_b.config),
    }


def config_changes(old, new, path: str = "") -> list[tuple[str, object, object]]:
    """Every config value that differs, as (dotted path, old, new). A key only one side has is MISSING on the other.

    Stage lists are compared by stage name, in the override form the command line takes (`stages.near_dedup.
    threshold`, 0.8, 0.7), plus a `stages (order)` change when the same stages run in another order; other lists,
    and stage lists naming one stage twice, are compared item by item (`sources[0].path`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in [*old, *(k for k in new if k not in old)]
                for change in config_changes(old.get(key, MISSING), new.get(key, MISSING),
                                             f"{path}.{key}" if path else str(key))]
    named_old, named_new = _by_stage(old), _by_stage(new)
    if named_old is not None and named_new is not None:
        common_old = [name for name in named_old if name in named_new]
        common_new = [name for name in named_new if name in named_old]
        order = [] if common_old == common_new else [(f"{path} (order)", common_old, common_new)]
        return order + config_changes(named_old, named_new, path)
    if isinstance(old, list) and isinstance(new, list):
        return [change for i in range(max(len(old), len(new)))
                for change in config_changes(old[i] if i < len(old) else MISSING,
                                             new[i] if i < len(new) else MISSING, f"{path}[{i}]")]
    return [] if old == new else [(path, old, new)]


def _by_stage(value) -> dict | None:
    """A list of `{stage: name, ...}` entries as {name: entry}; None for any other value or a name used twice."""
    if not isinstance(value, list) or not all(isinstance(e, dict) and isinstance(e.get("stage"), str) for e in value):
        return None
    named = {entry["stage"]: entry for entry in value}
    return named if len(named) == len(value) else None


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING = _Missing()


def format_diff(diff: dict) -> str:
    lines = [f"A: {diff['a']}", f"B: {diff['b']}"]
    changed = diff["rows_added"] or diff["rows_removed"] or diff["rows_changed_split"] or diff["config_changed"]
    if diff["same_fingerprint"] and not changed:
        lines.append("identical fingerprints: same data and config")
    elif diff["same_fingerprint"]:  # verified cards cannot get here; say so rather than print both claims
        lines.append("the fingerprints are equal but the contents differ: one of the cards is damaged")
    lines.append(f"rows added: {diff['rows_added']}  removed: {diff['rows_removed']}  "
                 f"moved between splits: {diff['rows_changed_split']}")
    lines.append(f"config changed: {'yes' if diff['config_changed'] else 'no'}")
    for key, old, new in diff.get("config_changes", []):
        lines.append(f"  {key}: {_value(old)} -> {_value(new)}")
    lines.append(f"statistics changed: {'yes' if diff['stats'] else 'no'}")
    for key, (old, new) in diff["stats"].items():
        numbers = isinstance(old, (int, float)) and isinstance(new, (int, float))
        delta = f" ({new - old:+.4g})" if numbers else ""
        lines.append(f"  {key}: {_show(old)} -> {_show(new)}{delta}")
    return "\n".join(lines)


def _value(value) -> str:
    """A config value on one line: JSON for data (strings quoted), clipped so a long list stays readable."""
    text = repr(value) if value is MISSING else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _show(value) -> str:
    if value is None:  # a statistic only one card has (a split the other has not)
        return repr(MISSING)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


__all__ = ["CARD_FILE", "card_damage", "card_dir", "config_changes", "diff_cards", "failed_gates", "format_diff",
           "verify_card"]
