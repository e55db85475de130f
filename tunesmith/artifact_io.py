"""How artifacts reach disk and come back: atomic writes, file hashes, and reads that validate with readable errors.

Ground floor, like artifacts.py (which holds the schemas): imports nothing of tunesmith but the StrictModel base.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from tunesmith.config import StrictModel

M = TypeVar("M", bound=StrictModel)


class ArtifactError(ValueError):
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


def read_artifact(cls: type[M], path: Path, file_name: str, missing: str) -> M:
    """Read and validate an artifact; `path` may be the file or the folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {missing}") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON at line {err.lineno}: {err.msg}") from None
    try:
        return cls.model_validate_json(text)
    except ValidationError as err:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
                    for e in err.errors()]
        raise ArtifactError(f"{path}: invalid {cls.__name__}: " + "\n  ".join(problems)) from None
