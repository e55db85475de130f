"""Forked worker processes that behave: they end when their parent does, and leave stopping to the parent.

A parent killed outright (SIGKILL runs no cleanup) takes its children with it: Linux is asked to kill the child
when the parent dies, elsewhere a thread in the child watches the parent. Ctrl-C, which the terminal sends to the
whole process group, is ignored by the children: the parent alone decides and stops them with SIGTERM, which ends
them at once. Raised as KeyboardInterrupt in a child instead, it would unwind a forked copy of the parent's stack and
print a second traceback.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def can_fork() -> bool:
    """Forked workers help only with fork and more than one core."""
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


def become_worker(parent_pid: int) -> None:
    """Called first thing in a forked worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler would raise in this copy of its stack
    _exit_with_parent(parent_pid, _linux_prctl())


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

    The kernel's death signal is tied to the thread that forked, which is the parent's main thread here.
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
