"""Tests that near_dedup streamed by the engine (small batches, one or two workers) decides exactly as over the
whole list: same survivors, rejected lines, findings and clusters file, on clusters, a chain, Chinese rows, tag
mode and keep=longest; that resolve reads back only the rows sharing an LSH bucket with another row; and that
the keep-set over those rows equals the keep-set over all rows.

Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/curate/test_near_dedup_streamed.py
"""

import json
import random

import numpy as np
import pytest

from tests.curate.engine_helpers import comparable, run_streamed, run_whole
from tests.curate.rows import chat_row as make
from tests.curate.test_near_dedup_big_buckets import cluster_rows
from tunesmith.curate import keepset, lsh
from tunesmith.curate.near_dedup import NearDedup, compared_text, read_candidates
from tunesmith.curate.stage import ListStore, StageContext

VOCAB = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrst"]
SENTENCE = "今天天气很好，我们一起去公园散步吧。公园里有很多美丽的花，还有一个安静的湖，湖边有几棵高大的柳树，孩子们在草地上放风筝。"


def edited(words: list[str], *positions: int) -> list[str]:
    return [f"edit{p}" if p in positions else w for p, w in enumerate(words)]


def hand_made_rows() -> list:
    """Unique rows around: a cluster of three edited copies (one longer), a chain A~B~C with J(A, C) < 0.8, a
    Chinese sentence with a one-character edit, an empty row, and a row already in a group (tag mode keeps it)."""
    rng = random.Random(3)
    base, chain = rng.choices(VOCAB, k=50), rng.choices(VOCAB, k=60)
    texts = [" ".join(rng.choices(VOCAB, k=30)),
             " ".join(base), " ".join(rng.choices(VOCAB, k=40)), " ".join(edited(base, 7)),
             " ".join(chain), SENTENCE, " ".join(edited(chain, 10)), " ".join(base + ["longer", "tail"]),
             "", " ".join(edited(chain, 10, 40)), SENTENCE.replace("很多", "许多", 1), "请把这句话翻译成英文：我喜欢猫。",
             " ".join(rng.choices(VOCAB, k=25))]
    rows = [make(i, text) for i, text in enumerate(texts)]
    rows[3] = rows[3].replace(group="prompt:abc")
    return rows


def assert_all_runs_equal(stage: NearDedup, rows: list, tmp_path) -> tuple:
    """run_whole == streamed (batch 3, 1 worker) == streamed (batch 2, 2 workers); returns the whole run."""
    whole = run_whole(stage, rows, tmp_path / "whole")
    for name, batch_size, workers in (("one", 3, 1), ("two", 2, 2)):
        kept, record, rejected = run_streamed(stage, rows, tmp_path / name, batch_size=batch_size, workers=workers)
        assert [ex.to_json() for ex in kept] == [ex.to_json() for ex in whole[0]]
        assert rejected == whole[2]
        assert comparable(record) == comparable(whole[1])
        side = tmp_path / name / "rejected" / "near_dedup.clusters.json"
        assert side.exists() and side.read_text() == (tmp_path / "whole" / "rejected" / "near_dedup.clusters.json").read_text()
    return whole


@pytest.mark.parametrize("keep", ["first", "longest"])
def test_streamed_drop_mode_equals_the_whole_list_run(keep, tmp_path):
    kept, record, rejected = assert_all_runs_equal(NearDedup(NearDedup.Config(keep=keep)), hand_made_rows(), tmp_path)

    details = {line["id"]: line["detail"] for line in rejected}
    assert "with s:5 (kept" in details["s:10"]
    assert {"s:4", "s:9"} <= {ex.id for ex in kept}  # both ends of the chain stay: no chaining
    assert f"with {'s:4' if keep == 'first' else 's:9'} (kept" in details["s:6"]  # edit40 makes s:9 the longest
    if keep == "first":
        assert details.keys() == {"s:3", "s:6", "s:7", "s:10"}
        assert details["s:3"].startswith("Jaccard 0.") and details["s:3"].endswith("with s:1 (kept; threshold 0.8)")
    else:  # the copy with the longer tail is kept; the edited copy is like the dropped s:1 only, so it stays
        assert details.keys() == {"s:1", "s:6", "s:10"} and "with s:7 (kept" in details["s:1"]
    assert record.findings["kept_beside_dropped"] == (1 if keep == "first" else 2)
    assert record.findings["num_clusters"] == 3
    assert record.findings["params"]["char_shingled_rows"] == 3 and record.findings["warnings"] == []


