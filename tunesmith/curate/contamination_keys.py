"""The n-gram and prompt lookups behind the `contamination` stage, built to stream the training rows past them.

Only the small side of each comparison is kept: the held-out rows' n-gram hashes (a minority of the rows) and
each evaluation file. Training rows are shingled batch by batch and probed against those lookups, so memory
follows the held-out set and the batch, not the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from tunesmith.curate import minhash
from tunesmith.curate.dedup import field_text, normalise
from tunesmith.curate.record import Example


class Lookup:
    """Membership and position of keys in a sorted uint64 array, probed many times (once per batch).

    A flag table indexed by the low bits of the hashes rules out most keys before the binary search, whose
    random memory access is what costs on millions of keys; it is built once and sized to the values (4 flags,
    4 bytes, a value, at most 16 MB), so a small lookup probed by many batches stays cheap.
    """

    def __init__(self, sorted_values: np.ndarray):
        self.values = sorted_values
        bits = 1 << min(max(int(len(sorted_values) * 4).bit_length(), 10), 24)
        self.mask = np.uint64(bits - 1)
        self.flags = np.zeros(bits, dtype=bool)
        self.flags[sorted_values & self.mask] = True

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each key: is it among the values, and at which position (valid where found)."""
        found = np.zeros(len(keys), dtype=bool)
        pos = np.zeros(len(keys), dtype=np.int64)
        if len(self.values) == 0 or len(keys) == 0:
            return found, pos
        maybe = np.flatnonzero(self.flags[keys & self.mask])
        at = np.minimum(np.searchsorted(self.values, keys[maybe]), len(self.values) - 1)
        found[maybe] = self.values[at] == keys[maybe]
        pos[maybe] = at
        return found, pos


@dataclass
class Side:
    """Rows on one side of a comparison, with their texts, prompt keys and n-gram shingles."""

    rows: list[Example]
    texts: list[str]
    prompt_keys: list[str]
    shingles: minhash.Shingles

    @classmethod
    def of(cls, rows: list[Example], ngram: int, cache: minhash.WordCache | None = None) -> Side:
        texts = [field_text(r, "conversation") for r in rows]
        keys = [normalise(field_text(r, "prompt"), "aggressive") for r in rows]
        return cls(rows, texts, keys, minhash.word_shingles(texts, ngram, cache))


def prompt_hash(key: str) -> int:
    """The normalised prompt as the held-out lookup keeps it: 8 bytes instead of the text."""
    return xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Hit:
    """A query row sharing at least `min_overlap` of its n-grams with the reference: where its first shared
    n-gram starts (word offset), which reference value it is (index), and the shared share."""

    row: int
    offset: int
    value: int
    share: float


def ngram_hits(row_of: np.ndarray, rows: int, hit: np.ndarray, value: np.ndarray, min_overlap: float) -> list[Hit]:
    """The query rows (0..rows-1) whose share of n-grams found in the reference (`hit`, per shingle; `value`: which
    reference value, where hit) reaches `min_overlap`, in order."""
    per_row = np.bincount(row_of, minlength=rows)
    share = np.bincount(row_of[hit], minlength=rows) / np.maximum(per_row, 1)
    hit_index = np.flatnonzero(hit)
    hit_rows, first = np.unique(row_of[hit_index], return_index=True)
    row_starts = np.searchsorted(row_of, hit_rows)
    return [Hit(int(q), int(s - r0), int(value[s]), float(share[q]))
            for q, s, r0 in zip(hit_rows, hit_index[first], row_starts) if share[q] >= min_overlap]


