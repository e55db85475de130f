"""The mergeable accumulator of `token_stats` and its exact summaries.

Token lengths and trainable counts take a few thousand distinct values however many rows there are, so the tally
keeps a Counter of each rather than one number per row; min, mean, percentiles and the histogram are computed from
the Counters with the same arithmetic numpy uses on the full array, so they equal what the in-memory stage wrote.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tunesmith.curate.token_count import Counts

MAX_IDS = 20  # example ids kept per finding


def summary(counter: Counter) -> dict[str, float]:
    """min, mean, p50/p90/p99 and max of the values counted in `counter`, equal to the array's numpy summary."""
    if not counter:
        return {}
    values, cum = _sorted(counter)
    total = sum(value * count for value, count in counter.items())
    n = int(cum[-1])
    pct = _percentiles(values, cum, [50, 90, 99])
    # numpy's int64 mean sums in float64, exact below 2**53, then divides once: the same as float(total) / n
    return {"min": int(values[0]), "mean": round(float(total) / n, 1), "p50": float(pct[0]),
            "p90": float(pct[1]), "p99": float(pct[2]), "max": int(values[-1])}


def histogram(counter: Counter, bins: int) -> dict[str, list]:
    """`np.histogram(values, bins)` of the counted values: the edges depend only on min and max, and each
    distinct value falls in one bin, so weighting the distinct values by their counts gives the same counts."""
    if not counter:
        return {"edges": [0.0], "counts": []}
    values, _ = _sorted(counter)
    weights = np.array([counter[int(v)] for v in values], dtype=np.float64)
    hist, edges = np.histogram(values, bins=bins, weights=weights)
    return {"edges": [round(float(e), 1) for e in edges], "counts": hist.astype(int).tolist()}


def _sorted(counter: Counter) -> tuple[np.ndarray, np.ndarray]:
    values = np.array(sorted(counter), dtype=np.int64)
    return values, np.cumsum([counter[int(v)] for v in values], dtype=np.int64)


def _percentiles(values: np.ndarray, cum: np.ndarray, qs: list[float]) -> np.ndarray:
    """numpy's default ("linear") percentile over the array the counts stand for: the same virtual index, the
    same two order statistics and the same two-sided interpolation (numpy's `_lerp`)."""
    n = int(cum[-1])
    virtual = (n - 1) * np.true_divide(np.asarray(qs), 100)
    previous = np.floor(virtual)
    above = virtual >= n - 1  # numpy takes the last value twice there
    low = np.where(above, n - 1, previous).astype(np.int64)
    high = np.where(above, n - 1, previous + 1).astype(np.int64)
    gamma = virtual - np.where(above, -1, previous)
    a = values[np.searchsorted(cum, low, side="right")]  # the value at sorted position `low`
    b = values[np.searchsorted(cum, high, side="right")]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def _first(ids: list[str], more: list[str]) -> list[str]:
    return (ids + more)[:MAX_IDS] if len(ids) < MAX_IDS else ids


@dataclass
class Side:
    """Lengths and trainable tokens of one kind of conversation (the rows, or preference rows' rejected answers)."""

    rows: int = 0
    lengths: Counter = field(default_factory=Counter)
    trainable: Counter = field(default_factory=Counter)
    trainable_total: int = 0
    truncated: int = 0
    cut: int = 0

    def add(self, counts: Counts, limit: int) -> None:
        self.rows += len(counts.lengths)
        self.lengths.update(counts.lengths.tolist())
        self.trainable.update(counts.trainable.tolist())
        self.trainable_total += int(counts.trainable.sum())
        self.truncated += int((counts.lengths > limit).sum())
        self.cut += int((counts.answer_end > limit).sum())

    def merge(self, other: Side) -> None:
        self.rows += other.rows
        self.lengths.update(other.lengths)
        self.trainable.update(other.trainable)
        self.trainable_total += other.trainable_total
        self.truncated += other.truncated
        self.cut += other.cut


@dataclass
class TokenTally:
    """Everything `token_stats` reports, for the rows seen so far; `merge` appends a later tally."""

    chosen: Side = field(default_factory=Side)
    rejected: Side = field(default_factory=Side)  # preference rows' rejected answers
    truncated_ids: list[str] = field(default_factory=list)
    cut_rows: int = 0  # rows with either answer cut
    cut_ids: list[str] = field(default_factory=list)
    zero_rows: int = 0
    zero_ids: list[str] = field(default_factory=list)
    tool_rows: int = 0
    # conversations counted from chunks, by full encoding (not eligible), both ways (verified), and verified
    # ones whose two counts differed
    eligible: int = 0
    ineligible: int = 0
    verified: int = 0
    wrong: int = 0

    def add_ids(self, ids: list[str], truncated, cut, zero) -> None:
        """Ids of this batch's truncated, cut and zero-trainable rows (masks in the batch's order)."""
        self.cut_rows += int(cut.sum())
        self.zero_rows += int(zero.sum())
        for mine, mask in ((self.truncated_ids, truncated), (self.cut_ids, cut), (self.zero_ids, zero)):
            if len(mine) < MAX_IDS:
                mine.extend(ids[i] for i in np.flatnonzero(mask)[: MAX_IDS - len(mine)])

    def merge(self, other: TokenTally) -> TokenTally:
        self.chosen.merge(other.chosen)
        self.rejected.merge(other.rejected)
        self.truncated_ids = _first(self.truncated_ids, other.truncated_ids)
        self.cut_ids = _first(self.cut_ids, other.cut_ids)
        self.zero_ids = _first(self.zero_ids, other.zero_ids)
        for name in ("cut_rows", "zero_rows", "tool_rows", "eligible", "ineligible", "verified", "wrong"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self
