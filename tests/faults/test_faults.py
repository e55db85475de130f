"""Faults on CPU with the tiny model: SIGKILL during curate and train, a full disk during a checkpoint save, and
bit-for-bit repeatability of a card and a loss curve. Kills are real: `tunesmith` runs in a forked worker
process (tests/faults/cli_worker.py) that is SIGKILLed when a file on disk shows the moment has come.

Run: .venv/bin/python -m pytest tests/faults -q
"""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.train.runs import assert_same_adapter, config_for
from tunesmith.artifacts import read_card, split_problems
from tunesmith.cli import main
from tunesmith.config import dump_config, load_config
from tunesmith.curate.children import can_fork
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.train.checkpoints import COMPLETE, STAGING, DiskFullError, latest_checkpoint
from tunesmith.train.trainer import train

from .conftest import RESUMABLE

CHECKPOINT_FILES = {COMPLETE, "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                    "trainer_state.json"}


def losses(run) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def assert_resumable(checkpoints) -> None:
    """The checkpoint a resume would pick is whole: every file of a save is there."""
    latest = latest_checkpoint(checkpoints)
    assert latest is None or CHECKPOINT_FILES <= {p.name for p in latest.iterdir()}, latest


def yaml_of(config, path):
    dump_config(config, path)
    return str(path)


# ---- in-process faults first: the CLI worker imports torch in the background meanwhile ----

def test_a_full_disk_during_a_checkpoint_save_exits_2_and_keeps_the_previous_one(
        card, tiny_model_dir, runs_root, straight, tmp_path, monkeypatch, capsys):
    config = config_for(card, tiny_model_dir, runs_root, run_id="full-disk", **RESUMABLE)
    real_save = torch.save

    def disk_fills_at_step_4(obj, path, *args, **kwargs):
        if "checkpoint-4" in str(path):
            with open(path, "wb") as handle:
                handle.write(b"\0" * 100)  # the part that fitted
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_at_step_4)
    assert main(["train", yaml_of(config, tmp_path / "train.yaml")]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "checkpoint-4: the disk is full" in said and "checkpoint-2 is intact" in said and "--resume" in said
    monkeypatch.setattr(torch, "save", real_save)
    checkpoints = runs_root / "runs" / "full-disk" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2"]  # no staging, no half checkpoint-4
    assert_resumable(checkpoints)
    assert_same_adapter(straight, train(config, resume=True))


def test_a_full_disk_while_marking_a_checkpoint_complete_leaves_no_unmarked_copy(
        card, tiny_model_dir, runs_root, monkeypatch):
    config = config_for(card, tiny_model_dir, runs_root, run_id="no-marker", **RESUMABLE)
    real_replace = os.replace

    def marker_does_not_fit(src, dst, *args, **kwargs):
        if str(dst).endswith(f"checkpoint-4/{COMPLETE}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", marker_does_not_fit)
    with pytest.raises(DiskFullError, match="checkpoint-4: the disk is full .* checkpoint-2 is intact") as caught:
        train(config)
    assert caught.value.errno == errno.ENOSPC and "\n" not in str(caught.value)
    checkpoints = runs_root / "runs" / "no-marker" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2"]


def test_a_kill_while_deleting_the_checkpoints_of_a_finished_run_still_resumes(
        card, tiny_model_dir, runs_root, straight, monkeypatch):
    """After the adapter is saved the checkpoints are deleted; a kill half-way must not leave one that looks whole."""
    config = config_for(card, tiny_model_dir, runs_root, run_id="mid-delete", **RESUMABLE)
    real_rmtree = shutil.rmtree

    def killed_half_way(path, *args, **kwargs):
        if path.name in ("checkpoints", ".checkpoints-discarded") and path.is_dir() and any(path.iterdir()):
            for file in path.rglob("*"):  # everything but the markers is gone when the kill comes
                if file.is_file() and file.name != COMPLETE:
                    file.unlink()
            raise KeyboardInterrupt("killed")
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    run = runs_root / "runs" / "mid-delete"
    assert (run / "adapter").is_dir() and not (run / "run.json").exists()
    assert_resumable(run / "checkpoints")
    assert_same_adapter(straight, train(config, resume=True))


def test_same_inputs_and_seed_give_the_same_card_splits_and_loss_curve(card, tiny_model_dir, runs_root, straight,
                                                                       tmp_path):
    first = read_card(card)
    again = run_curate(CurateConfig.model_validate({**first.config, "output_dir": str(tmp_path / "again")}))
    assert again.card.fingerprint == first.fingerprint and again.directory != card.parent
    for name, split in first.splits.items():
        assert [p.file for p in again.card.splits[name].parts()] == [p.file for p in split.parts()]
        for part in split.parts():
            assert (again.directory / part.file).read_bytes() == (card.parent / part.file).read_bytes()
    rerun = train(config_for(card, tiny_model_dir, runs_root, run_id="rerun", **RESUMABLE))
    assert losses(rerun) == losses(straight) and len(losses(straight)) == RESUMABLE["max_steps"]
    assert_same_adapter(straight, rerun, atol=0)


# ---- real SIGKILLs through the CLI worker ----

def write_rows(path, n: int = 2000) -> None:
    """n chat rows of random words; the last 3% repeat earlier ones, so exact_dedup rejects some."""
    rng = random.Random(0)
    words = "order lamp chair table ship pack call deliver blue red green quick slow city street box".split()
    rows = []
    for i in range(n - n // 33):
        user = " ".join(rng.choice(words) for _ in range(25)) + f" (request {i})"
        rows.append([{"role": "user", "content": user},
                     {"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(12))}])
    rows += rows[: n - len(rows)]
    path.write_text("".join(json.dumps({"messages": messages}) + "\n" for messages in rows), encoding="utf-8")


def assert_only_complete_versions(dataset) -> None:
    """Visible version folders are whole (card.json, files matching their hashes); leftovers are `.tmp-*` (the next
    curate removes them) and the dataset folder's `.lock`."""
    for folder in dataset.iterdir():
        if folder.name.startswith("."):
            assert folder.name.startswith(".tmp-") or folder.name == ".lock", folder
            continue
        assert (folder / "card.json").is_file(), f"{folder} is visible but has no card.json"
        assert split_problems(read_card(folder), folder) == []


def test_curate_killed_at_any_moment_leaves_only_complete_versions_and_reruns_to_the_same_card(worker, tmp_path):
    write_rows(tmp_path / "rows.jsonl")
    settings = {"name": "gen", "output_dir": str(tmp_path / "out"), "sources": [{"path": str(tmp_path / "rows.jsonl")}],
                "stages": [{"stage": s} for s in ("validate", "exact_dedup", "near_dedup", "pii", "bias_audit", "split")]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    reference = run_curate(load_config(CurateConfig, tmp_path / "config.yaml", [f"output_dir={tmp_path / 'ref'}"]))
    dataset, log = tmp_path / "out" / "gen", tmp_path / "curate.log"

    def in_work_folder(pattern):
        return lambda: any(dataset.glob(f".tmp-*{pattern}"))

    # start, splits (the Parquet shards, written and renamed at the end), card
    moments = [in_work_folder(""), in_work_folder("/train-*.parquet"), in_work_folder("/README.md")]
    worker.ready()
    for moment in moments:
        worker.start(["curate", str(tmp_path / "config.yaml")], tmp_path, log)
        assert worker.kill_when(moment) == -9, log.read_text()[-3000:]
        assert_only_complete_versions(dataset)
    worker.start(["curate", str(tmp_path / "config.yaml")], tmp_path, log)
    started = time.monotonic()
    worker.kill_when(lambda: time.monotonic() > started + 0.3)  # wherever it is by then (or finished)
    assert_only_complete_versions(dataset)
    assert worker.run(["curate", str(tmp_path / "config.yaml")], tmp_path, log) == 0, log.read_text()[-3000:]
    versions = [p for p in dataset.iterdir() if not p.name.startswith(".")]
    assert [read_card(v).fingerprint for v in versions] == [reference.card.fingerprint]
    assert_only_complete_versions(dataset)


def test_train_killed_at_several_moments_resumes_to_the_uninterrupted_adapter(
        worker, card, tiny_model_dir, runs_root, straight, tmp_path):
    config = config_for(card, tiny_model_dir, runs_root, run_id="killed", **RESUMABLE)
    command = ["train", yaml_of(config, tmp_path / "train.yaml")]
    run, log = runs_root / "runs" / "killed", tmp_path / "train.log"
    checkpoints = run / "checkpoints"

    def logged(n):
        return lambda: (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) >= n

    def saving_since(started: float):  # a staging folder made by this process, not one a kill left behind
        return lambda: (checkpoints / STAGING).is_dir() and (checkpoints / STAGING).stat().st_mtime > started

    worker.ready()
    moments = [([], lambda started: logged(3)),  # mid-training
               (["--resume"], saving_since),  # during a checkpoint save
               (["--resume"], lambda started: lambda: (checkpoints / "checkpoint-6" / COMPLETE).exists())]  # pruning
    for flags, moment in moments:
        started = time.time()
        worker.start(command + flags, tmp_path, log)
        assert worker.kill_when(moment(started)) == -9, log.read_text()[-3000:]
        assert not (run / "run.json").exists()
        assert_resumable(checkpoints)
    state = json.loads((latest_checkpoint(checkpoints) / "trainer_state.json").read_text())
    assert state["epoch"] > 1  # the last resume starts in the second epoch (batches drawn anew there)
    assert worker.run(command + ["--resume"], tmp_path, log) == 0, log.read_text()[-3000:]
    assert_same_adapter(straight, run)
    assert losses(run) == pytest.approx(losses(straight), rel=1e-6)
    assert not checkpoints.exists() and (run / "run.json").is_file()


def test_a_work_folder_killed_after_its_card_is_written_is_not_taken_for_a_version(tmp_path):
    rows = tmp_path / "rows.jsonl"
    write_rows(rows, n=50)
    config = CurateConfig(name="gen", output_dir=str(tmp_path / "out"), sources=[{"path": str(rows)}],
                          stages=[{"stage": "validate"}, {"stage": "split"}], report=False)
    first = run_curate(config)
    first.directory.rename(first.directory.with_name(".tmp-killed"))  # card.json written, rename never happened
    again = run_curate(config)
    assert not again.directory.name.startswith(".")


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie only waits for whoever adopted it to reap it)."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except ProcessLookupError:
        return False
    except FileNotFoundError:  # gone since os.kill, or no /proc at all (not Linux: os.kill had the last word)
        return not Path("/proc").is_dir()


def test_a_killed_curate_takes_its_worker_processes_with_it(tmp_path):
    """SIGKILL runs no cleanup in curate, so its forked workers must notice the death themselves and not run on."""
    if not can_fork():
        pytest.skip("row stages run inline without fork and two cores")
    write_rows(tmp_path / "rows.jsonl", n=50)
    config = CurateConfig(name="gen", output_dir=str(tmp_path / "out"), sources=[{"path": str(tmp_path / "rows.jsonl")}],
                          stages=[{"stage": "validate"}, {"stage": "bias_audit"}, {"stage": "split"}], report=False,
                          workers=2, batch_size=10)
    pid_file = tmp_path / "inspector.pid"
    curate = subprocess.Popen([sys.executable, "-m", "tests.faults.slow_inspector", str(pid_file),
                               yaml_of(config, tmp_path / "curate.yaml")],
                              cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True)
    inspector = None
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and curate.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pid_file.exists(), f"the inspector never started (exit {curate.poll()}): {curate.stderr.read()[-3000:]}"
        inspector = int(pid_file.read_text())
        assert inspector != curate.pid and running(inspector)  # a forked child, still lingering
        curate.kill()
        assert curate.wait(timeout=10) == -9
        deadline = time.monotonic() + 5
        while running(inspector) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running(inspector), f"inspector {inspector} outlived its killed parent"
    finally:
        curate.kill()
        curate.wait()
        if inspector is not None and running(inspector):
            os.kill(inspector, signal.SIGKILL)
