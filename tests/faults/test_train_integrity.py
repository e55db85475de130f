"""Train integrity on the tiny model: --resume refuses changed settings, one writer per run folder, unique run
names, a run's adapter depends only on its seed, Ctrl-C/SIGTERM end in one line, split names and `~` paths.

The second writer, SIGINT and SIGTERM are real processes (tests/faults/cli_worker.py); the rest runs in-process.
Run: .venv/bin/python -m pytest tests/faults/test_train_integrity.py -q
"""

import json
import os
import random
import shutil
import signal
import time
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer

from tests.train.runs import config_for, lora_tensors
from tunesmith.artifacts import read_card, read_run
from tunesmith.cli import main
from tunesmith.config import dump_config, load_config
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.errors import Interrupted, UsageError
from tunesmith.models import BaseIdentity
from tunesmith.train import model as train_model
from tunesmith.train import run_folder
from tunesmith.train.checkpoints import COMPLETE, STAGING, latest_checkpoint
from tunesmith.train.config import TrainConfig
from tunesmith.train.trainer import train

from .conftest import FIXTURE, RESUMABLE

CONSTANT = {**RESUMABLE, "schedule": "constant"}


def interrupted_at_step(config, step: int, monkeypatch) -> str:
    """Train until `step` optimizer steps are done, then Ctrl-C; the Interrupted message."""
    real_step = Trainer.training_step

    def ctrl_c(self, *args, **kwargs):
        if self.state.global_step == step:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", ctrl_c)
    with pytest.raises(Interrupted) as caught:
        train(config)
    monkeypatch.setattr(Trainer, "training_step", real_step)
    return str(caught.value)


