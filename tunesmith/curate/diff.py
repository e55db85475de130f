"""`tunesmith card diff|validate`: compare two dataset versions; re-check a card against its files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunesmith.artifacts import CARD_FILE, DatasetCard, read_card, split_problems


def card_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def verify_card(path: Path) -> list[str]:
    """Problems with a card: schema errors, missing split files, hashes that no longer match."""
    try:
        card = read_card(path)
    except (ValueError, FileNotFoundError) as err:
        return [str(err)]
    failed = [f"{path}: quality gate {g.name} failed ({g.value:g} against a limit of {g.limit:g}); "
              "`train` and `eval` refuse this card" for g in card.gates if not g.passed]
    return split_problems(card, card_dir(path)) + failed


def _row_hashes(card: DatasetCard, directory: Path) -> dict[str, str]:
    """Content hash of every row (its messages) -> split name."""
    rows = {}
    for name, split in card.splits.items():
        with open(directory / split.file, encoding="utf-8") as handle:
            for line in handle:
                messages = json.loads(line)["messages"]
                rows[hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()] = name
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
    }


def format_diff(diff: dict) -> str:
    lines = [f"A: {diff['a']}", f"B: {diff['b']}"]
    if diff["same_fingerprint"]:
        lines.append("identical fingerprints: same data and config")
    lines.append(f"rows added: {diff['rows_added']}  removed: {diff['rows_removed']}  "
                 f"moved between splits: {diff['rows_changed_split']}")
    lines.append(f"config changed: {'yes' if diff['config_changed'] else 'no'}")
    for key, (old, new) in diff["stats"].items():
        numbers = isinstance(old, (int, float)) and isinstance(new, (int, float))
        delta = f" ({new - old:+.4g})" if numbers else ""
        lines.append(f"  {key}: {_show(old)} -> {_show(new)}{delta}")
    return "\n".join(lines)


def _show(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


__all__ = ["CARD_FILE", "diff_cards", "format_diff", "verify_card"]
