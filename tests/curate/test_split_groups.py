"""Rows that share any grouping label (a preference prompt, a near-duplicate cluster, a `group_by` value) stay in
one split, even when the labels chain rows together (A shares a prompt with B, B is a near-duplicate of C); a
`group_by` column that no row carries stops the run, and one missing on some rows is a warning."""

import json
from collections import defaultdict

import pytest

from tests.curate.test_split_contamination import make, run
from tunesmith.cli import main
from tunesmith.curate.near_dedup import NearDedup
from tunesmith.curate.split import Split
from tunesmith.curate.stage import DataError, StageContext

RATIOS = {"train": 0.5, "validation": 0.25, "test": 0.25}


def splits_by(kept, label_of):
    seen = defaultdict(set)
    for example in kept:
        seen[label_of(example)].add(example.split)
    return seen


def test_labels_joined_by_a_row_keep_both_groups_on_one_side(tmp_path):
    """Chains of 3 rows: row a has prompt group P, row b has P and near cluster N, row c has N only."""
    rows = []
    for chain in range(60):
        prompt, near = f"prompt{chain}", f"near:s:{3 * chain + 2}"
        rows += [make(3 * chain, group=prompt), make(3 * chain + 1, group=f"{prompt}|{near}"),
                 make(3 * chain + 2, group=near)]
    kept, _ = run(Split(Split.Config(ratios=RATIOS)), rows, tmp_path)
    chains = splits_by(kept, lambda ex: ex.row // 3)
    assert len(chains) == 60 and all(len(s) == 1 for s in chains.values())
    assert {s for ss in chains.values() for s in ss} == set(RATIOS)  # the chains still spread over the splits


def test_group_by_no_longer_hides_near_duplicate_clusters(tmp_path):
    """A `group_by` column used to replace the near-dup tag, so a cluster could straddle splits."""
    rows = [make(i, group=f"near:s:{i // 2}", meta={"user": f"u{i}"}) for i in range(200)]  # pairs, own users
    kept, _ = run(Split(Split.Config(ratios=RATIOS, group_by="user")), rows, tmp_path)
    assert all(len(s) == 1 for s in splits_by(kept, lambda ex: ex.row // 2).values())


def test_near_dedup_tagging_keeps_a_preference_rows_prompt_group(tmp_path):
    """Tag mode adds its cluster beside the prompt group instead of overwriting it."""
    answer = "the quick brown fox jumps over the lazy dog near the river bank today"
    rows = [make(0, assistant=answer, group="prompt-a"), make(1, assistant=answer + " again", group="prompt-b")]
    tagged, _ = run(NearDedup(NearDedup.Config(action="tag", threshold=0.5)), rows, tmp_path)
    groups = [ex.group for ex in tagged]
    assert groups[0].startswith("prompt-a|near:") and groups[1].startswith("prompt-b|near:")
    assert groups[0].split("|")[1] == groups[1].split("|")[1]


def test_group_by_on_a_column_no_row_has_stops_with_one_line(tmp_path):
    """Not grouping at all, then blaming chance in the ratio warning, hid a missing `keep_columns` entry."""
    rows = [make(i) for i in range(10)]
    ctx = StageContext("split", tmp_path / "rejected", extra={"ignored_columns": {"topic": 10}})
    with pytest.raises(DataError) as error:
        Split(Split.Config(group_by="topic")).run(rows, ctx)
    assert str(error.value) == ("split.group_by: column 'topic' is on no row; add keep_columns: [topic] to the source "
                                "(it was listed as an ignored column)")


def test_group_by_missing_on_some_rows_warns_and_groups_those_rows_alone(tmp_path):
    """40 rows share 4 topics; 6 rows have no topic (or a null one) and each goes its own way."""
    rows = [make(i, meta={"topic": f"t{i % 4}"}) for i in range(40)]
    rows += [make(40 + i, meta={} if i % 2 else {"topic": None}) for i in range(6)]
    kept, record = run(Split(Split.Config(ratios=RATIOS, group_by="topic")), rows, tmp_path)
    assert record.findings["warnings"][0] == ("split.group_by: column 'topic' is missing on 6 of 46 rows (e.g. "
                                              "s.jsonl:41, s.jsonl:42, s.jsonl:43); those rows are grouped alone")
    assert record.findings["groups"] == 4  # the four topics; the six rows without one are groups of one
    assert all(len(s) == 1 for s in splits_by(kept[:40], lambda ex: ex.meta["topic"]).values())


def test_group_by_on_an_unkept_column_exits_2_through_the_cli(tmp_path, tiny_tokenizer_dir, capsys):
    source = tmp_path / "topics.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"question {i}", "output": f"answer {i}",
                                          "topic": f"t{i % 3}"}) + "\n" for i in range(12)), encoding="utf-8")
    config = tmp_path / "curate.yaml"
    config.write_text(json.dumps({"name": "topics", "output_dir": str(tmp_path / "out"),
                                  "tokenizer": str(tiny_tokenizer_dir), "sources": [{"path": str(source)}]}))
    assert main(["curate", str(config), "stages.split.group_by=topic"]) == 2
    printed = capsys.readouterr()
    assert ("split.group_by: column 'topic' is on no row; add keep_columns: [topic] to the source (it was listed as "
            "an ignored column)") in printed.err
    assert "Traceback" not in printed.out + printed.err


def test_stratify_on_a_column_no_row_has_stops_too(tmp_path):
    rows = [make(i) for i in range(10)]
    with pytest.raises(DataError, match=r"^split.stratify: column 'lang' is on no row; add keep_columns: \[lang\]"):
        Split(Split.Config(stratify="lang")).run(rows, StageContext("split", tmp_path / "rejected"))
