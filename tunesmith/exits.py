"""How a command ends: exit codes, one line for a user or environment failure, a traceback only for a bug, and
SIGTERM handled like Ctrl-C. Used by `cli.main` only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from pathlib import Path

from tunesmith.errors import Interrupted, TunesmithError

log = logging.getLogger("tunesmith")

EXIT_DATA = 2
EXIT_BUG, EXIT_INTERRUPTED = 1, 130

# OSErrors that come from the machine, not from tunesmith: said in one line with what to do
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free some space and run again",
    errno.EDQUOT: "free some space (disk quota) and run again",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "check the permissions, or choose a folder you can write to",
    errno.EPERM: "check the permissions, or choose a folder you can write to",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "this is a folder; give a file",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EEXIST: "a file is in the way of a folder tunesmith makes; move it, or choose another path",
}


def environment_message(err: OSError) -> str | None:
    """One line for an OSError the environment caused (full disk, read-only, ...), or None for anything else."""
    advice = ENVIRONMENT_ERRNOS.get(err.errno)
    if advice is None:
        return None
    where = err.filename if err.filename is not None else "(unknown path)"
    return f"{where}: {err.strerror or err}; {advice}"


# the errors a write() or close() can meet, knowing no file name; any other nameless error is left alone
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@contextlib.contextmanager
def writing_into(folder: Path):
    """Name `folder` in an OSError that names no file: a full disk fails a write() or close(), which know none."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno not in WRITE_ERRNOS or isinstance(err, TunesmithError):
            raise
        raise OSError(err.errno, err.strerror, str(folder)) from err


class Sigterm:
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks remove work folders and the command exits 130; once the
    command's result is decided (its work is complete, or its error is being said), a SIGTERM is ignored, so it can
    neither turn a finished command into "interrupted" nor kill it with 143 on its way out."""

    def __init__(self) -> None:
        self.decided = False

    def __call__(self, signum, frame) -> None:
        if not self.decided:
            raise KeyboardInterrupt("terminated (SIGTERM)")


def failure(err: BaseException) -> int:
    """Say why the command failed, in one line (a traceback only for a bug), and return the exit code."""
    if isinstance(err, TunesmithError):
        log.error("%s", err)
        return EXIT_DATA
    if isinstance(err, Interrupted):
        log.error("interrupted: %s", err)
        return EXIT_INTERRUPTED
    if isinstance(err, KeyboardInterrupt):
        log.error("interrupted; nothing was written")
        return EXIT_INTERRUPTED
    if isinstance(err, OSError) and (message := environment_message(err)) is not None:
        log.error("%s", message)
        return EXIT_DATA
    if isinstance(err, Exception):
        return _report_bug(err)
    raise err  # SystemExit from argparse (usage, --help) and the like keep their own meaning


def _report_bug(err: BaseException) -> int:
    """An exception no user or environment explains: keep its traceback and ask for a report (exit 1)."""
    import traceback

    traceback.print_exception(err)
    log.error("this is a bug in tunesmith, not in your input; please report it with the traceback above")
    return EXIT_BUG
