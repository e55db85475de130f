"""split's per-row keys and the group arithmetic on them.

Pass 1 keeps each row's first group label as a 64-bit hash (8 bytes), 16 bytes more per further label (a row
joining two groups), 4 bytes of stratum when `stratify` is set. A label's hash is the high 8 bytes of
sha256("<seed>:<label>"), the very number whose share of 2**64 is a group's position in [0, 1), so a group of one
label needs no text at all; a group joined from several labels takes the position of its smallest label (the
union-find's root when it worked on the strings), and only the rows of such groups are read back to name it.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tunesmith.curate.record import Example
from tunesmith.curate.stage import RowStore, StageContext

SHOWN_MISSING = 3  # rows named in the missing-column warning
TRAINABLE_BY_ID = "trainable_tokens_by_id"  # ctx.extra key of the per-row counts before rows carried them


def label_hash(seed: int, label: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "big")


@dataclass
class ColumnTally:
    """How many rows lack a `group_by`/`stratify` column, and where the first few are."""

    missing: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, example: Example, column: str) -> None:
        if example.meta.get(column) is None:
            self.missing += 1
            if len(self.shown) < SHOWN_MISSING:
                self.shown.append(example.where)


class TokensBySplit:
    """Trainable tokens per split, summed from the rows' `trainable_tokens` (set by token_stats, which runs
    before the split, so only a stage that sees both the counts and the splits can tell train's share; the
    min_trainable_tokens gate measures train only). No finding when token_stats did not count."""

    def __init__(self) -> None:
        self.by_split: Counter = Counter()
        self.counted = False

    def add(self, examples: list[Example], ctx: StageContext) -> None:
        legacy = ctx.extra.get(TRAINABLE_BY_ID)  # the per-id counts of a token_stats older than the row field
        self.counted = self.counted or legacy is not None
        for example in examples:
            tokens = example.trainable_tokens
            if tokens is None:
                tokens = legacy.get(example.id, 0) if legacy is not None else 0
            else:
                self.counted = True
            self.by_split[example.split or "all"] += tokens

    def report(self, ctx: StageContext) -> None:
        if self.counted or TRAINABLE_BY_ID in ctx.extra:
            ctx.finding("trainable_tokens_by_split", dict(sorted(self.by_split.items())))


@dataclass
class Groups:
    """The groups of the rows: each row's group, and per group its rows, first row and position."""

    of_row: np.ndarray  # int64 per row
    sizes: np.ndarray  # int64 per group
    first_row: np.ndarray  # int64 per group: its smallest position
    position: np.ndarray  # float64 per group in [0, 1)


@dataclass
class SplitKeys:
    """The stage's state: the keys of pass 1, each row's split after the resolve, the tallies of pass 2."""

    first: array = field(default_factory=lambda: array("Q"))  # each row's first label hash
    extra_rows: array = field(default_factory=lambda: array("q"))  # (row, label hash) for further labels
    extra_labels: array = field(default_factory=lambda: array("Q"))
    strata: dict[str, int] = field(default_factory=dict)  # distinct strata, numbered in order of appearance
    stratum: array = field(default_factory=lambda: array("I"))  # per row, when stratify is set
    columns: dict[str, ColumnTally] = field(default_factory=dict)  # option -> its column's tally
    rows: int = 0
    # the decision
    row_split: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))  # index into the split names
    group_count: int = 0  # groups of more than one row
    largest: int = 0
    column_warnings: list[str] = field(default_factory=list)
    # pass 2
    strata_table: dict[str, Counter] = field(default_factory=dict)
    tokens: TokensBySplit = field(default_factory=TokensBySplit)

    def add(self, hashes: list[int], stratum: str | None) -> None:
        self.first.append(hashes[0])
        for other in hashes[1:]:
            self.extra_rows.append(self.rows)
            self.extra_labels.append(other)
        if stratum is not None:
            self.stratum.append(self.strata.setdefault(stratum, len(self.strata)))
        self.rows += 1

    def drop_keys(self) -> None:
        """After the resolve only `row_split` is needed (pass 2 reads a row's stratum from the row)."""
        self.first, self.extra_rows, self.extra_labels, self.stratum = array("Q"), array("q"), array("Q"), array("I")
        self.strata = {}

    def groups(self, rows: RowStore, labels_of: Callable[[Example], list[str]], seed: int) -> Groups:
        """Rows sharing any label joined transitively (connected components over the label hashes)."""
        n = self.rows
        first = np.frombuffer(self.first, dtype=np.uint64) if n else np.zeros(0, np.uint64)
        extra = np.frombuffer(self.extra_labels, dtype=np.uint64) if self.extra_labels else np.zeros(0, np.uint64)
        hashes, inverse = np.unique(np.concatenate([first, extra]), return_inverse=True)
        row_label = inverse[:n]
        if len(extra):
            edges = (row_label[np.frombuffer(self.extra_rows, dtype=np.int64)], inverse[n:])
            graph = coo_matrix((np.ones(len(extra), np.int8), edges), shape=(len(hashes), len(hashes)))
            _, label_group = connected_components(graph, directed=False)
        else:
            label_group = np.arange(len(hashes))
        of_row = label_group[row_label].astype(np.int64)
        count = int(label_group.max()) + 1 if len(hashes) else 0
        group_hash = np.zeros(count, dtype=np.uint64)
        group_hash[label_group] = hashes  # right for a group of one label; joined groups are named below
        joined = np.bincount(label_group, minlength=count) > 1
        if joined.any():
            for group, label in _smallest_labels(rows, of_row, joined, labels_of).items():
                group_hash[group] = label_hash(seed, label)
        _, first_row = np.unique(of_row, return_index=True)
        sizes = np.bincount(of_row, minlength=count)
        return Groups(of_row, sizes, first_row.astype(np.int64), group_hash.astype(np.float64) / 2**64)


def _smallest_labels(rows: RowStore, of_row: np.ndarray, joined: np.ndarray,
                     labels_of: Callable[[Example], list[str]]) -> dict[int, str]:
    """The smallest label of each joined group, from its rows read back (only theirs are labelled again)."""
    smallest: dict[int, str] = {}
    for start, batch in rows.batches():
        groups = of_row[start : start + len(batch)]
        for index in np.flatnonzero(joined[groups]).tolist():
            group, label = int(groups[index]), min(labels_of(batch[index]))
            if group not in smallest or label < smallest[group]:
                smallest[group] = label
    return smallest


def cut_by_count(order: np.ndarray, sizes: np.ndarray, targets: dict[str, float]) -> dict[str, np.ndarray]:
    """Groups of one stratum, in position order, cut into splits by row count: each split but the last takes
    groups until the rows it holds reach its target (the last takes the rest). {split: its groups}."""
    names = list(targets)
    before = np.concatenate([[0], np.cumsum(sizes[order])])[:-1]  # rows in the groups ahead of each group
    cuts, start = {}, 0
    for name in names[:-1]:
        end = start if start >= len(order) else int(np.searchsorted(before, before[start] + targets[name], "left"))
        cuts[name], start = order[start:end], end
    cuts[names[-1]] = order[start:]
    return cuts
