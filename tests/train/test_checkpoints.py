"""Checkpoints and resume on the tiny model: kills mid-training and mid-save, early stopping's best adapter.

Run: .venv/bin/python -m pytest tests/train/test_checkpoints.py -q
"""

import json

import pytest
from transformers import Trainer

from tunesmith.artifacts import read_run
from tunesmith.train.checkpoints import COMPLETE, STAGING, commit_checkpoint, latest_checkpoint, prune_checkpoints
from tunesmith.train.trainer import train

from .runs import assert_same_adapter, config_for

RESUMABLE = {"quantization": "none", "max_steps": 6, "save_steps": 2, "eval_split": None}
# a constant rate high enough that eval loss rises after step 2 and patience 2 stops the run at step 4
OVERSHOOTING = {"quantization": "none", "max_steps": 12, "eval_steps": 1, "early_stopping_patience": 2,
                "learning_rate": 3.0, "schedule": "constant", "save_steps": 2}


def logged_steps(run) -> list[int]:
    return [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


class Killed(BaseException):
    """A SIGKILL as seen from inside: unlike Ctrl-C (KeyboardInterrupt) nothing tidies the staging folder."""


def train_killed_at_step(config, step: int, monkeypatch) -> None:
    """Train until `step` optimizer steps are done, then die as a killed process would (no cleanup)."""
    real_step = Trainer.training_step

    def killed(self, *args, **kwargs):
        if self.state.global_step == step:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(Trainer, "training_step", real_step)


def test_commit_renames_then_marks_and_pruning_keeps_the_newest_complete(tmp_path):
    for step in (2, 4, 6):
        staged = tmp_path / STAGING / f"checkpoint-{step}"
        staged.mkdir(parents=True)
        (staged / "weights").write_text(str(step))
        commit_checkpoint(staged, tmp_path / f"checkpoint-{step}")
    (tmp_path / "checkpoint-8").mkdir()  # renamed but never marked: the process died in between
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-6"
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert (tmp_path / "checkpoint-6" / COMPLETE).read_text() == "6"


def test_a_killed_run_resumes_to_the_same_adapter(tmp_path, card, tiny_model_dir, monkeypatch):
    straight = train(config_for(card, tiny_model_dir, tmp_path, run_id="straight", **RESUMABLE))
    config = config_for(card, tiny_model_dir, tmp_path, run_id="resumed", **RESUMABLE)
    train_killed_at_step(config, 5, monkeypatch)
    run_dir = tmp_path / "runs" / "resumed"
    assert not (run_dir / "run.json").exists()
    (run_dir / "checkpoints" / "checkpoint-5").mkdir()  # half-written: no completion marker
    with pytest.raises(FileExistsError, match="--resume"):
        train(config)
    resumed = train(config, resume=True)
    assert_same_adapter(straight, resumed)
    assert logged_steps(resumed) == [1, 2, 3, 4, 5, 6]  # from checkpoint-4, not the unmarked checkpoint-5
    assert not (resumed / "checkpoints").exists()


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_one_to_resume_from(tmp_path, card, tiny_model_dir,
                                                                                monkeypatch):
    straight = train(config_for(card, tiny_model_dir, tmp_path, run_id="straight", **RESUMABLE))
    real_save = Trainer._save_optimizer_and_scheduler

    def killed_while_saving_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise Killed("killed mid-save")
        return real_save(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", killed_while_saving_step_4)
    config = config_for(card, tiny_model_dir, tmp_path, run_id="resumed", **RESUMABLE)
    with pytest.raises(Killed):
        train(config)
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", real_save)
    checkpoints = tmp_path / "runs" / "resumed" / "checkpoints"
    assert (checkpoints / STAGING / "checkpoint-4").is_dir()  # the half-written save stayed in staging
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-2"
    resumed = train(config, resume=True)
    assert_same_adapter(straight, resumed)


def test_early_stopping_keeps_the_adapter_with_the_lowest_eval_loss(tmp_path, card, tiny_model_dir):
    run = train(config_for(card, tiny_model_dir, tmp_path, run_id="stopped", **OVERSHOOTING))
    evals = [(r["step"], r["eval_loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "eval_loss" in r]
    metrics = read_run(run).final_metrics
    during_training = evals[:-1]  # the last line is the final evaluation of the saved adapter
    best_step, best_loss = min(during_training, key=lambda pair: pair[1])
    assert metrics["best_step"] == best_step and metrics["best_eval_loss"] == pytest.approx(best_loss)
    assert best_step < during_training[-1][0]  # training went on past the best step, then stopped
    assert metrics["eval_loss"] == pytest.approx(best_loss, rel=1e-5)  # the saved adapter is the best one


def test_early_stopping_state_and_best_adapter_survive_a_resume(tmp_path, card, tiny_model_dir, monkeypatch):
    straight = train(config_for(card, tiny_model_dir, tmp_path, run_id="straight", **OVERSHOOTING))
    config = config_for(card, tiny_model_dir, tmp_path, run_id="resumed", **OVERSHOOTING)
    train_killed_at_step(config, 3, monkeypatch)  # after the best step (2) and its checkpoint
    resumed = train(config, resume=True)  # a new process would hold no best weights but those in checkpoint-2
    assert_same_adapter(straight, resumed)
    a, b = read_run(straight).final_metrics, read_run(resumed).final_metrics
    assert a["best_step"] == b["best_step"] and a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-5)
    assert logged_steps(resumed) == logged_steps(straight)
