"""`tunesmith curate` on preference and KTO files: a card with `task`, split rows with `rejected`/`label`,
dedup on (prompt, chosen, rejected), prompt groups kept on one side of the split, a mix of tasks refused.

Run: .venv/bin/python -m pytest tests/curate/test_preference_curate.py -q
"""

import json
from collections import defaultdict
from pathlib import Path

import pytest

from tunesmith.artifacts import CardError, open_card, read_card
from tunesmith.card_integrity import split_rows as card_split_rows
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.errors import UsageError

TOPICS = ["sky", "sea", "grass", "snow", "coal", "rust", "lime", "plum", "sand", "ink", "gold", "moss"]
STAGES = [{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "token_stats", "max_seq_len": 128},
          {"stage": "split", "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}]


def pairs() -> list[dict]:
    """Three pairs per prompt (TRL's conversational shape), plus the cases dedup and validate must see."""
    rows = []
    for topic in TOPICS:
        prompt = [{"role": "user", "content": f"What colour is {topic} usually, in one word?"}]
        for n, (good, bad) in enumerate([("first", "wrong"), ("second", "silly"), ("third", "rude")]):
            rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": f"The {good} {topic} answer."}],
                         "rejected": [{"role": "assistant", "content": f"A {bad} {topic} reply number {n}."}]})
    rows.append(dict(rows[0]))  # an exact duplicate of (prompt, chosen, rejected): dropped
    rows.append({**rows[1], "rejected": [{"role": "assistant", "content": "Another bad reply."}]})  # new rejected: kept
    rows.append({**rows[2], "rejected": rows[2]["chosen"]})  # chosen == rejected: rejected by validate
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def config_for(tmp_path: Path, tokenizer: Path, *paths: Path, name="prefs") -> CurateConfig:
    return CurateConfig(name=name, output_dir=str(tmp_path / "out"), tokenizer=str(tokenizer), stages=STAGES,
                        sources=[{"path": str(p)} for p in paths], gates={"min_rows": 5})


@pytest.fixture
def preference_version(tmp_path, tiny_tokenizer_dir) -> Path:
    source = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    return run_curate(config_for(tmp_path, tiny_tokenizer_dir, source)).directory


def split_rows(version: Path) -> dict[str, list[dict]]:
    card = read_card(version)
    return {name: list(card_split_rows(version, s, name)) for name, s in card.splits.items()}


def test_a_preference_file_becomes_a_preference_card_whose_rows_hold_prompt_chosen_and_rejected(preference_version):
    card = read_card(preference_version)
    assert card.task == "preference" and card.sources[0].format == "preference"
    rows = [row for rows in split_rows(preference_version).values() for row in rows]
    assert len(rows) >= len(TOPICS) * 3  # (exact counts: the dedup test below)
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["messages"][-1]["content"] != row["rejected"][0]["content"]
    validate = card.stage("validate")
    assert validate.rows_rejected == 1
    rejected = [json.loads(line) for line in (preference_version / validate.rejected_file).read_text().splitlines()]
    assert rejected[0]["reason"] == "chosen_equals_rejected" and rejected[0]["field"] == "rejected"
    # the verdict must not read as "go and train": train refuses this card
    assert card.verdict["task"] == "preference" and "`tunesmith train` refuses it" in card.verdict["sentence"]


def test_exact_dedup_keys_on_prompt_chosen_and_rejected(preference_version):
    """The repeated pair is dropped; the pair that differs only in its rejected answer is kept."""
    dedup = read_card(preference_version).stage("exact_dedup")
    assert dedup.rows_rejected == 1
    rows = [row for rows in split_rows(preference_version).values() for row in rows]
    assert len(rows) == len(TOPICS) * 3 + 1  # 36 pairs + the one with a new rejected answer
    second_sky = [row for row in rows if row["messages"][-1]["content"] == "The second sky answer."]
    assert sorted(row["rejected"][0]["content"] for row in second_sky) == [
        "A silly sky reply number 1.", "Another bad reply."]


def test_token_stats_counts_the_rejected_answers_too(preference_version):
    """Every kept pair's rejected answer is tokenized: one per row, with trainable tokens of its own."""
    stats = read_card(preference_version).stage("token_stats")
    rejected = stats.findings["rejected_answers"]
    assert rejected["rows"] == stats.rows_in and rejected["trainable_tokens"]["total"] > 0


def test_rows_sharing_a_prompt_never_straddle_splits(preference_version):
    where: dict[str, set[str]] = defaultdict(set)
    for name, rows in split_rows(preference_version).items():
        for row in rows:
            where[row["messages"][0]["content"]].add(name)
    assert len(where) == len(TOPICS)
    assert all(len(splits) == 1 for splits in where.values()), where
    assert len(set().union(*where.values())) > 1  # the prompts did spread over the splits


def test_open_card_refuses_a_preference_card_before_reading_its_rows(preference_version):
    with pytest.raises(CardError, match=r"dataset prefs v1 is a preference card \(task: preference\); tunesmith "
                                        r"trains and evaluates SFT cards only for now \(DPO training comes later\)"):
        open_card(preference_version)
    assert set(open_card(preference_version, tasks=("preference",)).rows) == {"train", "validation", "test"}


def test_kto_rows_make_a_kto_card_with_a_boolean_label_per_row(tmp_path, tiny_tokenizer_dir):
    rows = [{"prompt": f"Is {topic} {colour}?", "completion": f"{topic} is {colour}.", "label": n % 2 == 0}
            for n, (topic, colour) in enumerate(zip(TOPICS, ["blue", "green"] * 6))]
    source = write_jsonl(tmp_path / "kto.jsonl", [*rows, {"prompt": "Q?", "completion": "A.", "label": "yes"}])
    version = run_curate(config_for(tmp_path, tiny_tokenizer_dir, source, name="kto")).directory
    card = read_card(version)
    assert card.task == "kto" and card.stage("validate").rows_rejected == 1
    labels = [row["label"] for rows in split_rows(version).values() for row in rows]
    assert sorted(labels) == [False] * 6 + [True] * 6 and all("rejected" not in row
                                                              for r in split_rows(version).values() for row in r)


def test_a_mix_of_preference_and_sft_sources_is_refused_naming_both(tmp_path, tiny_tokenizer_dir):
    prefs = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"prompt": "Q?", "completion": "A."}])
    with pytest.raises(UsageError, match=r"pairs\.jsonl \(preference.*chat\.jsonl \(sft") as caught:
        run_curate(config_for(tmp_path, tiny_tokenizer_dir, prefs, chat))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out" / "prefs" / "v1").exists()
