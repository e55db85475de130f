"""`exact_dedup` and `split` as global stages: run over the whole list and streamed by the engine (small batches,
one or two workers) they keep the same rows, write the same rejected lines and the same findings; their per-row
state stays a few bytes a row; a joined split group takes the position of its smallest label, as before.

Run: pytest tests/curate/test_dedup_split_streamed.py -q
"""

import random
import sys

import numpy as np

from tests.curate.engine_helpers import comparable, run_streamed, run_whole
from tunesmith.curate.dedup import ExactDedup
from tunesmith.curate.record import Example, Message
from tunesmith.curate.split import Split
from tunesmith.curate.split_keys import label_hash
from tunesmith.curate.stage import ListStore, StageContext


def row(i: int, user: str, assistant: str = "Sure.", **changes) -> Example:
    return Example(id=f"s:{i}", source="s.jsonl", row=i, line=i + 1,
                   messages=(Message("user", user), Message("assistant", assistant)), **changes)


def all_three(stage, rows, tmp_path, extra=None):
    """The stage run whole, streamed in batches of 3 by one process, and in batches of 2 with two workers;
    asserts the three agree and returns the whole run's (survivors, record, rejected lines)."""
    runs = [run_whole(stage, rows, tmp_path / "whole", extra=extra),
            run_streamed(stage, rows, tmp_path / "one", batch_size=3, workers=1, extra=extra),
            run_streamed(stage, rows, tmp_path / "two", batch_size=2, workers=2, extra=extra)]
    first = runs[0]
    for kept, record, lines in runs[1:]:
        assert [(ex.to_json(), ex.split) for ex in kept] == [(ex.to_json(), ex.split) for ex in first[0]]
        assert lines == first[2]
        assert comparable(record) == comparable(first[1])
    return first


def dedup_rows() -> list[Example]:
    """Originals 0 and 1; 1's copy comes before 0's (so the card lists 1's group first); KTO rows with a
    contradicting label, a repeated label and an unlabelled copy; 25 rows sharing one prompt."""
    rows = [row(0, "Hello World", "Hi."), row(1, "What is 2+2?", "4"), row(2, "what is 2+2?", "4"),
            row(3, "  hello   world ", "hi."), row(4, "Hello World", "Hi."), row(5, "Rate this", "Good answer", label=True),
            row(6, "Rate this", "Good answer", label=False), row(7, "rate this", "good answer", label=True),
            row(8, "Rate this", "Good answer")]
    return rows + [row(9 + i, "Summarise the text below.", f"Summary {i % 7}.") for i in range(25)]


def test_exact_dedup_streamed_equals_whole(tmp_path):
    kept, record, lines = all_three(ExactDedup(), dedup_rows(), tmp_path)
    assert [ex.id for ex in kept][:6] == ["s:0", "s:1", "s:5", "s:6", "s:8", "s:9"]
    assert record.findings["groups"][:3] == [{"kept": "s:1", "dropped": ["s:2"]},
                                             {"kept": "s:0", "dropped": ["s:3", "s:4"]},
                                             {"kept": "s:5", "dropped": ["s:7"]}]
    assert record.findings["conflicting_labels"] == {"pairs": 1, "rows": 2}
    assert record.findings["review"][0]["id"] == "s:6" and "s:5 (s.jsonl:6)" in record.findings["review"][0]["detail"]
    assert {line["id"]: line["detail"] for line in lines}["s:4"] == "same conversation as s:0"


def test_exact_dedup_on_several_fields_streamed_equals_whole_with_its_warning(tmp_path):
    stage = ExactDedup(ExactDedup.Config(fields=["prompt", "response"], max_members_recorded=2, constant_warning=0.2))
    kept, record, lines = all_three(stage, dedup_rows(), tmp_path)
    assert record.findings["warnings"][0].startswith("key field 'prompt' has only 4 distinct values in 34 rows")
    summary = next(g for g in record.findings["groups"] if g["kept"] == "s:9")
    assert summary == {"kept": "s:9", "dropped": ["s:16", "s:23"], "dropped_total": 3}
    assert len(kept) + len(lines) == 34


def split_rows() -> list[Example]:
    """90 rows: users with several rows, a topic to stratify on (missing on some rows), preference-prompt groups
    chained to near-duplicate clusters, token counts."""
    rng = random.Random(3)
    rows = []
    for i in range(90):
        meta = {"user": f"u{i // 3}"} if i % 10 else {}
        if i % 17:
            meta["topic"] = f"t{i % 4}"
        group = [None, f"prompt{i // 4}", f"prompt{i // 4}|near:s:{i // 6}"][i % 3]
        rows.append(row(i, f"question {i}", meta=meta, group=group, trainable_tokens=rng.randrange(1, 40)))
    return rows


