"""near_dedup's greedy keep-set: visit rows in the keep order and drop a row only for a KEPT row like it.

Candidates come from LSH in two shapes. Small buckets give every pair, verified up front. A big bucket (a
cluster of near-copies, or rows sharing boilerplate) would give a quadratic number of pairs, so each member is
compared, when its turn comes, with the bucket's rows kept so far (its "leaders"): only they can drop it. A
cluster of copies has one leader, so it costs one comparison a member; a bucket of rows unlike each other
grows up to LEADERS_PER_BUCKET leaders, and rows past that are counted rather than compared without bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tunesmith.curate.lsh import ShingleSets, jaccard

LEADERS_PER_BUCKET = 256


@dataclass
class BucketCheck:
    """Compares a row with a big bucket's leaders: the signature estimate screens, the exact Jaccard decides."""

    sig: np.ndarray
    sets: ShingleSets
    threshold: float
    floor: float  # estimate below which a pair is not verified (the same pre-filter as for small buckets)

    def similar(self, row: int, others: list[int]) -> list[tuple[int, float]]:
        """(leader, Jaccard) for the leaders with Jaccard >= threshold."""
        leaders = np.asarray(others)
        estimate = (self.sig[leaders] == self.sig[row]).mean(axis=1)
        mine = self.sets.of(row, keep=False)  # most members are compared once, then dropped
        found = [(int(k), jaccard(mine, self.sets.of(int(k)))) for k in leaders[estimate >= self.floor]]
        return [(k, j) for k, j in found if j >= self.threshold]


@dataclass
class KeepSet:
    dropped: dict[int, tuple[int, float]]  # dropped row -> (the kept row it is like, their Jaccard)
    pairs: list[tuple[int, int, float]] = field(default_factory=list)  # similar pairs found inside big buckets
    compared: int = 0  # leader comparisons made inside big buckets
    past_cap: int = 0  # kept rows not made leaders of a full bucket: later rows were not compared with them


def greedy_keep(rank: np.ndarray, pairs: np.ndarray, jaccards: np.ndarray, big: list[np.ndarray],
                check: BucketCheck) -> KeepSet:
    """Visit rows by rank; a row goes when an earlier KEPT row is similar, naming the most similar (then earliest).

    `pairs` are verified similar pairs (with their `jaccards`) from small buckets; `big` lists big buckets' rows.
    """
    partners: dict[int, list[tuple[int, float]]] = {}
    for a, b, j in zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), jaccards.tolist()):
        early, late = (a, b) if rank[a] < rank[b] else (b, a)
        partners.setdefault(late, []).append((early, j))
    buckets_of: dict[int, list[int]] = {}
    for b, members in enumerate(big):
        for m in members.tolist():
            buckets_of.setdefault(m, []).append(b)
    leaders: list[list[int]] = [[] for _ in big]
    out = KeepSet({})
    for row in sorted(set(partners) | set(buckets_of), key=lambda r: rank[r]):
        similar = [(e, j) for e, j in partners.get(row, ()) if e not in out.dropped]
        mine = buckets_of.get(row, ())
        if mine:
            others = list(dict.fromkeys(k for b in mine for k in leaders[b]))  # a cluster shares leaders across bands
            if others:
                out.compared += len(others)
                found = check.similar(row, others)
                out.pairs += [(k, row, j) for k, j in found]
                similar += found
        if similar:
            out.dropped[row] = min(similar, key=lambda kj: (-kj[1], rank[kj[0]]))
            continue
        full = [b for b in mine if len(leaders[b]) >= LEADERS_PER_BUCKET]
        out.past_cap += bool(full)
        for b in mine:
            if len(leaders[b]) < LEADERS_PER_BUCKET:
                leaders[b].append(row)
    return out
