"""`train` and `eval` refuse a preference card in one sentence (exit 2) before any model is looked up.

Preference data is curated into a card with `task: preference`; DPO training comes in a later issue.
Run: .venv/bin/python -m pytest tests/train/test_preference_card.py -q
"""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.curate.test_preference_curate import config_for, pairs, write_jsonl
from tunesmith.artifacts import CardError, RunManifest, iter_split_rows, open_card, read_card, write_run
from tunesmith.cli import main
from tunesmith.provenance import code_record

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture
def preference_card(tmp_path, tiny_tokenizer_dir) -> Path:
    source = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    config = tmp_path / "curate.json"
    config.write_text(json.dumps(config_for(tmp_path, tiny_tokenizer_dir, source).model_dump(mode="json")))
    assert main(["curate", str(config)]) == 0  # the command a user runs
    version = tmp_path / "out" / "prefs" / "v1"
    assert read_card(version).task == "preference"
    return version / "card.json"


def refusal(capsys) -> str:
    said = " ".join(capsys.readouterr().err.split())  # the log wraps long lines
    assert "Traceback" not in said
    return said


def test_train_refuses_a_preference_card_with_exit_2_before_looking_up_the_model(preference_card, tmp_path, capsys):
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"card": str(preference_card), "model": str(tmp_path / "no-such-model"),
                                 "output_dir": str(tmp_path / "runs")}))
    capsys.readouterr()
    assert main(["train", str(train)]) == 2
    said = refusal(capsys)
    assert ("dataset prefs v1 is a preference card (task: preference); tunesmith trains and evaluates SFT cards only "
            "for now (DPO training comes later); curate an SFT dataset") in said
    assert "no-such-model" not in said  # the card was refused first: the missing model was never reached
    assert not (tmp_path / "runs").exists()  # and no run folder was made


def test_eval_refuses_a_run_whose_card_is_a_preference_card(preference_card, tmp_path, capsys):
    """A run.json pointing at a preference card (made by hand: train never makes one) is refused the same way."""
    card = read_card(preference_card)
    run_dir = tmp_path / "runs" / "by-hand"
    run_dir.mkdir(parents=True)
    write_run(RunManifest(run_id="by-hand", card_fingerprint=card.fingerprint, card_path=str(preference_card),
                          base_model=str(tmp_path / "no-such-model"), quantization="none", device="cpu", config={},
                          final_metrics={}, wall_seconds=0.0, created_at=datetime.now(timezone.utc),
                          code=code_record()), run_dir)
    capsys.readouterr()
    assert main(["eval", str(CONFIGS / "eval" / "default.yaml"), f"run={run_dir}"]) == 2
    said = refusal(capsys)
    assert "is a preference card (task: preference)" in said and "curate an SFT dataset" in said
    assert not (run_dir / "eval").exists()


def test_an_sft_card_edited_to_hide_preference_rows_is_refused_by_its_rows(preference_card):
    """card.task is not in the fingerprint, so the rows themselves must agree with it: task edited to sft is caught."""
    data = json.loads(preference_card.read_text())
    data["task"] = "sft"
    preference_card.write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"-of-\d+\.parquet row 1: field rejected: present, but the card's task is sft"):
        open_card(preference_card)


@pytest.mark.parametrize("extra, said", [
    ({"rejected": [{"role": "user", "content": "x"}]}, r"field rejected\.0\.role: 'user', not one of assistant, tool"),
    ({"rejected": []}, r"field rejected: list, not a non-empty list of messages"),
    ({"rejected": [{"role": "assistant", "content": 3}]}, r"field rejected\.0\.content: int, not a string"),
    ({"label": "yes"}, r"field label: 'yes', not true or false"),
])
def test_split_rows_with_a_malformed_rejected_answer_or_label_are_refused_by_field(tmp_path, extra, said):
    """What train and eval would index on a preference/KTO row is checked, naming file:line and field."""
    row = {"id": "p:0", "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({**row, **extra}) + "\n")
    with pytest.raises(CardError, match=r"train\.jsonl:1: " + said):
        list(iter_split_rows(path, "train"))


def test_a_preference_card_without_rejected_answers_is_refused_when_read_as_one(tmp_path):
    """With the card's task, a preference row must hold its rejected answer."""
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"id": "p:0", "messages": [{"role": "user", "content": "Q"},
                                                          {"role": "assistant", "content": "A"}]}) + "\n")
    assert len(list(iter_split_rows(path, "train", "sft"))) == 1
    with pytest.raises(CardError, match=r"field rejected: missing, but the card's task is preference"):
        list(iter_split_rows(path, "train", "preference"))