def test_streamed_tag_mode_equals_the_whole_list_run(tmp_path):
    kept, record, rejected = assert_all_runs_equal(NearDedup(NearDedup.Config(action="tag")), hand_made_rows(), tmp_path)

    groups = {ex.id: ex.group for ex in kept}
    assert rejected == [] and len(kept) == 13
    assert groups["s:1"] == groups["s:7"] == "near:s:1" and groups["s:3"] == "prompt:abc|near:s:1"
    assert groups["s:4"] == groups["s:6"] == groups["s:9"] == "near:s:4"  # tag mode joins the whole chain
    assert groups["s:0"] is None and groups["s:8"] is None
    assert record.findings["clusters"][1]["members"][1] == {"id": "s:9", "jaccard": pytest.approx(0.9, abs=0.1),
                                                            "linked_to": "s:6"}


def test_streamed_big_buckets_and_their_warning_equal_the_whole_list_run(monkeypatch, tmp_path):
    """Buckets over 32 rows (compared with the bucket's kept rows) and the cap warning, across batch edges."""
    monkeypatch.setattr(keepset, "LEADERS_PER_BUCKET", 2)
    rows = cluster_rows(1)[:200]
    stage = NearDedup()
    whole = run_whole(stage, rows, tmp_path / "whole")
    kept, record, rejected = run_streamed(stage, rows, tmp_path / "streamed", batch_size=7)
    assert [ex.id for ex in kept] == [ex.id for ex in whole[0]] and rejected == whole[2]
    assert comparable(record) == comparable(whole[1])
    assert record.findings["params"]["big_buckets"] > 0 and record.rows_rejected > 100
    assert "were not compared with rows after them" in record.findings["warnings"][0]


def band_state(stage: NearDedup, rows: list, batch_size: int = 4):
    """Pass 1's keys over `rows`, in batches."""
    ctx = StageContext(stage.name, None)
    state = stage.open(ctx)
    for start in range(0, len(rows), batch_size):
        stage.add_keys(rows[start : start + batch_size], start, state, ctx)
    return state


def test_the_candidates_are_exactly_the_rows_sharing_a_bucket_with_another_row():
    rows = hand_made_rows()
    stage = NearDedup()
    state = band_state(stage, rows)
    assert [k.shape for k in state.keys] == [(4, 16), (4, 16), (4, 16), (1, 16)]  # 16 bands x 8 bytes a row
    assert state.keys[0].dtype == np.uint64

    positions = lsh.shared_bucket_rows(state.keys, np.concatenate(state.has_text))

    assert positions.tolist() == [1, 3, 4, 5, 6, 7, 9, 10]  # the unique rows (0, 2, 11, 12) and the empty one (8) go
    found = read_candidates(ListStore(rows, batch_size=3), positions, "conversation")
    assert found.ids == [rows[p].id for p in positions.tolist()]
    assert found.texts == [compared_text(rows[p], "conversation") for p in positions.tolist()]


@pytest.mark.parametrize("config", [{}, {"keep": "longest"}, {"action": "tag"}, {"threshold": 0.5}])
def test_the_keep_set_over_the_candidates_equals_the_keep_set_over_all_rows(config):
    """Rows in no shared bucket are nobody's candidate: leaving them out changes no decision and no count."""
    rows = cluster_rows(7)[:120] + hand_made_rows()
    rows = [row.replace(id=f"s:{i}") for i, row in enumerate(rows)]
    stage = NearDedup(NearDedup.Config(**config))
    state = band_state(stage, rows, batch_size=50)
    positions = lsh.shared_bucket_rows(state.keys, np.concatenate(state.has_text)).tolist()
    texts = [compared_text(row, "conversation") for row in rows]
    assert 0 < len(positions) < len(rows)

    def named(decision, at):
        return {rows[at[m]].id: (rows[at[k]].id, j, rows[at[p]].id) for m, (k, j, p) in decision.assigned.items()}

    everything, subset = stage.decide(texts), stage.decide([texts[p] for p in positions])

    assert named(subset, positions) == named(everything, list(range(len(rows))))
    assert subset.params == everything.params and subset.past_cap == everything.past_cap
    assert len(subset.assigned) > 0


def test_the_clusters_file_names_every_member_when_streamed(tmp_path):
    _, record, _ = run_streamed(NearDedup(), hand_made_rows(), tmp_path, batch_size=3)
    side = json.loads((tmp_path / record.findings["clusters_file"]).read_text())
    assert [c["kept"] for c in side["clusters"]] == ["s:1", "s:4", "s:5"]
    assert [m["id"] for c in side["clusters"] for m in c["members"]] == ["s:3", "s:7", "s:6", "s:10"]
