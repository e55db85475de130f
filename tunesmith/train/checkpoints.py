"""Atomic checkpoints: written into a staging folder, renamed into place, then marked complete.

A process killed at any moment leaves either a staging folder (ignored and cleared on the next save)
or a renamed folder without its marker (skipped by `latest_checkpoint`); `--resume` only ever picks a
checkpoint whose marker exists, and the marker is itself written by rename. A full disk during a save
removes the half-written checkpoint and raises DiskFullError; the earlier checkpoints stay intact.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from transformers import Trainer

from tunesmith.errors import EnvironmentProblem
from tunesmith.train.batching import EpochSeededLengthSampler

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
STAGING = ".staging"


class DiskFullError(EnvironmentProblem):
    """No space left while saving (errno ENOSPC); also a ValueError, so the CLI reports it in one line (exit 2)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


@contextmanager
def disk_full_is_clear(folder: Path, what: str, advice: str):
    """Turn an ENOSPC OSError from a save into a DiskFullError that names the folder and what to do."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise DiskFullError(f"{folder}: the disk is full (no space left) while saving {what}; {advice}") from err


def checkpoint_step(path: Path) -> int:
    """The optimizer step a `checkpoint-<step>` folder was saved at."""
    return int(path.name.split("-")[-1])


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in Path(folder).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint with a completion marker; unmarked (half-written) ones are skipped."""
    if not Path(folder).is_dir():
        return None
    for candidate in reversed(_checkpoints(folder)):
        if (candidate / COMPLETE).exists():
            return candidate
        log.warning("skipping %s: it has no completion marker (the process stopped while saving it)", candidate)
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_checkpoint(staged: Path, final: Path) -> Path:
    """Rename a fully written staging folder into place and mark it complete (both steps by rename)."""
    if final.exists():  # the same step saved again after a resume
        shutil.rmtree(final)
    os.replace(staged, final)
    marker = final / f".{COMPLETE}.tmp"
    marker.write_text(str(checkpoint_step(final)))
    os.replace(marker, final / COMPLETE)
    _fsync_dir(final.parent)
    return final


def discard_checkpoints(folder: Path) -> None:
    """Delete a finished run's checkpoints, renamed away first: a kill while deleting must not leave a
    checkpoint that still has its marker but has lost some of its files."""
    if not folder.is_dir():
        return
    trash = folder.with_name(f".{folder.name}-discarded")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the `keep` newest complete checkpoints; delete older ones and unmarked leftovers."""
    complete = [p for p in _checkpoints(folder) if (p / COMPLETE).exists()]
    kept = set(complete[-keep:])
    for path in _checkpoints(folder):
        if path not in kept:
            (path / COMPLETE).unlink(missing_ok=True)  # unmarked first: a kill mid-delete leaves no "complete" half
            shutil.rmtree(path, ignore_errors=True)


class AtomicCheckpointTrainer(Trainer):
    """transformers' Trainer whose checkpoints are staged, renamed and marked (see module docstring), and whose
    batch order a resumed run can replay."""

    keep_checkpoints: int = 2
    _staging_save = False

    def _get_train_sampler(self, train_dataset=None):
        """Length-grouped batches that --resume replays in every epoch (see batching.py)."""
        args = self.args
        return EpochSeededLengthSampler(args.train_batch_size * args.gradient_accumulation_steps,
                                        train_dataset if train_dataset is not None else self.train_dataset,
                                        seed=args.data_seed if args.data_seed is not None else args.seed)

    def _get_output_dir(self, trial) -> str:
        if self._staging_save:
            return str(Path(self.args.output_dir) / STAGING)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        folder = Path(self.args.output_dir)
        staging, name = folder / STAGING, f"checkpoint-{self.state.global_step}"
        shutil.rmtree(staging, ignore_errors=True)  # what a killed save left behind
        try:
            with disk_full_is_clear(folder / name, "the checkpoint", "it was not kept"):
                self._save_staged(model, trial, staging, name)
                commit_checkpoint(staging / name, folder / name)
        except DiskFullError as err:
            shutil.rmtree(staging, ignore_errors=True)  # give back the space the half-written save took
            if not (folder / name / COMPLETE).exists():
                shutil.rmtree(folder / name, ignore_errors=True)
            previous = latest_checkpoint(folder)
            advice = f"{previous.name} is intact; free some space, then run again with --resume" if previous \
                else "free some space, then run again"
            raise DiskFullError(f"{err}. {advice}") from err.__cause__
        shutil.rmtree(staging, ignore_errors=True)
        prune_checkpoints(folder, self.keep_checkpoints)

    def _save_staged(self, model, trial, staging: Path, name: str) -> None:
        """transformers' own checkpoint save, redirected into the staging folder, plus the callbacks' files."""
        staging.mkdir(parents=True)
        self._staging_save = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_save = False
        for callback in self.callback_handler.callbacks:  # e.g. early stopping's best adapter
            if hasattr(callback, "save_into_checkpoint"):
                callback.save_into_checkpoint(staging / name)
