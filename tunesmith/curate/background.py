"""Run an inspector stage (one that changes no row) in a forked child while later stages go on.

The child inherits the rows through fork (copy-on-write, nothing pickled), runs the stage, and sends
its StageRecord back through a pipe; the parent collects it at the end. On a machine with one core, or
without fork, the stage runs inline, with the same result. A parent killed outright (SIGKILL runs no cleanup)
takes its child with it: Linux is asked to kill the child, elsewhere a thread in the child watches the parent.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from tunesmith.artifacts import StageRecord
from tunesmith.curate.record import Example
from tunesmith.curate.stage import DataError, Stage, StageContext
from tunesmith.errors import TunesmithError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def can_fork() -> bool:
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1


USER_ERROR = 3  # exit code of a child whose stage raised a TunesmithError
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@dataclass
class BackgroundStage:
    name: str
    pid: int
    read_fd: int

    def result(self) -> StageRecord:
        """Wait for the child and return its record, or raise its error."""
        chunks = []
        try:
            with os.fdopen(self.read_fd, "rb") as pipe:
                for chunk in iter(lambda: pipe.read(1 << 16), b""):
                    chunks.append(chunk)
            _, status = os.waitpid(self.pid, 0)
        except BaseException:  # Ctrl-C or SIGTERM while waiting: the child must not run on
            self._stop()
            raise
        payload = b"".join(chunks).decode("utf-8")
        code = os.waitstatus_to_exitcode(status)
        if code == USER_ERROR:  # the stage refused its input: the same one-line error as in the foreground
            raise DataError(f"stage {self.name}: {payload}")
        if code != 0 or not payload.startswith("{"):
            raise RuntimeError(f"stage {self.name} failed in its background process: {payload or 'no output'}")
        return StageRecord.model_validate_json(payload)

    def cancel(self) -> None:
        """Stop the child and reap it (used when the pipeline fails before collecting it)."""
        self._stop()
        os.close(self.read_fd)

    def _stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def start(stage: Stage, examples: list[Example], ctx: StageContext) -> BackgroundStage:
    """Fork a child that runs `stage` on `examples`; the parent returns at once."""
    read_fd, write_fd = os.pipe()
    parent_pid, prctl = os.getpid(), _linux_prctl()  # looked up before fork, so the child imports nothing first
    # no Ctrl-C or SIGTERM may reach the child before it has set its own handlers (see _run_child)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            _run_child(stage, examples, ctx, parent_pid, prctl, read_fd, write_fd, blocked)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    os.close(write_fd)
    return BackgroundStage(stage.name, pid, read_fd)


def _run_child(stage, examples, ctx, parent_pid, prctl, read_fd, write_fd, mask) -> None:
    """The child: run, report, and leave without running the parent's exit handlers; never returns.

    It ignores Ctrl-C, which the terminal sends to the whole process group: the parent alone decides, and
    stops the child with SIGTERM, which here ends it at once. Raised as KeyboardInterrupt instead, either
    would unwind a forked copy of the parent's stack and print a second traceback.
    """
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _exit_with_parent(parent_pid, prctl)
        os.close(read_fd)
        try:
            logging.disable(logging.CRITICAL)  # the parent logs the findings; two processes would interleave
            kept, record = stage.run(examples, ctx)
            if len(kept) != len(examples):
                raise AssertionError(f"inspector stage {stage.name} changed the rows")
            payload, code = record.model_dump_json().encode("utf-8"), 0
        except TunesmithError as err:
            payload, code = str(err).encode(), USER_ERROR
        except BaseException as err:  # noqa: BLE001  (everything must reach the parent as text)
            payload, code = f"{type(err).__name__}: {err}".encode(), 1
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
    finally:
        os._exit(code)


@functools.cache
def _linux_prctl():
    """The C library's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _exit_with_parent(parent_pid: int, prctl) -> None:
    """Make this forked child end when its parent does, so a killed `tunesmith curate` leaves no orphan behind.

    The kernel's death signal is tied to the thread that forked, which stays in `run_stages` until it has
    collected the child, so it lives as long as the parent needs the child.
    """
    if prctl is None or prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before anyone watched it: no signal will come
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    """Portable fallback: an orphan is adopted by another process, so its parent pid changes."""
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(1)
