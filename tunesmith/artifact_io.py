"""How artifacts reach disk and come back: atomic writes, file hashes, and reads that validate with readable errors.

Ground floor, like artifacts.py (which holds the schemas): imports nothing of tunesmith but the StrictModel base.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from tunesmith.config import StrictModel
from tunesmith.errors import MissingInputError, UsageError

M = TypeVar("M", bound=StrictModel)

# card.json, run.json and eval.json are a few kB to a few MB; anything far bigger is not one of ours, and
# reading it whole (e.g. `card show /dev/zero`) would never end
MAX_ARTIFACT_BYTES = 64 << 20


class ArtifactError(UsageError):
    """An artifact file that does not validate; the message names the file and the field."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_artifact(artifact: StrictModel, path: Path) -> Path:
    atomic_write_text(path, artifact.model_dump_json(indent=2) + "\n")
    return path


def open_regular(path: Path, what: str):
    """Open a file for binary reading, refusing anything but a regular file (a FIFO, a device, a folder).

    The mode is checked before opening, since opening a FIFO blocks until a writer comes; the open itself is
    non-blocking and re-checked, so a file swapped for a FIFO in between cannot hang the read either.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MissingInputError(f"{path}: {what} is missing") from None
    if not stat.S_ISREG(mode):
        raise ArtifactError(f"{path}: {what} must be a regular file, but this is {file_kind(mode)}")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ArtifactError(f"{path}: {what} is not a regular file (it changed while being opened)")
    return os.fdopen(fd, "rb")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, for messages."""
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def load_json(data: bytes | str, path: Path, line: int | None = None, error: type[UsageError] = ArtifactError,
              advice: str = "") -> Any:
    """Parse one artifact's JSON (a whole file, or line `line` of a .jsonl), raising `error` naming the file
    (and line) for anything that is not JSON: bad syntax, bytes that are not UTF-8, or nesting so deep that
    the parser runs out of stack (a RecursionError, which would otherwise escape as a crash)."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    tail = f"; {advice}" if advice else ""
    try:
        # decoded here, not by json.loads, which would take UTF-16 or UTF-32 bytes too
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except RecursionError:
        problem = "JSON nested too deeply to parse"
    except UnicodeDecodeError as err:
        problem = f"not valid UTF-8 (byte {err.start})"
    except json.JSONDecodeError as err:
        problem = (f"not valid JSON ({err.msg}, column {err.colno})" if line is not None
                   else f"not valid JSON at line {err.lineno}: {err.msg}")
    raise error(f"{where}: {problem}{tail}") from None


def read_artifact(cls: type[M], path: Path, file_name: str, missing: str) -> M:
    """Read and validate an artifact; `path` may be the file or the folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.exists() and not path.is_symlink():
        raise MissingInputError(f"{path}: {missing}")
    with open_regular(path, file_name) as handle:
        data = handle.read(MAX_ARTIFACT_BYTES + 1)
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ArtifactError(f"{path}: larger than {MAX_ARTIFACT_BYTES >> 20} MiB, the most a {file_name} may hold; "
                            f"this is not a {file_name} written by tunesmith")
    advice = f"this {file_name} was damaged, or is not one tunesmith wrote" if path.name == file_name else \
        f"give the {file_name} (or the folder holding it), not {path.name}"
    load_json(data, path, advice=advice)  # readable errors
    try:
        # pydantic's own parser stops at 200 levels (a ValidationError, below), never with a RecursionError
        return cls.model_validate_json(data.decode("utf-8"))
    except ValidationError as err:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
                    for e in err.errors()]
        raise ArtifactError(f"{path}: invalid {cls.__name__}: " + "\n  ".join(problems)) from None
