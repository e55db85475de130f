"""Where an artifact came from: package version, git sha, Python and library versions (shared by all stages)."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from tunesmith import __version__
from tunesmith.artifacts import CodeRecord

LIBRARIES = ["datasets", "numpy", "pyarrow", "pydantic", "transformers", "tokenizers", "torch", "peft",
             "bitsandbytes", "trl", "py3langid", "scipy"]


def code_record() -> CodeRecord:
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return CodeRecord(package_version=__version__, git_sha=git_sha(), python=platform.python_version(),
                      libraries=libraries)


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
