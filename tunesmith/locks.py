"""One writer per folder: an advisory `fcntl` lock on `<folder>/.lock`, which names its holder.

A run folder and a dataset folder are each written by one process at a time. The lock dies with its process
(the kernel releases it, even after SIGKILL), so a stale `.lock` file never blocks anyone; its text (pid, host and
start time) only tells a second process who holds it. While the lock is held, any work folder inside the locked
folder belongs to a dead process and may be cleaned away (see `clear_stale_work`).

Ground floor: imports nothing of tunesmith but errors.py.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from tunesmith.errors import BusyError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


def holder_of(folder: Path, lock_name: str = LOCK_FILE) -> str:
    """Who holds (or last held) the folder's lock, in words: 'pid 123 on host since 2026-12-01 10:00:00 UTC'."""
    try:
        info = json.loads((Path(folder) / lock_name).read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def folder_lock(folder: Path, what: str, wait: bool = False, poll_seconds: float = 0.5,
                lock_name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (created if missing) for the `with` block.

    Without `wait`, a folder locked by a live process raises BusyError naming that process; with `wait`, the call
    blocks until the holder finishes (logging once whom it waits for) and then proceeds. `lock_name` picks another
    lock file in the folder, for a lock on one thing inside it (one eval id) rather than on the whole folder.
    """
    folder = Path(folder)
    fd = _open_current_lock(folder, what, wait, poll_seconds, lock_name)
    try:
        since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _open_current_lock(folder: Path, what: str, wait: bool, poll_seconds: float, lock_name: str) -> int:
    """Open and lock the lock file; again if its last holder removed it (or its folder) while we waited, since a
    lock on a removed file excludes no one (the audit's side folder is removed once its audit is done)."""
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / lock_name, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            if folder.is_dir():
                raise
            continue  # the folder was removed between the mkdir and the open
        try:
            _acquire(fd, folder, what, wait, poll_seconds, lock_name)
            current = os.stat(folder / lock_name)
            if (current.st_dev, current.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def wait_for_writer(folder: Path, poll_seconds: float = 0.5) -> None:
    """Block until no process holds the folder's lock; creates nothing (a finished folder may have dropped it)."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        _acquire(fd, Path(folder), "it", wait=True, poll_seconds=poll_seconds)
    finally:
        os.close(fd)


def _acquire(fd: int, folder: Path, what: str, wait: bool, poll_seconds: float, lock_name: str = LOCK_FILE) -> None:
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not wait:
                raise BusyError(f"{folder}: {what} is being written by {holder_of(folder, lock_name)}; wait for it "
                                "to finish (or stop that process) and run again") from None
            if not told:
                log.info("%s: waiting for %s, which is writing %s", folder, holder_of(folder, lock_name), what)
                told = True
            time.sleep(poll_seconds)


def clear_stale_work(folder: Path, prefixes: tuple[str, ...]) -> list[Path]:
    """Delete work folders (names starting with one of `prefixes`) that killed writers left in `folder`.

    Call only while holding `folder_lock(folder)`: then no live process can own them.
    """
    removed = []
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if path.name.startswith(prefixes) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d work folder(s) left by an interrupted run in %s", len(removed), folder)
    return removed
