"""The fitness verdict (tunesmith/fitness.py) from hand-made stage, split and gate records.

Run: .venv/bin/python -m pytest -q tests/test_fitness.py
"""

from tunesmith.artifacts import GateRecord, SplitRecord, StageRecord
from tunesmith.fitness import fitness_verdict


def _stage(name: str, rows_in: int, rejected: int = 0, **findings) -> StageRecord:
    return StageRecord(name=name, version="1", config={}, rows_in=rows_in, rows_out=rows_in - rejected,
                       rows_rejected=rejected, seconds=0.1, findings=findings)


def _splits(train: int) -> dict:
    return {"train": SplitRecord(file="train.jsonl", rows=train, sha256="0" * 64)}


def test_clean_data_is_fit_and_names_top_reasons_and_warnings():
    """5,000 rows, 300 duplicates dropped, one warning: fit, with the reason and a pointer to the warning."""
    stages = [_stage("validate", 5000, warnings=["instruction is one value in all 5,000 rows"]),
              _stage("exact_dedup", 5000, 300, rejected_by_reason={"exact_duplicate": 300})]
    verdict = fitness_verdict(stages, _splits(4700), [], 0.5)
    assert verdict["fit"] and not verdict["small"]
    assert verdict["sentence"] == ("Fit to train on: 4,700 rows in train (300 of 5,000 input rows rejected (6%): "
                                   "exact_dedup exact_duplicate 300); read the 1 warning(s) first")


def test_small_data_suggests_prompting():
    """Under ~100 training rows the verdict is fit but says prompting may serve better."""
    verdict = fitness_verdict([_stage("validate", 60)], _splits(60), [], 0.5)
    assert verdict["fit"] and verdict["small"] and "prompting with a few examples may serve better" in verdict["sentence"]


def test_no_usable_row_and_too_many_rejected_are_unfit():
    """All rows rejected, or more than max_rejected_rate rejected, or a failed gate: unfit, saying which."""
    gone = fitness_verdict([_stage("validate", 300, 300, rejected_by_reason={"empty_turn": 300})], _splits(0), [], 0.5)
    assert not gone["fit"] and gone["sentence"].startswith("Not fit to train on: no usable row remains")
    many = fitness_verdict([_stage("validate", 100, 60, rejected_by_reason={"too_long": 60})], _splits(40), [], 0.5)
    assert not many["fit"] and "more than the 50% that gates.max_rejected_rate allows" in many["sentence"]
    assert fitness_verdict([_stage("validate", 100, 60)], _splits(40), [], None)["fit"]  # no limit set
    gate = GateRecord(name="max_pii_rows", limit=0, value=3, passed=False)
    failed = fitness_verdict([_stage("validate", 200)], _splits(200), [gate], 0.5)
    assert not failed["fit"] and "quality gate(s) max_pii_rows failed" in failed["sentence"]
