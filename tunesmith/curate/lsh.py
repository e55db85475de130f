"""LSH banding over MinHash signatures and the checks of its candidates: the band/row choice for a
threshold, the candidate pairs, and their estimated and exact Jaccard.

Split from minhash.py, which re-exports these names: signatures come from there, candidates from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tunesmith.curate.minhash import Shingles

_MIX = np.uint64(0x9E3779B97F4A7C15)


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.05) -> tuple[int, int]:
    """Bands x rows minimising weighted false-positive and false-negative mass (datasketch weighs them 0.5/0.5).

    Candidates are verified against the threshold afterwards, so a false positive costs one comparison
    while a false negative loses a duplicate: the default weighting leans towards recall.
    """
    grid = np.linspace(0.0, 1.0, 201)
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        prob = 1.0 - (1.0 - grid**rows) ** bands
        below, above = grid <= threshold, grid >= threshold
        false_pos = np.trapezoid(prob[below], grid[below])
        false_neg = np.trapezoid(1.0 - prob[above], grid[above])
        err = fp_weight * false_pos + (1 - fp_weight) * false_neg
        if err < best_err:
            best, best_err = (bands, rows), err
    return best


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, valid: np.ndarray, max_bucket: int = 32) -> np.ndarray:
    """Row pairs (i < j) sharing at least one LSH band bucket; big buckets contribute star pairs only.

    Stars (the lowest row to every other member) are enough to link a big bucket into one component; a
    greedy keep-set needs more, so it takes the big buckets themselves from `band_buckets`.
    """
    pairs, big = band_buckets(sig, bands, rows, valid, max_bucket)
    stars = [np.stack([np.full(len(b) - 1, b[0]), b[1:]], axis=1) for b in big]
    return _unique_pairs([pairs, *stars])


def band_buckets(sig: np.ndarray, bands: int, rows: int, valid: np.ndarray,
                 max_bucket: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every row pair (i < j) of the band buckets of at most `max_bucket` rows, and the rows of each bigger one.

    A big bucket is listed once however many bands give the same rows (sorted): a cluster of near-copies
    fills the same bucket in most bands, and all pairs of it would be quadratic.
    """
    pairs, big, seen = [], [], set()
    index = np.flatnonzero(valid)
    for band in range(bands):
        keys = band_keys(np.ascontiguousarray(sig[index, band * rows : (band + 1) * rows]))
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        first = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
        sizes = np.diff(np.concatenate([first, [len(order)]]))
        two = first[sizes == 2]  # the common case, without a Python loop
        pairs.append(np.sort(index[np.stack([order[two], order[two + 1]], axis=1)], axis=1))
        for run in np.flatnonzero(sizes > 2):
            members = index[np.sort(order[first[run] : first[run] + sizes[run]])]
            if sizes[run] <= max_bucket:
                si, sj = np.triu_indices(len(members), k=1)
                pairs.append(np.stack([members[si], members[sj]], axis=1))
            elif (key := members.tobytes()) not in seen:
                seen.add(key)
                big.append(members)
    return _unique_pairs(pairs), big


def _unique_pairs(parts: list[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    found = np.concatenate(parts).astype(np.int64)
    found.sort(axis=1)
    return np.unique(found, axis=0)


def row_band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Every row's bucket key in every band (n x bands uint64): what a streamed near_dedup keeps per row instead
    of its signature (8 bytes a band: 128 bytes at the default 16 bands, against 512 for 128 permutations)."""
    keys = np.empty((sig.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        keys[:, band] = band_keys(np.ascontiguousarray(sig[:, band * rows : (band + 1) * rows]))
    return keys


def shared_bucket_rows(keys: list[np.ndarray], valid: np.ndarray) -> np.ndarray:
    """Positions (sorted) of the valid rows that share a bucket with another valid row in at least one band.

    `keys` are the per-batch `row_band_keys`, in row order. Any other row is a candidate of nothing, so
    band_buckets over these rows alone finds the same buckets of two or more rows as over all rows.
    """
    index = np.flatnonzero(valid)
    shared = np.zeros(len(index), dtype=bool)
    bands = keys[0].shape[1] if keys else 0
    for band in range(bands):  # one band's column at a time: the keys are not copied whole
        column = np.concatenate([k[:, band] for k in keys])[index]
        order = np.argsort(column, kind="stable")
        same = column[order][1:] == column[order][:-1]
        shared[order[1:][same]] = True
        shared[order[:-1][same]] = True
    return index[shared]


def band_keys(block: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of a 2-D unsigned block (the band key)."""
    mixed = np.zeros(block.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in range(block.shape[1]):
            mixed = (mixed ^ block[:, col].astype(np.uint64)) * _MIX
            mixed ^= mixed >> np.uint64(29)
    return mixed


def estimated_jaccard(sig: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    if len(pairs) == 0:
        return np.zeros(0)
    return (sig[pairs[:, 0]] == sig[pairs[:, 1]]).mean(axis=1)


def exact_jaccard(shingles: Shingles, pairs: np.ndarray) -> np.ndarray:
    """True Jaccard similarity of the shingle sets of each row pair (for the few LSH candidates)."""
    sets = ShingleSets(shingles)
    return np.array([jaccard(sets.of(a), sets.of(b)) for a, b in pairs.tolist()], dtype=float).reshape(len(pairs))


def jaccard(left: set, right: set) -> float:
    union = len(left | right)
    return len(left & right) / union if union else 0.0


class ShingleSets:
    """The shingle set of any row, built on demand and cached unless `keep=False` (a row compared only once)."""

    def __init__(self, shingles: Shingles) -> None:
        self._hashes = shingles.hashes
        self._bounds = np.searchsorted(shingles.row_of, np.arange(shingles.row_of.max() + 2 if len(shingles.row_of) else 1))
        self._cache: dict[int, set] = {}

    def of(self, row: int, keep: bool = True) -> set:
        got = self._cache.get(row)
        if got is None:
            inside = row + 1 < len(self._bounds)  # rows after the last one with shingles have none
            got = set(self._hashes[self._bounds[row] : self._bounds[row + 1]].tolist()) if inside else set()
            if keep:
                self._cache[row] = got
        return got