def assert_bit_identical(a_run, b_run) -> None:
    a, b = lora_tensors(a_run), lora_tensors(b_run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def yaml_of(config, path):
    dump_config(config, path)
    return str(path)


def said(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


# ---- item 2: --resume with other settings ----

def test_resume_names_every_changed_setting_and_resumes_with_only_resumable_changes(
        card, tiny_model_dir, runs_root, straight, tmp_path, monkeypatch):
    config = config_for(card, tiny_model_dir, runs_root, run_id="changed", **RESUMABLE)
    assert interrupted_at_step(config, 5, monkeypatch) == "checkpoint-4 is complete; resume with --resume run_id=changed"
    other = run_curate(CurateConfig(name="other", output_dir=str(tmp_path / "data"), sources=[{"path": str(FIXTURE)}],
                                    gates={"min_rows": 5}, stages=[{"stage": "validate", "max_chars": 5000},
                                                                   {"stage": "split", "ratios": {"train": 1.0}}]))
    changed = config.model_copy(update={"card": str(other.directory / "card.json"), "learning_rate": 1e-3,
                                        "seed": 7, "lora": config.lora.model_copy(update={"r": 8})})
    with pytest.raises(UsageError) as refused:
        train(changed, resume=True)
    message = str(refused.value)
    named = message.split(" with other settings than the run started with: ")[1].split(". Put them back")[0]
    assert sorted(named.split("; ")) == sorted([
        f"card fingerprint: {read_card(card).fingerprint[:16]} -> {other.card.fingerprint[:16]}",
        "learning_rate: 0.005 -> 0.001", "lora.r: 4 -> 8", "seed: 0 -> 7"]), message  # each one, and only those
    assert "\n" not in message
    run = runs_root / "runs" / "changed"
    assert latest_checkpoint(run / "checkpoints").name == "checkpoint-4"  # the refusal touched nothing
    relaxed = config.model_copy(update={"logging_steps": 2, "save_steps": 3, "keep_checkpoints": 1})
    assert_bit_identical(straight, train(relaxed, resume=True))
    manifest = read_run(run)
    assert manifest.config["logging_steps"] == 2 and manifest.torch_threads == torch.get_num_threads()
    assert {p.name for p in run.iterdir()} == {"adapter", "config.resolved.yaml", "metrics.jsonl", "run.json"}


def test_max_steps_may_be_raised_on_resume_only_with_a_constant_schedule(card, tiny_model_dir, runs_root, monkeypatch):
    cosine = config_for(card, tiny_model_dir, runs_root, run_id="longer-cosine", **{**RESUMABLE, "max_steps": 6})
    interrupted_at_step(cosine, 5, monkeypatch)
    with pytest.raises(UsageError, match=r"max_steps: 6 -> 8 \(the cosine schedule"):
        train(cosine.model_copy(update={"max_steps": 8}), resume=True)
    long = train(config_for(card, tiny_model_dir, runs_root, run_id="constant-8", **CONSTANT))
    short = config_for(card, tiny_model_dir, runs_root, run_id="longer-constant", **{**CONSTANT, "max_steps": 6})
    interrupted_at_step(short, 5, monkeypatch)
    with pytest.raises(UsageError, match=r"max_steps: 6 -> 3 \(the checkpoint is at step 4"):
        train(short.model_copy(update={"max_steps": 3}), resume=True)
    assert_bit_identical(long, train(short.model_copy(update={"max_steps": 8}), resume=True))


def scale_weights(base):
    weights = load_file(base / "model.safetensors")
    save_file({k: v * 1.01 for k, v in weights.items()}, str(base / "model.safetensors"), metadata={"format": "pt"})


def edit_chat_template(base):
    template = base / "chat_template.jinja"
    template.write_text(template.read_text().replace("<|im_start|>", "<|im_start|> "))


@pytest.mark.parametrize(("edit", "changed"), [(scale_weights, "model.safetensors"),
                                               (edit_chat_template, "chat_template.jinja")])
def test_resume_refuses_a_changed_base_file_naming_it(card, tiny_model_dir, runs_root, tmp_path, monkeypatch, edit,
                                                      changed):
    """Steps after the checkpoint must not train another model or another prompt encoding than steps 1..N."""
    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    config = config_for(card, base, runs_root, run_id=f"new-base-{changed}", **RESUMABLE)
    interrupted_at_step(config, 3, monkeypatch)
    edit(base)
    with pytest.raises(UsageError, match=rf"base model files: {changed} changed \([0-9a-f]{{12}} -> [0-9a-f]{{12}}\) "
                                         r"\(fingerprint [0-9a-f]{16} -> [0-9a-f]{16}\)") as refused:
        train(config, resume=True)
    assert str(refused.value).count("base model files") == 1 and "config.json" not in str(refused.value)


def test_a_run_started_before_the_base_fingerprint_is_resumed_by_its_weights_alone(card, tiny_model_dir, runs_root):
    """started.json without base_model_fingerprint: an edited config.json is not held against it (it was never
    recorded), changed weights still are."""
    config = config_for(card, tiny_model_dir, runs_root, run_id="old", **RESUMABLE)
    base = train_model.training_base(tiny_model_dir)
    old_started = {"card_fingerprint": read_card(card).fingerprint, "base_model_sha256": base.weights_sha256,
                   "config": config.model_dump(mode="json")}
    fingerprint = read_card(card).fingerprint
    edited = BaseIdentity(base.weights_sha256, "f" * 64, {**base.files, "config.json": "0" * 64})
    assert run_folder.resume_changes(old_started, config, fingerprint, edited, 4) == []
    other = BaseIdentity("e" * 64, "f" * 64, {})
    assert run_folder.resume_changes(old_started, config, fingerprint, other, 4) == [
        f"base weights sha256: {base.weights_sha256[:16]} -> {'e' * 16}"]


# ---- item 8: the adapter depends on the run's seed only ----

def test_random_draws_before_training_and_during_model_loading_leave_the_adapter_bit_identical(
        card, tiny_model_dir, runs_root, straight, monkeypatch):
    """A cold model cache converts the embedded model (a randomly initialised model) between train()'s start and
    LoRA init; here every source of randomness is drawn from there and before train() is called."""
    real_resolve = train_model.resolve_model_dir

    def cold_cache(*args, **kwargs):
        torch.rand(1000), random.random(), np.random.rand(10)
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(train_model, "resolve_model_dir", cold_cache)
    torch.rand(1000), random.random()
    cold = train(config_for(card, tiny_model_dir, runs_root, run_id="cold", **RESUMABLE))
    assert_bit_identical(straight, cold)
    assert read_run(cold).torch_threads == torch.get_num_threads() == 1


# ---- item 3: one writer per run folder; unique default names ----

def test_a_second_train_of_a_live_run_is_refused_naming_its_pid(worker, card, tiny_model_dir, runs_root, tmp_path,
                                                                 capsys):
    config = config_for(card, tiny_model_dir, runs_root, run_id="live", **{**RESUMABLE, "max_steps": 12})
    command, run, log = ["train", yaml_of(config, tmp_path / "train.yaml")], runs_root / "runs" / "live", tmp_path / "log"
    worker.ready()
    pid = worker.start(command, tmp_path, log)
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.005)
    os.kill(pid, signal.SIGSTOP)  # held mid-training, lock and all, while the second writer tries
    try:
        capsys.readouterr()
        for flags in ([], ["--resume"]):
            assert main(command + flags) == 2
            message = said(capsys)
            assert f"run live is being written by pid {pid} " in message and "since" in message, message
            assert "continue it with --resume" not in message
    finally:
        os.kill(pid, signal.SIGCONT)
    assert worker.wait() == 0, log.read_text()[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 13))  # one writer's lines, none interleaved
    assert read_run(run).run_id == "live"