class HeldOutKeys:
    """Pass 1 over the held-out rows: their positions, prompt hashes and n-gram hashes; then, streamed over the
    training rows, the first training row holding each held-out prompt and n-gram, and how many hold the n-gram."""

    def __init__(self) -> None:
        # per batch until `seal` joins them: positions, prompt hashes (xxh64 of the normalised prompt), whether
        # the prompt is non-empty (an empty one never matches), shingles per row, and the shingles' hashes
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in ("positions", "prompts", "keyed", "lengths", "hashes")}

    def add(self, side: Side, positions: np.ndarray) -> None:
        n = len(side.rows)
        for name, part in (("positions", positions),
                           ("prompts", np.fromiter(map(prompt_hash, side.prompt_keys), np.uint64, n)),
                           ("keyed", np.fromiter(map(bool, side.prompt_keys), bool, n)),
                           ("lengths", np.bincount(side.shingles.row_of, minlength=n)),
                           ("hashes", side.shingles.hashes)):
            self._parts[name].append(part)

    def nbytes(self) -> int:
        return sum(a.nbytes for parts in self._parts.values() for a in parts)

    def seal(self, rows: int) -> None:
        """Join the batches and build the lookups the training rows are probed against (`rows`: all the rows)."""
        parts = self._parts
        self.positions, self.lengths = _joined(parts["positions"], np.int64), _joined(parts["lengths"], np.int64)
        self.prompts, self.keyed = _joined(parts["prompts"]), _joined(parts["keyed"], bool)
        values, inverse = np.unique(_joined(parts["hashes"]), return_inverse=True)
        self._parts = {}
        # each held-out shingle as the index of its value: 4 bytes instead of the 8 of its hash
        self.value_of = inverse.astype(np.int32 if len(values) < 2**31 else np.int64)
        self.prompt_lookup = Lookup(np.unique(self.prompts[self.keyed]))
        self.first_prompt_row = np.full(len(self.prompt_lookup.values), -1, dtype=np.int64)
        self.ngram_lookup = Lookup(values)
        self.ngram_rows = np.zeros(len(values), dtype=np.uint32)  # training shingles per value
        position = np.int32 if rows < 2**31 else np.int64  # of the first training row holding each n-gram
        self.first_ngram_row = np.full(len(self.ngram_lookup.values), -1, dtype=position)

    def probe(self, train: Side, positions: np.ndarray) -> None:
        """One batch of training rows (at `positions`): the first to hold each prompt and n-gram, and the counts."""
        keyed = np.flatnonzero(np.fromiter(map(bool, train.prompt_keys), bool, len(train.rows)))
        hashes = np.fromiter((prompt_hash(train.prompt_keys[i]) for i in keyed), np.uint64, len(keyed))
        found, at = self.prompt_lookup.find(hashes)
        _first(self.first_prompt_row, at[found], positions[keyed[found]])
        found, at = self.ngram_lookup.find(train.shingles.hashes)
        np.add.at(self.ngram_rows, at[found], 1)
        _first(self.first_ngram_row, at[found], positions[train.shingles.row_of[found]])

    def matches(self, boilerplate_rows: int, min_overlap: float) -> list[tuple[int, str, int, int, float]]:
        """(held-out index, kind, training position, word offset, share) per contaminated held-out row, in order:
        a repeated prompt first, else most of its n-grams in training (n-grams in more than `boilerplate_rows`
        training shingles are template text, not leakage)."""
        found: dict[int, tuple[int, str, int, int, float]] = {}
        _, at = self.prompt_lookup.find(self.prompts)
        for j in np.flatnonzero(self.keyed):
            row = int(self.first_prompt_row[at[j]])
            if row >= 0:
                found[int(j)] = (int(j), "exact", row, 0, 0.0)
        shared = (self.ngram_rows > 0) & (self.ngram_rows <= boilerplate_rows)
        row_of = np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)
        for hit in ngram_hits(row_of, len(self.lengths), shared[self.value_of], self.value_of, min_overlap):
            found.setdefault(hit.row, (hit.row, "ngram", int(self.first_ngram_row[hit.value]), hit.offset, hit.share))
        return [found[j] for j in sorted(found)]


def _joined(parts: list[np.ndarray], dtype=np.uint64) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _first(first_row: np.ndarray, at: np.ndarray, rows: np.ndarray) -> None:
    """Set first_row[at[i]] = rows[i] where still unset, the earliest row winning (rows arrive in order)."""
    if len(at) == 0:
        return
    values, first = np.unique(at, return_index=True)
    unset = first_row[values] < 0
    first_row[values[unset]] = rows[first[unset]]


class EvalFileKeys:
    """One evaluation file as the reference that training rows are checked against, a batch at a time."""

    def __init__(self, rows: list[Example], ngram: int, boilerplate_rows: int):
        self.side = Side.of(rows, ngram)
        self.first_prompt = dict(zip(reversed(self.side.prompt_keys), reversed(range(len(rows)))))
        sh = self.side.shingles
        values, first, counts = np.unique(sh.hashes, return_index=True, return_counts=True)
        keep = counts <= boilerplate_rows  # a template line of the benchmark is not leakage
        self.ngrams, self.holder = Lookup(values[keep]), sh.row_of[first[keep]]

    def matches(self, train: Side, min_overlap: float) -> list[tuple[int, str, int, int, float]]:
        """(training row in `train`, kind, eval row, word offset, share) per training row found in the file."""
        if not self.side.rows or not train.rows:
            return []
        found = {}
        for q, key in enumerate(train.prompt_keys):
            r = self.first_prompt.get(key)
            if r is not None and key:
                found[q] = (q, "exact", r, 0, 0.0)
        shared, value = self.ngrams.find(train.shingles.hashes)
        for hit in ngram_hits(train.shingles.row_of, len(train.rows), shared, value, min_overlap):
            found.setdefault(hit.row, (hit.row, "ngram", int(self.holder[hit.value]), hit.offset, hit.share))
        return [found[q] for q in sorted(found)]