def test_split_by_hash_streamed_equals_whole_and_groups_stay_whole(tmp_path):
    stage = Split(Split.Config(ratios={"train": 0.5, "validation": 0.25, "test": 0.25}, group_by="user"))
    rows = split_rows()
    kept, record, _ = all_three(stage, rows, tmp_path)
    by_user: dict[str, set] = {}
    for ex in kept:
        by_user.setdefault(ex.meta.get("user", ex.id), set()).add(ex.split)
    assert all(len(splits) == 1 for splits in by_user.values())
    assert record.findings["assignment"] == "stable by hash position"
    tokens = {}
    for ex in kept:
        tokens[ex.split] = tokens.get(ex.split, 0) + ex.trainable_tokens
    assert record.findings["trainable_tokens_by_split"] == dict(sorted(tokens.items()))
    assert record.findings["warnings"][0].startswith("split.group_by: column 'user' is missing on 9 of 90 rows")


def test_split_by_exact_counts_and_strata_streamed_equals_whole(tmp_path):
    stage = Split(Split.Config(sizes={"test": 12}, stratify="topic", group_by="user"))
    kept, record, _ = all_three(stage, split_rows(), tmp_path, extra={"ignored_columns": {}})
    assert record.findings["assignment"] == "exact counts"
    assert sum(record.findings["strata"]["test"].values()) == record.findings["sizes"]["test"]
    assert any("'topic' is missing on 6 of 90 rows" in w for w in record.findings["warnings"])


def test_split_without_token_counts_has_no_token_finding(tmp_path):
    rows = [ex.replace(trainable_tokens=None) for ex in split_rows()]
    _, record, _ = all_three(Split(), rows, tmp_path)
    assert "trainable_tokens_by_split" not in record.findings


def test_a_joined_group_takes_the_split_of_its_smallest_label(tmp_path):
    """Chains "zeta<i>|alpha<i>" + "zeta<i>": each chain lands where a lone row labelled alpha<i> lands."""
    ratios = {"train": 0.5, "validation": 0.25, "test": 0.25}
    chains = [row(2 * i, "q", group=f"zeta{i}|alpha{i}") for i in range(40)]
    chains += [row(2 * i + 1, "q", group=f"zeta{i}") for i in range(40)]
    alone = [row(i, "q", group=f"alpha{i}") for i in range(40)]
    joined, _ = Split(Split.Config(ratios=ratios)).run(chains, StageContext("split", None))
    single, _ = Split(Split.Config(ratios=ratios)).run(alone, StageContext("split", None))
    expected = {ex.row: ex.split for ex in single}
    assert {ex.id: ex.split for ex in joined} == {ex.id: expected[ex.row // 2] for ex in joined}
    assert len(set(expected.values())) == 3


def test_group_positions_as_floats_match_python_division():
    """numpy's uint64 -> float64 rounds as Python's int / 2**64 does, so positions (and ties) are unchanged."""
    rng = random.Random(5)
    hashes = [label_hash(0, f"label{i}") for i in range(2000)] + [2**64 - 1, 2**63 + 1, 1, 0, 2**53 + 1]
    hashes += [rng.getrandbits(64) for _ in range(2000)]
    ours = (np.array(hashes, dtype=np.uint64).astype(np.float64) / 2**64).tolist()
    assert ours == [h / 2**64 for h in hashes]


def generated(batch: int, size: int, duplicates_every: int = 10) -> list[Example]:
    """Batch `batch` of made-up rows; every 10th row repeats row 0's conversation."""
    start = batch * size
    return [row(i, f"question {i if i % duplicates_every else 0}", f"answer {i if i % duplicates_every else 0}",
                meta={"user": f"u{i // 5}"}) for i in range(start, start + size)]


def deep_size(value, seen: set | None = None) -> int:
    """Bytes held by a stage state: its arrays (numpy's getsizeof counts the data it owns), containers, items."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, np.ndarray) and value.base is not None:  # a view: getsizeof leaves its data out
        size += value.nbytes
    elif isinstance(value, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in value.items())
    elif isinstance(value, (list, tuple, set)):
        size += sum(deep_size(item, seen) for item in value)
    elif hasattr(value, "__dict__"):
        size += deep_size(vars(value), seen)
    return size


def state_bytes_per_row(stage, rows: int, size: int = 2000) -> tuple[float, float]:
    """(bytes a row held by the state after pass 1, bytes a row it keeps after the resolve)."""
    ctx = StageContext(stage.name, None)
    state = stage.open(ctx)
    empty = deep_size(state)
    for batch in range(rows // size):
        stage.add_keys(generated(batch, size), batch * size, state, ctx)
    keys = deep_size(state) - empty
    stage.resolve(state, ListStore([]), ctx)  # no joined groups here: nothing is read back
    return keys / rows, (deep_size(state) - empty) / rows


def test_exact_dedup_keeps_under_24_bytes_a_row_on_200k_rows():
    keys, kept = state_bytes_per_row(ExactDedup(), 200_000)
    assert keys < 24, f"{keys:.1f} bytes a row after pass 1"  # 16-byte digest + label byte, bytearray slack
    assert kept < 8, f"{kept:.1f} bytes a row after the resolve"  # 10% duplicates: 16 bytes each, plus heads


def test_split_keeps_under_24_bytes_a_row_on_100k_rows():
    keys, kept = state_bytes_per_row(Split(Split.Config(group_by="user")), 100_000)
    assert keys < 24, f"{keys:.1f} bytes a row after pass 1"  # 8 for the row's one label (its user), array slack
    assert kept < 4, f"{kept:.1f} bytes a row after the resolve"  # the row's split, 2 bytes