def test_default_run_names_are_unique_and_a_taken_folder_is_never_shared(card, tiny_model_dir, runs_root,
                                                                         monkeypatch):
    config = config_for(card, tiny_model_dir, runs_root, run_id=None)
    names = {run_folder.run_name(config, "abcdef0123456789") for _ in range(20)}  # within a millisecond or two
    assert len(names) == 20 and all("-abcdef01-" in name for name in names)
    taken = iter(["same", "same", "next"])
    monkeypatch.setattr(run_folder, "run_name", lambda *args: next(taken))
    with run_folder.claimed_run_folder(config, "abcdef01", resume=False) as first:
        with run_folder.claimed_run_folder(config, "abcdef01", resume=False) as second:
            assert (first.name, second.name) == ("same", "next")


# ---- Ctrl-C and SIGTERM in a real process ----

def one_error_line(log) -> str:
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if "ERROR" in line]
    assert len(errors) == 1, text[-3000:]
    return " ".join(text[text.index(errors[0]):].split())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_names_the_complete_checkpoint_and_exits_130(worker, card, tiny_model_dir, runs_root,
                                                                       tmp_path, signum):
    run_id = f"stopped-{signum.name}"
    config = config_for(card, tiny_model_dir, runs_root, run_id=run_id, **{**RESUMABLE, "max_steps": 400})
    run, log = runs_root / "runs" / run_id, tmp_path / "train.log"
    worker.ready()
    pid = worker.start(["train", yaml_of(config, tmp_path / "train.yaml")], tmp_path, log)
    deadline = time.monotonic() + 60
    while not (run / "checkpoints" / "checkpoint-2" / COMPLETE).exists():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.005)
    os.kill(pid, signum)
    assert worker.wait() == 130, log.read_text()[-3000:]
    kept = latest_checkpoint(run / "checkpoints")
    assert f"interrupted: {kept.name} is complete; resume with --resume run_id={run_id}" in one_error_line(log)
    assert not (run / "checkpoints" / STAGING).exists() and not (run / "run.json").exists()


def test_sigterm_before_any_checkpoint_leaves_nothing(worker, card, tiny_model_dir, runs_root, tmp_path):
    config = config_for(card, tiny_model_dir, runs_root, run_id="no-checkpoint",
                        **{**RESUMABLE, "max_steps": 400, "save_steps": None})
    run, log = runs_root / "runs" / "no-checkpoint", tmp_path / "train.log"
    worker.ready()
    pid = worker.start(["train", yaml_of(config, tmp_path / "train.yaml")], tmp_path, log)
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.005)
    os.kill(pid, signal.SIGTERM)
    assert worker.wait() == 130, log.read_text()[-3000:]
    assert "interrupted: nothing was kept; run again" in one_error_line(log)
    assert not run.exists()


# ---- the one-line contract for train settings ----

def test_an_unknown_train_split_is_one_line_naming_the_splits(card, tiny_model_dir, runs_root, tmp_path, capsys):
    config = config_for(card, tiny_model_dir, runs_root, run_id="nope")
    assert main(["train", yaml_of(config, tmp_path / "train.yaml"), "train_split=nope"]) == 2
    message = said(capsys)
    assert "train_split='nope'" in message and "(it has: train, validation)" in message
    assert "Traceback" not in message and not (runs_root / "runs" / "nope").exists()
    assert main(["train", str(tmp_path / "train.yaml"), "eval_split=valid"]) == 2
    assert "eval_split='valid'" in said(capsys)


