"""Tests for the quality gates: each says which rows it measures, min_trainable_tokens counts the train split only,
and a contaminated held-out set fails the default `max_contamination_rate` gate (exit 3 through the CLI).

Run: .venv/bin/python -m pytest tests/curate/test_gates.py -q
"""

import json
import random
from pathlib import Path

import pytest

from tunesmith.artifacts import SplitRecord, StageRecord, read_card
from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.curate.card import check_gates
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import GateFailure, run_curate

FIXTURE = Path(__file__).parent.parent / "fixtures" / "sft_tiny.jsonl"
VOCAB = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrst"]


def stage(name: str, rows: int, rejected: int = 0, **findings) -> StageRecord:
    return StageRecord(name=name, version="1", config={}, rows_in=rows, rows_out=rows - rejected,
                       rows_rejected=rejected, seconds=0.0, findings=findings)


def config(**gates) -> CurateConfig:
    return CurateConfig(sources=[{"path": str(FIXTURE)}], gates=gates)


SPLITS = {"train": SplitRecord(file="train.jsonl", rows=8, sha256="0" * 64),
          "test": SplitRecord(file="test.jsonl", rows=2, sha256="0" * 64)}


def test_min_trainable_tokens_measures_the_train_split():
    stages = [stage("validate", 10), stage("token_stats", 10, trainable_tokens={"total": 1000}),
              stage("split", 10, trainable_tokens_by_split={"test": 200, "train": 800})]
    gates = {g.name: g for g in check_gates(config(min_trainable_tokens=900), stages, SPLITS)}
    gate = gates["min_trainable_tokens"]
    assert (gate.value, gate.passed, gate.measures) == (800, False, "train split")  # all splits would pass: 1000
    assert gates["min_rows"].measures == "train split" and gates["min_rows"].value == 8


def test_the_last_per_split_count_wins_and_later_drops_are_said():
    stages = [stage("validate", 10), stage("token_stats", 10, trainable_tokens={"total": 1000}),
              stage("split", 10, trainable_tokens_by_split={"test": 200, "train": 800}),
              stage("contamination", 10, rejected=1, trainable_tokens_by_split={"test": 100, "train": 800},
                    contamination_rate=0.0, contaminated_rows=1)]
    gates = {g.name: g for g in check_gates(config(min_trainable_tokens=1), stages, SPLITS)}
    assert gates["min_trainable_tokens"].measures == "train split"
    stages.append(stage("pii", 9, rejected=2))  # a stage after the last count removed rows
    gate = {g.name: g for g in check_gates(config(min_trainable_tokens=1), stages, SPLITS)}["min_trainable_tokens"]
    assert gate.measures.startswith("train split as counted by contamination (later stages removed rows")


def test_every_gate_says_what_it_measures():
    stages = [stage("validate", 10), stage("exact_dedup", 10), stage("pii", 10, rows_with_pii=0),
              stage("token_stats", 10, trainable_tokens={"total": 10}),
              stage("split", 10, trainable_tokens_by_split={"train": 10}),
              stage("contamination", 10, contaminated_rows=0, contamination_rate=0.0)]
    gates = check_gates(config(max_duplicate_rate=1, max_pii_rows=5, max_contamination_rows=5,
                               min_trainable_tokens=1, max_rejected_rate=1), stages, SPLITS)
    assert {g.name for g in gates} == {"min_rows", "max_duplicate_rate", "max_pii_rows", "max_contamination_rows",
                                       "max_contamination_rate", "min_trainable_tokens", "max_rejected_rate"}
    assert all(g.measures for g in gates)


def test_max_contamination_rate_is_on_by_default():
    assert CurateConfig(sources=[{"path": str(FIXTURE)}]).gates.max_contamination_rate == 0.05
    stages = [stage("validate", 10), stage("contamination", 10, contaminated_rows=1, contamination_rate=0.5)]
    [gate] = [g for g in check_gates(config(), stages, SPLITS) if g.name == "max_contamination_rate"]
    assert (gate.value, gate.limit, gate.passed) == (0.5, 0.05, False)


def write_config(tmp_path: Path, tokenizer: Path, source: Path, **gates) -> Path:
    path = tmp_path / "curate.yaml"
    path.write_text(json.dumps({"name": "gated", "output_dir": str(tmp_path / "out"), "tokenizer": str(tokenizer),
                                "sources": [{"path": str(source)}], "gates": gates,
                                "split_format": "jsonl"}))  # the tests read train.jsonl
    return path


def test_curated_train_tokens_are_the_train_rows_only(tmp_path, tiny_tokenizer_dir):
    """On a real curate, the gate's value is what token_stats counts on train.jsonl's rows alone."""
    from tunesmith.curate.record import Example, Message
    from tunesmith.curate.stage import StageContext
    from tunesmith.curate.token_stats import TokenStats
    from tunesmith.models import load_tokenizer

    path = write_config(tmp_path, tiny_tokenizer_dir, FIXTURE, min_trainable_tokens=1)
    card = run_curate(load_config(CurateConfig, path, ["stages.validate.max_chars=5000"])).card
    gate = next(g for g in card.gates if g.name == "min_trainable_tokens")
    total = card.stage("token_stats").findings["trainable_tokens"]["total"]
    rows = [json.loads(line) for line in (tmp_path / "out/gated" / card.version / "train.jsonl").open()]
    train = [Example(id=r["id"], source="x", row=i, line=None,
                     messages=tuple(Message(m["role"], m["content"]) for m in r["messages"]))
             for i, r in enumerate(rows)]
    ctx = StageContext("token_stats", None, extra={"tokenizer": load_tokenizer(str(tiny_tokenizer_dir))})
    TokenStats(TokenStats.Config(max_seq_len=1024)).run(train, ctx)
    assert gate.measures == "train split"
    assert gate.value == ctx.findings["trainable_tokens"]["total"] < total


def leaky_source(tmp_path: Path) -> Path:
    """30 prompts asked twice with unrelated answers: exact and near dedup keep both, so twins straddle splits."""
    rng = random.Random(0)
    rows = []
    for _ in range(30):
        prompt = " ".join(rng.choice(VOCAB) for _ in range(15))
        for _ in range(2):
            rows.append({"instruction": prompt, "output": " ".join(rng.choice(VOCAB) for _ in range(40))})
    path = tmp_path / "leaky.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_contaminated_held_out_set_fails_the_default_gate(tmp_path, tiny_tokenizer_dir, capsys):
    path = write_config(tmp_path, tiny_tokenizer_dir, leaky_source(tmp_path))
    with pytest.raises(GateFailure) as failure:
        run_curate(load_config(CurateConfig, path, ["stages.split.ratios={train: 0.6, validation: 0.2, test: 0.2}"]))
    [gate] = [g for g in failure.value.gates if not g.passed]
    assert gate.name == "max_contamination_rate" and gate.value > 0.05
    assert main(["curate", str(path), "stages.split.ratios={train: 0.6, validation: 0.2, test: 0.2}"]) == 3
    printed = capsys.readouterr()
    assert "max_contamination_rate" in printed.out + printed.err  # the gate table names the failed gate
    # dropping the leaking rows passes the same gate, and the warning says what happened
    assert main(["curate", str(path), "stages.split.ratios={train: 0.6, validation: 0.2, test: 0.2}",
                 "stages.contamination.action=drop"]) == 0
    card = read_card(next((tmp_path / "out" / "gated").glob("v*")))
    found = card.stage("contamination").findings
    assert found["contamination_rate"] == 0.0 and found["rates"]["held_out"]["rate"] > 0.05
    assert found["warnings"][0].endswith("they were dropped (`action: drop`)")
