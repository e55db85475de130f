"""Atomic checkpoints: written into a staging folder, renamed into place, then marked complete.

A process killed at any moment leaves either a staging folder (ignored and cleared on the next save)
or a renamed folder without its marker (skipped by `latest_checkpoint`); `--resume` only ever picks a
checkpoint whose marker exists, and the marker is itself written by rename.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from transformers import Trainer

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
STAGING = ".staging"


def _step(path: Path) -> int:
    return int(path.name.split("-")[-1])


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in Path(folder).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=_step)


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
    marker.write_text(final.name.split("-")[-1])
    os.replace(marker, final / COMPLETE)
    _fsync_dir(final.parent)
    return final


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the `keep` newest complete checkpoints; delete older ones and unmarked leftovers."""
    complete = [p for p in _checkpoints(folder) if (p / COMPLETE).exists()]
    kept = set(complete[-keep:])
    for path in _checkpoints(folder):
        if path not in kept:
            shutil.rmtree(path, ignore_errors=True)


class AtomicCheckpointTrainer(Trainer):
    """transformers' Trainer whose checkpoints are staged, renamed and marked (see module docstring)."""

    keep_checkpoints: int = 2
    _staging_save = False

    def _get_output_dir(self, trial) -> str:
        if self._staging_save:
            return str(Path(self.args.output_dir) / STAGING)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        folder = Path(self.args.output_dir)
        staging = folder / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # what a killed save left behind
        staging.mkdir(parents=True)
        self._staging_save = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_save = False
        name = f"checkpoint-{self.state.global_step}"
        for callback in self.callback_handler.callbacks:  # e.g. early stopping's best adapter
            if hasattr(callback, "save_into_checkpoint"):
                callback.save_into_checkpoint(staging / name)
        commit_checkpoint(staging / name, folder / name)
        shutil.rmtree(staging, ignore_errors=True)
        prune_checkpoints(folder, self.keep_checkpoints)