def test_a_tilde_in_output_dir_and_card_means_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "train.yaml").write_text("card: ~/data/card.json\n")
    config = load_config(TrainConfig, tmp_path / "train.yaml", ["output_dir=~/runs"])
    assert (config.output_dir, config.card) == (str(tmp_path / "runs"), str(tmp_path / "data" / "card.json"))


# ---- a failed fresh start leaves no folder; run.json tells the segments of a resumed run ----

@pytest.mark.parametrize("failure", ["no trainable tokens", "missing model folder", "empty model folder"])
def test_a_fresh_train_that_fails_before_a_checkpoint_leaves_no_run_folder(card, tiny_model_dir, tmp_path, capsys,
                                                                           failure):
    """Each failure comes after the default-named folder was claimed (pre-flight after started.json and
    config.resolved.yaml): exit 2, one line, and no `runs/<time>-<fp>-<rand>/` left behind."""
    (tmp_path / "empty").mkdir()
    model, extra = {"no trainable tokens": (tiny_model_dir, {"max_seq_len": 8}),
                    "missing model folder": (tmp_path / "missing", {}),
                    "empty model folder": (tmp_path / "empty", {})}[failure]
    config = config_for(card, model, tmp_path, run_id=None, **{**RESUMABLE, **extra})
    capsys.readouterr()
    assert main(["train", yaml_of(config, tmp_path / "train.yaml")]) == 2
    message = said(capsys)
    assert "Traceback" not in message and "bug in tunesmith" not in message, message
    if failure == "no trainable tokens":
        assert "pre-flight check failed" in message and "raise max_seq_len" in message, message
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_resumed_run_json_counts_every_segment_and_its_changed_settings(card, tiny_model_dir, runs_root,
                                                                          monkeypatch):
    config = config_for(card, tiny_model_dir, runs_root, run_id="segments", **RESUMABLE)
    first_began = time.perf_counter()
    interrupted_at_step(config, 5, monkeypatch)
    first_took = time.perf_counter() - first_began
    run = runs_root / "runs" / "segments"
    resumed_began = time.perf_counter()
    train(config.model_copy(update={"logging_steps": 2}), resume=True)
    resumed_took = time.perf_counter() - resumed_began
    manifest = read_run(run)
    assert manifest.resumed_at_steps == [4]
    first, second = manifest.segments
    assert (first["resumed_at_step"], second["resumed_at_step"]) == (0, 4)
    assert first["changed_settings"] == {"logging_steps": 1} and second["changed_settings"] == {}
    assert 0 < first["seconds"] <= first_took + 0.01 and 0 < second["seconds"] <= resumed_took + 0.01
    assert manifest.wall_seconds == round(first["seconds"] + second["seconds"], 2) >= first["seconds"]
    assert not (run / "started.json").exists()


def test_a_killed_segment_is_timed_to_its_last_write(card, tiny_model_dir, runs_root, monkeypatch):
    """A SIGKILL records no seconds; the resume times the killed segment from its start to its last write."""
    config = config_for(card, tiny_model_dir, runs_root, run_id="killed-segment", **RESUMABLE)
    interrupted_at_step(config, 5, monkeypatch)
    run = runs_root / "runs" / "killed-segment"
    started = json.loads((run / "started.json").read_text())
    last_write = (run / "metrics.jsonl").stat().st_mtime
    began = datetime.fromtimestamp(last_write - 3.0, timezone.utc).isoformat(timespec="milliseconds")
    started["segments"][-1].update(seconds=None, started_at=began)  # what a SIGKILL 3 s into the run leaves
    (run / "started.json").write_text(json.dumps(started))
    manifest = read_run(train(config, resume=True))
    assert manifest.segments[0]["seconds_estimated"] is True
    assert 2.9 <= manifest.segments[0]["seconds"] <= 3.1 and manifest.wall_seconds >= 3.0
    assert "seconds_estimated" not in manifest.segments[1]
