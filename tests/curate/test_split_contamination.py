"""Tests for `split` (deterministic, ratio/size targets, groups never straddle, stratification, config checks)
and `contamination` (exact prompt and word 13-gram overlap between splits, boilerplate ignored, drop action,
and training rows that overlap a user's evaluation file).

Run: pytest tests/curate/test_split_contamination.py -q
"""

import json
import math
import random
from collections import Counter, defaultdict

import pytest
from pydantic import ValidationError

from tunesmith.curate.contamination import Contamination
from tunesmith.curate.record import Example, Message
from tunesmith.curate.split import Split
from tunesmith.curate.stage import StageContext

VOCAB = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrst"]


def make(i: int, user: str = "", assistant: str = "Sure.", split: str | None = None, **changes) -> Example:
    return Example(
        id=f"s:{i}",
        source="s.jsonl",
        row=i,
        line=i + 1,
        messages=(Message("user", user or f"question number {i}"), Message("assistant", assistant)),
        split=split,
        **changes,
    )


def run(stage, examples, tmp_path):
    kept, record = stage.run(examples, StageContext(stage.name, tmp_path / "rejected"))
    assert record.rows_in == record.rows_out + record.rows_rejected
    return kept, record


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


# --- split --------------------------------------------------------------------------------------------------------


def assignment(kept: list[Example]) -> dict[str, str]:
    return {ex.id: ex.split for ex in kept}


def test_split_is_deterministic_and_seeded(tmp_path):
    rows = [make(i) for i in range(200)]
    first, record = run(Split(), rows, tmp_path)
    again, _ = run(Split(), rows, tmp_path)
    shuffled, _ = run(Split(), list(reversed(rows)), tmp_path)
    other_seed, _ = run(Split(Split.Config(seed=1)), rows, tmp_path)

    assert assignment(first) == assignment(again) == assignment(shuffled)  # order of arrival does not matter
    assert assignment(first) != assignment(other_seed)
    assert [ex.id for ex in first] == [ex.id for ex in rows]
    assert record.rows_rejected == 0
    assert record.findings["sizes"] == dict(Counter(ex.split for ex in first))
    assert record.findings["assignment"] == "stable by hash position"


def within_sampling_noise(count: int, rows: int, ratio: float) -> bool:
    """Ratio splits place each group by its own hash, so a split's size is binomial around rows * ratio."""
    return abs(count - rows * ratio) <= 4 * math.sqrt(rows * ratio * (1 - ratio)) + 1


def test_split_sizes_follow_ratios(tmp_path):
    rows = [make(i) for i in range(2000)]
    ratios = {"train": 0.7, "validation": 0.2, "test": 0.1}
    kept, record = run(Split(Split.Config(ratios=ratios)), rows, tmp_path)
    counts = Counter(ex.split for ex in kept)
    assert all(within_sampling_noise(counts[name], 2000, ratio) for name, ratio in ratios.items()), counts
    assert sum(counts.values()) == 2000
    assert record.findings["sizes"] == dict(counts)


def test_adding_or_removing_rows_never_moves_the_others(tmp_path):
    rows = [make(i) for i in range(300)]
    before = assignment(run(Split(), rows, tmp_path)[0])
    fewer = assignment(run(Split(), rows[::2], tmp_path)[0])
    more = assignment(run(Split(), rows + [make(i) for i in range(300, 500)], tmp_path)[0])
    assert all(before[row_id] == split for row_id, split in fewer.items())
    assert all(more[row_id] == split for row_id, split in before.items())


def test_exact_counts_are_the_price_of_stratify_or_sizes(tmp_path):
    rows = [make(i, meta={"topic": "a" if i % 3 else "b"}) for i in range(300)]
    config = Split.Config(ratios={"train": 0.8, "validation": 0.1, "test": 0.1}, stratify="topic")
    kept, record = run(Split(config), rows, tmp_path)
    assert record.findings["assignment"] == "exact counts"
    assert Counter(ex.split for ex in kept) == {"train": 240, "validation": 30, "test": 30}


def test_groups_never_straddle_splits(tmp_path):
    rows = [make(i, group=f"near:s:{i - i % 5}") for i in range(200)]  # 40 groups of 5
    kept, record = run(Split(Split.Config(ratios={"train": 0.6, "validation": 0.2, "test": 0.2})), rows, tmp_path)
    splits_of = defaultdict(set)
    for ex in kept:
        splits_of[ex.group].add(ex.split)
    assert len(splits_of) == 40
    assert all(len(s) == 1 for s in splits_of.values())
    assert {s for ss in splits_of.values() for s in ss} == {"train", "validation", "test"}
    assert record.findings["groups"] == 40
    assert sum(record.findings["sizes"].values()) == 200


