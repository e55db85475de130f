"""Ctrl-C and SIGTERM during curate, in a real process: one line ("interrupted; nothing was written"), exit 130, no
traceback from the curate or from its forked inspector child, no version and no `.tmp-*` work folder left behind.

The curate runs with its bias_audit inspector made slow (tests/faults/slow_inspector.py), so the signal comes while
the inspector still works, in a forked worker (`workers: 2`) or inline (`workers: 1`).
Run: .venv/bin/python -m pytest tests/faults/test_interrupts.py -q
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunesmith.config import dump_config
from tunesmith.curate.children import can_fork
from tunesmith.curate.config import CurateConfig

from .test_faults import running, write_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def worker():
    """This module needs no CLI worker (it starts its own processes); the package's fixture would start one."""
    yield None


def start_curate(tmp_path: Path, inline: bool) -> tuple[subprocess.Popen, Path]:
    write_rows(tmp_path / "rows.jsonl", n=50)
    config = CurateConfig(name="gen", output_dir=str(tmp_path / "out"), sources=[{"path": str(tmp_path / "rows.jsonl")}],
                          stages=[{"stage": "validate"}, {"stage": "bias_audit"}, {"stage": "split"}], report=False,
                          workers=1 if inline else 2, batch_size=10)
    dump_config(config, tmp_path / "curate.yaml")
    pid_file = tmp_path / "inspector.pid"
    # its own session, like a shell's foreground job: a Ctrl-C there reaches every process of the group
    curate = subprocess.Popen([sys.executable, "-m", "tests.faults.slow_inspector", str(pid_file),
                               str(tmp_path / "curate.yaml")], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              env={**os.environ, "COLUMNS": "2000"})
    deadline = time.monotonic() + 60
    while not pid_file.exists() and curate.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if not pid_file.exists():
        curate.kill()
        pytest.fail(f"the inspector never started (exit {curate.wait()}): {curate.stdout.read()[-3000:]}")
    return curate, pid_file


@pytest.mark.parametrize(("how", "inline"), [
    ("ctrl-c", False),  # SIGINT to the whole process group, the worker process included
    ("sigterm", False),  # SIGTERM to the curate process only (a scheduler's or `kill`'s stop)
    ("ctrl-c", True),  # the inspector runs in the curate process itself
], ids=["ctrl-c-worker", "sigterm-worker", "ctrl-c-inline"])
def test_an_interrupted_curate_says_one_line_exits_130_and_leaves_nothing(tmp_path, how, inline):
    if not inline and not can_fork():
        pytest.skip("row stages run inline without fork and two cores")
    curate, pid_file = start_curate(tmp_path, inline)
    inspector = int(pid_file.read_text())
    try:
        if how == "ctrl-c":
            os.killpg(curate.pid, signal.SIGINT)
        else:
            curate.send_signal(signal.SIGTERM)
        output, _ = curate.communicate(timeout=30)
    finally:
        curate.kill()
        curate.wait()
    assert curate.returncode == 130, output[-3000:]
    assert "Traceback" not in output, output[-3000:]  # neither the curate's nor its inspector child's
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "interrupted; nothing was written" in errors[0], output[-3000:]
    dataset = tmp_path / "out" / "gen"
    assert sorted(p.name for p in dataset.iterdir()) in ([], [".lock"])  # no version, no .tmp-* work folder
    deadline = time.monotonic() + 5
    while running(inspector) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not running(inspector), f"inspector {inspector} outlived the interrupted curate"
