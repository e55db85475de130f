"""The one hierarchy of user and environment errors: the CLI prints their message as one line and exits 2.

Ground floor: imports nothing. Anything else that escapes a command is a bug in tunesmith and keeps its traceback.
Each class also derives from the builtin it replaced (ValueError, RuntimeError, OSError), so library callers that
caught those keep working.
"""

from __future__ import annotations


class TunesmithError(Exception):
    """A problem the user or their environment caused; the message names the file/field and what to do."""


class UsageError(TunesmithError, ValueError):
    """Arguments or inputs that cannot be used as given."""


class OutputExistsError(TunesmithError, FileExistsError):
    """An output would overwrite something that is not tunesmith's to replace."""


class MissingInputError(TunesmithError, FileNotFoundError):
    """A file or folder the command needs is not there."""


class BusyError(TunesmithError, RuntimeError):
    """Another live process holds the folder's lock."""


class EnvironmentProblem(TunesmithError, OSError):
    """The disk, a permission or a cache stopped the work (full, read-only, truncated)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; the message says what was kept. A KeyboardInterrupt, not an Exception, so no
    `except Exception` on the way up swallows it; the CLI prints its message and exits 130."""
