"""A huge duplicate group stays small on the card and in the audit report; the full membership goes to a side file.

A 100k-row cluster once made a 10 MB card. Here 1,500 near-copies of one row (and 1,500 exact copies of another)
must leave a card of a few kilobytes that lists the first members and the total, a report that says how many more
there are and where, and `rejected/near_dedup.clusters.json` naming every member.
Run: .venv/bin/python -m pytest -q tests/robustness/test_big_clusters.py
"""

from __future__ import annotations

import json

from tunesmith.curate.config import CurateConfig
from tunesmith.curate.dedup import MEMBERS_RECORDED
from tunesmith.curate.pipeline import run_curate

COPIES = 1500
COMMON = " ".join(f"word{i}" for i in range(60))  # 56 shared 5-grams: any two near-copies have Jaccard ~0.97


def write_source(path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"{COMMON} tail{i}"}, {"role": "assistant", "content": "ok"}]}
            for i in range(COPIES)]
    rows += [{"messages": [{"role": "user", "content": "the same question"}, {"role": "assistant", "content": "yes"}]}
             for _ in range(COPIES)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_a_huge_cluster_is_capped_on_the_card_and_in_the_report_and_kept_whole_beside_the_rejected_rows(tmp_path):
    write_source(tmp_path / "rows.jsonl")
    config = CurateConfig(name="big", output_dir=str(tmp_path / "out"), sources=[{"path": str(tmp_path / "rows.jsonl")}],
                          stages=[{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "near_dedup"}],
                          gates={"max_duplicate_rate": None, "max_rejected_rate": None})  # 2,998 of 3,000 go
    result = run_curate(config)
    version, stages = result.directory, {s.name: s for s in result.card.stages}

    [group] = stages["exact_dedup"].findings["groups"]
    assert len(group["dropped"]) == MEMBERS_RECORDED and group["dropped_total"] == COPIES - 1
    [cluster] = stages["near_dedup"].findings["clusters"]
    assert len(cluster["members"]) == MEMBERS_RECORDED and cluster["members_total"] == COPIES - 1
    assert (version / "card.json").stat().st_size < 60_000  # uncapped: 230 kB

    side = json.loads((version / stages["near_dedup"].findings["clusters_file"]).read_text())
    [whole] = side["clusters"]
    assert whole["kept"] == cluster["kept"] and len(whole["members"]) == COPIES - 1
    rejected = {json.loads(line)["id"] for line in (version / "rejected" / "near_dedup.jsonl").open()}
    assert {m["id"] for m in whole["members"]} == rejected  # in drop mode, the side file and rejected rows agree

    report = (version / "report.html").read_text()
    more = COPIES - 1 - MEMBERS_RECORDED
    assert f"and {more:,} more members" in report or f"and {more} more members" in report
    assert "rejected/near_dedup.clusters.json" in report and "rejected/exact_dedup.jsonl" in report


def test_tagged_clusters_keep_every_row_and_still_list_all_members_in_the_side_file(tmp_path):
    """action=tag rejects nothing, so the side file is the only complete record of who clusters with whom."""
    write_source(tmp_path / "rows.jsonl")
    config = CurateConfig(name="big", output_dir=str(tmp_path / "out"), sources=[{"path": str(tmp_path / "rows.jsonl")}],
                          stages=[{"stage": "validate"}, {"stage": "near_dedup", "action": "tag",
                                                          "max_members_recorded": 3}],
                          report=False, gates={"max_duplicate_rate": None})
    result = run_curate(config)
    [stage] = [s for s in result.card.stages if s.name == "near_dedup"]
    assert stage.rows_rejected == 0
    assert all(len(c["members"]) <= 3 for c in stage.findings["clusters"])
    side = json.loads((result.directory / stage.findings["clusters_file"]).read_text())
    assert sum(len(c["members"]) for c in side["clusters"]) == sum(c["members_total"] for c in stage.findings["clusters"])
    assert sum(len(c["members"]) for c in side["clusters"]) == 2 * (COPIES - 1)
