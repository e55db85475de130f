"""Tests that near_dedup's greedy keep-set holds inside LSH buckets too big for all their pairs (over 32 rows):
whatever the keep order, no two KEPT rows that share a bucket are near-duplicates, and a huge bucket costs a
bounded number of comparisons.

Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/curate/test_near_dedup_big_buckets.py
"""

import random

import numpy as np
import pytest

from tests.curate.rows import chat_row as make
from tunesmith.curate import keepset, minhash
from tunesmith.curate.near_dedup import NearDedup, compared_text
from tunesmith.curate.stage import StageContext

VOCAB = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrst"]


def run(stage, examples, tmp_path):
    kept, record = stage.run(examples, StageContext(stage.name, tmp_path / "rejected"))
    assert record.rows_in == record.rows_out + record.rows_rejected
    return kept, record


def bucket_pairs_with_jaccard(stage: NearDedup, rows) -> tuple[np.ndarray, np.ndarray]:
    """EVERY row pair sharing an LSH bucket (no size cap), with its exact Jaccard: what the keep-set must respect."""
    cfg = stage.config
    shingles, _ = stage.shingles([compared_text(row, cfg.field) for row in rows])
    sig = minhash.signatures(shingles, len(rows), cfg.num_perm, cfg.seed)
    bands, per_band = minhash.optimal_bands(cfg.threshold, cfg.num_perm)
    pairs = minhash.candidate_pairs(sig, bands, per_band, np.ones(len(rows), dtype=bool), max_bucket=10**9)
    return pairs, minhash.exact_jaccard(shingles, pairs)


def cluster_rows(seed: int) -> list:
    """3 clusters of 160 rows: 4 variants of one base (1-2 words edited; variants are 0.6-0.8 apart), each
    copied 40 times with 0-4 words appended (0.8-1 apart), and 20 unrelated rows, shuffled. Copies of a
    variant meet only in buckets over 32 rows, whose members are not all duplicates of each other: stars
    from one member (the old way) left 1-10 duplicate pairs kept on these seeds."""
    rng = random.Random(seed)
    texts = []
    for _ in range(3):
        base = rng.choices(VOCAB, k=80)
        for _ in range(4):
            variant = list(base)
            for position in rng.sample(range(80), rng.randint(1, 2)):
                variant[position] = rng.choice(VOCAB)
            texts += [" ".join(variant + rng.choices(VOCAB, k=rng.randint(0, 4))) for _ in range(40)]
    texts += [" ".join(rng.choices(VOCAB, k=80)) for _ in range(20)]
    rng.shuffle(texts)
    return [make(i, text) for i, text in enumerate(texts)]


@pytest.mark.parametrize("keep", ["first", "longest"])
def test_a_big_group_keeps_one_row_whichever_row_the_keep_order_visits_first(keep, tmp_path):
    """The review's repro: 60 near-copies in one bucket; row 0 is the shortest. keep=longest used to keep 58 rows,
    because the bucket was compared only with its lowest row (row 0), which longest-first drops."""
    base = random.Random(0).choices(VOCAB, k=200)
    rows = [make(0, " ".join(base[:-3]))] + [make(i, " ".join(base + [f"extra{i}"])) for i in range(1, 60)]
    stage = NearDedup(NearDedup.Config(keep=keep))
    pairs, jaccards = bucket_pairs_with_jaccard(stage, rows)
    assert len(pairs) == 60 * 59 // 2 and jaccards.min() >= 0.95  # one bucket of 60 near-copies

    kept, record = run(stage, rows, tmp_path)

    longest = max(rows, key=lambda row: len(compared_text(row, "conversation")))
    assert [ex.id for ex in kept] == (["s:0"] if keep == "first" else [longest.id])
    assert record.findings["params"]["big_buckets"] >= 1
    assert record.findings["params"]["bucket_comparisons"] < 2 * 59  # one kept row to compare with, not 60*59/2


@pytest.mark.parametrize("keep", ["first", "longest"])
@pytest.mark.parametrize("seed", [1, 7])
def test_no_two_kept_rows_sharing_a_bucket_are_near_duplicates(keep, seed, tmp_path):
    """Property: after the stage, no LSH candidate pair (all pairs of every bucket) joins two kept rows with
    J >= threshold, and every dropped row is within the threshold of a kept row."""
    rows = cluster_rows(seed)
    stage = NearDedup(NearDedup.Config(keep=keep))
    pairs, jaccards = bucket_pairs_with_jaccard(stage, rows)

    kept, record = run(stage, rows, tmp_path)

    kept_rows = {int(ex.id.split(":")[1]) for ex in kept}
    both_kept = np.isin(pairs, list(kept_rows)).all(axis=1)
    assert not (both_kept & (jaccards >= 0.8)).any()
    assert (both_kept & (jaccards < 0.8)).any()  # kept rows share buckets: clusters are not all duplicates
    assert record.findings["params"]["big_buckets"] > 0
    similar = {tuple(p) for p in pairs[jaccards >= 0.8].tolist()}
    for row in set(range(len(rows))) - kept_rows:
        assert any((min(row, k), max(row, k)) in similar for k in kept_rows)


def test_a_bucket_with_too_many_different_kept_rows_says_what_it_did_not_compare(monkeypatch, tmp_path):
    """The work per big bucket is bounded: past the cap of kept rows, later rows are not compared with the
    newer ones, and the stage says so in a warning instead of quietly promising a clean set."""
    monkeypatch.setattr(keepset, "LEADERS_PER_BUCKET", 1)
    kept, record = run(NearDedup(), cluster_rows(1), tmp_path)
    [warning] = record.findings["warnings"]
    assert "were not compared with rows after them" in warning and int(warning.split()[0]) > 0
    assert len(kept) < len(cluster_rows(1))  # the rows that were compared still go
