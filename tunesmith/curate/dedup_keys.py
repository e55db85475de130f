"""exact_dedup's per-row keys and the decision taken on them alone.

Pass 1 keeps 17 bytes a row (the 16-byte blake2b digest of the normalised key fields and a KTO label byte), plus
8 bytes a row per key field when the key has several (for the near-constant-field warning). `decide` sorts the
keys once: the first row (smallest position) of each key is its original, every later one a duplicate of it.
What pass 2 needs is then a few arrays over the duplicates only; the per-row keys are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tunesmith.curate.record import Example

LABEL_CODE = {None: 0, False: 1, True: 2}  # a KTO row's label is part of its key
CARD_GROUPS = 100  # duplicate groups listed on the card


@dataclass
class DedupKeys:
    """The stage's state: the keys of pass 1, then the decision, then what pass 2 picked up on the way."""

    digests: bytearray = field(default_factory=bytearray)  # 16 bytes a row
    labels: bytearray = field(default_factory=bytearray)  # 1 byte a row: LABEL_CODE
    field_hashes: dict[str, bytearray] = field(default_factory=dict)  # 8 bytes a row per field (several fields)
    rows: int = 0
    # the decision
    distinct: dict[str, int] = field(default_factory=dict)  # distinct normalised values per key field
    dup_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted positions of duplicates
    dup_orig: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # each one's original's position
    heads: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted originals with duplicates
    left: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # duplicates still to come, per head
    card: dict[int, list[str]] = field(default_factory=dict)  # the card's groups (first duplicate's order): dropped
    card_totals: dict[int, int] = field(default_factory=dict)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # reported KTO label conflicts (earlier, later)
    pairs_total: int = 0
    # pass 2
    open_ids: dict[int, str] = field(default_factory=dict)  # originals whose duplicates are still to come
    card_kept: dict[int, str] = field(default_factory=dict)
    pair_rows: dict[int, Example | None] = field(default_factory=dict)  # the reported pairs' rows, once seen

    def add(self, digest: bytes, label: bool | None, fields: dict[str, bytes]) -> None:
        self.digests += digest
        self.labels.append(LABEL_CODE[label])
        for name, value in fields.items():
            self.field_hashes.setdefault(name, bytearray()).extend(value)
        self.rows += 1

    def decide(self, fields: list[str], answer_keyed: bool, pairs_cap: int) -> None:
        """Originals, duplicates, the card's groups and the KTO label conflicts, from the keys alone."""
        n = self.rows
        keys = np.frombuffer(self.digests, dtype=np.uint64).reshape(n, 2)
        labels = np.frombuffer(self.labels, dtype=np.uint8)
        order = np.lexsort((labels, keys[:, 1], keys[:, 0]))  # stable: equal keys stay in position order
        sorted_keys, sorted_labels = keys[order], labels[order]
        new_digest = np.ones(n, dtype=bool)
        new_digest[1:] = (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
        new_key = new_digest.copy()
        new_key[1:] |= sorted_labels[1:] != sorted_labels[:-1]
        self._distinct(fields, int(new_digest.sum()))
        run_start = np.maximum.accumulate(np.where(new_key, np.arange(n), 0))
        original = np.empty(n, dtype=np.int64)
        original[order] = order[run_start]
        self.dup_pos = np.flatnonzero(original != np.arange(n))
        self.dup_orig = original[self.dup_pos]
        self._groups()
        if answer_keyed:
            self._conflicts(order[new_key], sorted_keys[new_key], sorted_labels[new_key], pairs_cap)
        self.digests, self.labels, self.field_hashes = bytearray(), bytearray(), {}

    def _distinct(self, fields: list[str], distinct_digests: int) -> None:
        if len(fields) == 1:  # the digest is the one field's: its distinct count is the field's
            self.distinct = {fields[0]: distinct_digests}
        else:
            self.distinct = {name: int(np.unique(np.frombuffer(self.field_hashes.get(name, b""),
                                                               dtype=np.uint64)).size) for name in fields}

    def _groups(self) -> None:
        """Each original with duplicates, how many, and the card's first groups in the order of their first
        duplicate (the order the groups were met in when one pass over the rows built them)."""
        self.heads, first, counts = np.unique(self.dup_orig, return_index=True, return_counts=True)
        self.left = counts.astype(np.int64)
        shown = np.argsort(first, kind="stable")[:CARD_GROUPS]
        self.card = {int(self.heads[i]): [] for i in shown}
        self.card_totals = {int(self.heads[i]): int(counts[i]) for i in shown}

    def _conflicts(self, positions: np.ndarray, keys: np.ndarray, labels: np.ndarray, cap: int) -> None:
        """Originals with a label, sorted by digest then label: a digest with both labels is one pair (at most
        one original per digest and label), reported in the order of the pair's later row."""
        labelled = labels != 0
        positions, keys = positions[labelled], keys[labelled]
        both = np.flatnonzero((keys[1:] == keys[:-1]).all(axis=1))
        earlier = np.minimum(positions[both], positions[both + 1])
        later = np.maximum(positions[both], positions[both + 1])
        ranked = np.argsort(later, kind="stable")
        self.pairs_total = int(len(ranked))
        self.pairs = [(int(earlier[i]), int(later[i])) for i in ranked[:cap]]
        self.pair_rows = {p: None for pair in self.pairs for p in pair}

    def original_of(self, positions: range) -> dict[int, int]:
        """{duplicate position: its original's position} for the duplicates among `positions`."""
        lo, hi = np.searchsorted(self.dup_pos, [positions.start, positions.stop])
        return dict(zip(self.dup_pos[lo:hi].tolist(), self.dup_orig[lo:hi].tolist()))

    def heads_among(self, positions: range) -> set[int]:
        lo, hi = np.searchsorted(self.heads, [positions.start, positions.stop])
        return set(self.heads[lo:hi].tolist())

    def duplicate_seen(self, original: int) -> None:
        """One duplicate of `original` passed: forget its id after the last one."""
        index = int(np.searchsorted(self.heads, original))
        self.left[index] -= 1
        if self.left[index] == 0:
            del self.open_ids[original]