def test_group_by_column(tmp_path):
    rows = [make(i, meta={"doc": i // 4}) for i in range(120)]
    kept, _ = run(Split(Split.Config(group_by="doc", ratios={"train": 0.5, "test": 0.5})), rows, tmp_path)
    splits_of = defaultdict(set)
    for ex in kept:
        splits_of[ex.meta["doc"]].add(ex.split)
    assert all(len(s) == 1 for s in splits_of.values())
    counts = Counter(ex.split for ex in kept)
    assert within_sampling_noise(counts["test"], 120, 0.5) and sum(counts.values()) == 120


def test_stratify_keeps_each_category_share(tmp_path):
    categories = ["math"] * 120 + ["code"] * 60 + ["chat"] * 20
    rows = [make(i, meta={"topic": c}) for i, c in enumerate(categories)]
    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    kept, record = run(Split(Split.Config(ratios=ratios, stratify="topic")), rows, tmp_path)

    table = defaultdict(Counter)
    for ex in kept:
        table[ex.split][ex.meta["topic"]] += 1
    for topic, total in Counter(categories).items():
        for name, ratio in ratios.items():
            assert abs(table[name][topic] - ratio * total) <= 2, (name, topic, table[name][topic])
    assert record.findings["stratify"] == "topic"
    assert record.findings["strata"] == {k: dict(v) for k, v in table.items()}


def test_absolute_test_size(tmp_path):
    rows = [make(i) for i in range(200)]
    config = Split.Config(sizes={"test": 10}, ratios={"train": 0.9, "validation": 0.1})
    kept, record = run(Split(config), rows, tmp_path)
    counts = Counter(ex.split for ex in kept)
    assert counts["test"] == 10
    assert counts["validation"] == 19  # 10% of the 190 rows left
    assert counts["train"] == 171
    assert record.findings["sizes"] == {"test": 10, "train": 171, "validation": 19}


@pytest.mark.parametrize(
    "config",
    [
        {"ratios": {"train": 0.8, "test": 0.1}},
        {"ratios": {"train": 0.9, "validation": 0.1, "test": 0.1}},
        {"ratios": {"train": 1.2, "test": -0.2}},
        {"ratios": {"train": 0.9, "my split": 0.1}},
    ],
)
def test_bad_split_config_is_rejected(config):
    with pytest.raises(ValidationError):
        Split.Config(**config)


# --- contamination ------------------------------------------------------------------------------------------------


def train_rows(rng: random.Random, n: int = 10) -> list[Example]:
    return [make(i, " ".join(words(rng, 40)), " ".join(words(rng, 10)), split="train") for i in range(n)]


def test_exact_prompt_overlap(tmp_path):
    rng = random.Random(1)
    train = train_rows(rng)
    leaked = make(100, train[4].messages[0].content.upper() + " !", "A different answer.", split="test")
    clean = make(101, " ".join(words(rng, 40)), split="test")
    kept, record = run(Contamination(), [*train, leaked, clean], tmp_path)

    assert len(kept) == 12  # report only
    assert record.findings["contaminated_rows"] == 1
    [pair] = record.findings["pairs"]
    assert pair == {
        "a": "s:100",
        "a_split": "test",
        "b": "s:4",
        "b_split": "train",
        "kind": "exact",
        "direction": "test_vs_train",
        "span": leaked.messages[0].content,
    }


def test_ngram_overlap_records_the_shared_span(tmp_path):
    rng = random.Random(2)
    train = train_rows(rng)
    shared = train[6].messages[0].content.split()
    edited = shared[:-3] + ["changed", "ending", "here"]
    test_row = make(200, " ".join(edited), "Another answer entirely.", split="validation")
    kept, record = run(Contamination(), [*train, test_row], tmp_path)

    [pair] = record.findings["pairs"]
    assert (pair["a"], pair["b"], pair["kind"], pair["a_split"]) == ("s:200", "s:6", "ngram", "validation")
    assert pair["direction"] == "test_vs_train"
    assert pair["span"] == " ".join(["user", *shared[:12]])  # the first shared 13-gram
    assert 0.5 <= pair["overlap"] < 1


def test_small_overlap_below_min_overlap_is_not_flagged(tmp_path):
    rng = random.Random(4)
    train = train_rows(rng)
    # one shared 13-word phrase in a long otherwise new row: well under half of its n-grams
    phrase = train[2].messages[0].content.split()[:13]
    test_row = make(300, " ".join(words(rng, 40) + phrase + words(rng, 40)), split="test")
    _, record = run(Contamination(), [*train, test_row], tmp_path)
    assert record.findings["contaminated_rows"] == 0
    _, flagged = run(Contamination(Contamination.Config(min_overlap=0.01)), [*train, test_row], tmp_path)
    assert [p["b"] for p in flagged.findings["pairs"]] == ["s:2"]


def test_boilerplate_shared_by_many_rows_is_ignored(tmp_path):
    rng = random.Random(3)
    boilerplate = (
        "you are a careful assistant read the following request slowly and answer it in plain "
        "words with one short example and no more than three sentences please"
    )
    assert len(boilerplate.split()) == 27
    train = [make(i, f"{boilerplate} {' '.join(words(rng, 5))}", split="train") for i in range(12)]
    test_row = make(400, f"{boilerplate} {' '.join(words(rng, 5))}", split="test")

    _, record = run(Contamination(), [*train, test_row], tmp_path)
    assert record.findings["contaminated_rows"] == 0
    assert record.findings["pairs"] == []
    # with a higher boilerplate limit the same sentence counts as leakage
    _, strict = run(Contamination(Contamination.Config(boilerplate_rows=20)), [*train, test_row], tmp_path)
    assert strict.findings["contaminated_rows"] == 1
    assert strict.findings["pairs"][0]["kind"] == "ngram"


def test_drop_rejects_flagged_rows(tmp_path):
    rng = random.Random(5)
    train = train_rows(rng)
    exact = make(100, train[1].messages[0].content, split="test")
    near = make(101, " ".join(train[8].messages[0].content.split()[:-2] + ["new", "words"]), split="test")
    clean = make(102, " ".join(words(rng, 40)), split="test")
    kept, record = run(Contamination(Contamination.Config(action="drop")), [*train, exact, near, clean], tmp_path)

    assert [ex.id for ex in kept] == [f"s:{i}" for i in range(10)] + ["s:102"]
    assert record.findings["rejected_by_reason"] == {"contaminated": 2}
    assert record.rejected_file == "rejected/contamination.jsonl"
    rejected = {
        row["id"]: row
        for row in map(json.loads, (tmp_path / "rejected" / "contamination.jsonl").read_text().splitlines())
    }
    assert rejected["s:100"]["detail"].startswith("exact overlap with s:1: ")
    assert rejected["s:101"]["detail"].startswith("ngram overlap with s:8: user ")


def test_eval_file_overlap_flags_the_training_row(tmp_path):
    rng = random.Random(6)
    train = train_rows(rng)
    eval_path = tmp_path / "my_eval.jsonl"
    eval_rows = [
        {"prompt": " ".join(words(rng, 30)), "completion": "x"},
        {"prompt": train[3].messages[0].content, "completion": train[3].messages[1].content},
    ]
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in eval_rows), encoding="utf-8")
    config = {"eval_files": [str(eval_path)]}

    kept, record = run(Contamination(Contamination.Config(**config)), train, tmp_path)
    assert len(kept) == 10
    [pair] = record.findings["pairs"]
    assert pair["a"] == "s:3"
    assert pair["a_split"] == "train"
    assert pair["b"] == "eval:my_eval:1"
    assert pair["b_split"] == "eval_file"
    assert pair["direction"] == "train_vs_eval_file"
    assert pair["kind"] == "exact"

    kept, record = run(Contamination(Contamination.Config(action="drop", **config)), train, tmp_path / "drop")
    assert "s:3" not in {ex.id for ex in kept}
    assert record.findings["rejected_by_reason"] == {"contaminated": 1}


# --- asked vs achieved ratios, contamination rate -------------------------------------------------------------------


def test_achieved_ratios_are_recorded_beside_the_asked(tmp_path):
    rows = [make(i, meta={"topic": "a" if i % 3 else "b"}) for i in range(300)]
    config = Split.Config(ratios={"train": 0.8, "validation": 0.1, "test": 0.1}, stratify="topic")
    _, record = run(Split(config), rows, tmp_path)
    assert record.findings["ratios"] == {
        "train": {"asked": 0.8, "achieved": 0.8, "rows": 240},
        "validation": {"asked": 0.1, "achieved": 0.1, "rows": 30},
        "test": {"asked": 0.1, "achieved": 0.1, "rows": 30},
    }
    assert record.findings["warnings"] == []


def test_absolute_sizes_are_asked_as_shares_of_all_rows(tmp_path):
    config = Split.Config(sizes={"test": 10}, ratios={"train": 0.9, "validation": 0.1})
    _, record = run(Split(config), [make(i) for i in range(200)], tmp_path)
    assert record.findings["ratios"]["test"] == {"asked": 0.05, "achieved": 0.05, "rows": 10}
    assert record.findings["ratios"]["validation"]["asked"] == 0.095  # 10% of the 190 rows left, of 200


def test_a_group_split_skewed_by_large_groups_warns_with_the_cause(tmp_path):
    """The issue's case: whole groups of 10 rows cannot give 10% / 10% on 200 rows; the card says so, and why."""
    rows = [make(i, meta={"doc": i // 10}) for i in range(200)]  # 20 documents of 10 rows
    config = Split.Config(group_by="doc", ratios={"train": 0.8, "validation": 0.1, "test": 0.1})
    kept, record = run(Split(config), rows, tmp_path)
    ratios = record.findings["ratios"]
    counts = Counter(ex.split for ex in kept)
    assert {name: r["rows"] for name, r in ratios.items()} == {"train": 180, "validation": 0, "test": 20}
    assert all(r["achieved"] == counts.get(name, 0) / 200 for name, r in ratios.items())
    off = [name for name, r in ratios.items() if abs(r["achieved"] - r["asked"]) > 0.02]
    assert off == ["train", "validation"]  # test got its 10% (2 groups); validation got no group at all
    assert len(record.findings["warnings"]) == len(off)
    for name, warning in zip(off, record.findings["warnings"]):
        assert warning.startswith(f"{name} got {ratios[name]['achieved']:.1%} of the rows ({counts.get(name, 0)} of 200) "
                                  f"where {ratios[name]['asked']:.1%} was asked")
        assert "the largest holds 10 rows (5.0%)" in warning


def test_no_warning_within_the_tolerance(tmp_path):
    rows = [make(i, meta={"doc": i // 10}) for i in range(200)]
    config = Split.Config(group_by="doc", ratios={"train": 0.8, "validation": 0.1, "test": 0.1}, ratio_tolerance=1.0)
    _, record = run(Split(config), rows, tmp_path)
    assert record.findings["warnings"] == []


def leaky_held_out(rng: random.Random, held_out: int, leaked: int) -> list[Example]:
    """10 training rows and `held_out` test rows of which `leaked` repeat a training prompt."""
    train = train_rows(rng)
    test = [make(100 + i, train[i % 10].messages[0].content if i < leaked else " ".join(words(rng, 40)),
                 " ".join(words(rng, 10)), split="test") for i in range(held_out)]
    return [*train, *test]


def test_a_contaminated_held_out_set_warns_with_its_rate(tmp_path):
    """The issue's case: 101 of 102 held-out rows repeat a training prompt."""
    rows = leaky_held_out(random.Random(7), 102, 101)
    kept, record = run(Contamination(), rows, tmp_path)
    assert len(kept) == len(rows)
    assert record.findings["rates"] == {"held_out": {"rows": 102, "contaminated": 101, "rate": 0.9902}}
    assert record.findings["contamination_rate"] == 0.9902
    [warning] = record.findings["warnings"]
    assert warning.startswith("101 of 102 held-out (validation + test) rows (99.0%) overlap training rows")
    assert "action: drop" in warning


def test_a_rate_under_warn_rate_gives_no_warning_and_drop_leaves_none(tmp_path):
    rows = leaky_held_out(random.Random(8), 200, 1)
    _, record = run(Contamination(), rows, tmp_path)
    assert record.findings["contamination_rate"] == 0.005 and record.findings["warnings"] == []
    _, dropped = run(Contamination(Contamination.Config(action="drop", warn_rate=0.0)), rows, tmp_path / "drop")
    assert dropped.findings["rates"]["held_out"]["rate"] == 0.005
    assert dropped.findings["contamination_rate"] == 0.0  # the leaking row is no longer in the version
    assert dropped.findings["warnings"][0].endswith("they were dropped (`action: drop`)")


def test_eval_file_rate_counts_the_eval_rows_found_in_training(tmp_path):
    rng = random.Random(9)
    train = train_rows(rng)
    eval_path = tmp_path / "bench.jsonl"
    rows = [{"prompt": train[i].messages[0].content, "completion": "x"} for i in range(3)]
    rows += [{"prompt": " ".join(words(rng, 30)), "completion": "y"} for _ in range(1)]
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _, record = run(Contamination(Contamination.Config(eval_files=[str(eval_path)])), train, tmp_path)
    assert record.findings["rates"][f"eval_file:{eval_path}"] == {"rows": 4, "contaminated": 3, "rate": 0.75}
    assert record.findings["rates"]["held_out"] == {"rows": 0, "contaminated": 0, "rate": 0.0}
    assert record.findings["contamination_rate"] == 0.75
    assert record.findings["warnings"][0].startswith(f"3 of 4 rows of {eval_path} (75.0%) overlap training rows")


def test_an_eval_files_unread_columns_give_no_keep_columns_advice(tmp_path, caplog):
    """Only an eval file's text is compared: validate's "keep one with keep_columns" advice cannot apply to it."""
    rng = random.Random(3)
    eval_path = tmp_path / "bench.jsonl"
    rows = [{"prompt": " ".join(words(rng, 20)), "completion": "y", "category": "qa"} for _ in range(4)]
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with caplog.at_level("INFO"):
        _, record = run(Contamination(Contamination.Config(eval_files=[str(eval_path)])), train_rows(rng), tmp_path)
    assert record.findings["rates"][f"eval_file:{eval_path}"]["rows"] == 4
    assert "ignored columns" not in caplog.text
