"""One sentence on whether curated data is fit to train on, from what the card records (`fitness_verdict`).

`curate` and `audit` print it as their last line and store it on the card; an unfit verdict exits 3, like a failed
gate. Unfit: no usable row remains, more than `gates.max_rejected_rate` of the input was rejected, or a gate failed.
It reads only card records, so it lives outside curate/: `card show` of an older card computes it without
importing the curate stages.
"""

from __future__ import annotations

from typing import Any

from tunesmith.config import readable

SMALL_DATA = 100  # below this many training rows, a few-shot prompt often does as well as a fine-tune
TOP_REASONS = 3


def fitness_verdict(stages: list, splits: dict, gates: list, max_rejected_rate: float | None) -> dict[str, Any]:
    """The verdict as JSON for the card: `fit`, `sentence` and the numbers the sentence is made of."""
    input_rows = stages[0].rows_in if stages else 0
    rejected = sum(s.rows_rejected for s in stages)
    share = rejected / input_rows if input_rows else 0.0
    in_train = "train" in splits
    train_rows = splits["train"].rows if in_train else sum(s.rows for s in splits.values())
    reasons = _top_reasons(stages)
    warnings = sum(len(w) for s in stages if isinstance(w := s.findings.get("warnings"), list))
    failed = [g.name for g in gates if not g.passed]
    verdict = {
        "fit": bool(train_rows) and not failed and (max_rejected_rate is None or share <= max_rejected_rate),
        "input_rows": input_rows,
        "usable_rows": train_rows,
        "usable_split": "train" if in_train else "all",
        "rejected_rows": rejected,
        "rejected_share": round(share, 4),
        "max_rejected_rate": max_rejected_rate,
        "top_reasons": [[reason, count] for reason, count in reasons],
        "warnings": warnings,
        "failed_gates": failed,
        "small": 0 < train_rows < SMALL_DATA,
    }
    return verdict | {"sentence": _sentence(verdict)}


def _top_reasons(stages: list) -> list[tuple[str, int]]:
    """The commonest rejection reasons over all stages, as `stage reason` with its row count."""
    counts = [
        (f"{s.name} {reason}", int(n))
        for s in stages
        for reason, n in (s.findings.get("rejected_by_reason") or {}).items()
        if isinstance(n, (int, float))
    ]
    return sorted(counts, key=lambda item: (-item[1], item[0]))[:TOP_REASONS]


def _rejected_part(v: dict[str, Any]) -> str:
    part = f"{readable(v['rejected_rows'])} of {readable(v['input_rows'])} input rows rejected ({v['rejected_share']:.0%})"
    if v["top_reasons"]:
        part += ": " + ", ".join(f"{reason} {readable(n)}" for reason, n in v["top_reasons"])
    return part


def _sentence(v: dict[str, Any]) -> str:
    rows = f"{readable(v['usable_rows'])} {'rows in train' if v['usable_split'] == 'train' else 'usable rows'}"
    read = f"; read the {readable(v['warnings'])} warning(s) first" if v["warnings"] else ""
    if not v["usable_rows"]:
        return (f"Not fit to train on: no usable row remains ({_rejected_part(v)}); "
                "fix the input or its --format/--columns and look at rejected/")
    limit = v["max_rejected_rate"]
    if limit is not None and v["rejected_share"] > limit:
        return (f"Not fit to train on: {_rejected_part(v)}, more than the {limit:.0%} that gates.max_rejected_rate "
                f"allows; {rows} remain. Look at rejected/ before training")
    if v["failed_gates"]:
        return (f"Not fit to train on: quality gate(s) {', '.join(v['failed_gates'])} failed; "
                f"{rows}, {_rejected_part(v)}")
    if v["small"]:
        return (f"Fit to train on, but small: {rows} ({_rejected_part(v)}); "
                f"with fewer than ~{SMALL_DATA} rows, prompting with a few examples may serve better{read}")
    return f"Fit to train on: {rows} ({_rejected_part(v)}){read}"
