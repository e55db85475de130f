"""Two `tunesmith run` processes on one pipeline config: the second waits for the first one's training and
reuses its run, so both end with the same report and there is one run folder. Real processes; the first is frozen
(SIGSTOP) while it trains, so the overlap does not depend on timing.

Run: .venv/bin/python -m pytest tests/faults/test_pipeline_concurrency.py -q
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.tiny_pipeline import write_pipeline_config


def _start(config: Path, log: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "run", str(config)], cwd=cwd, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_second_run_waits_for_the_first_ones_training_and_reuses_it(tmp_path, tiny_tokenizer_dir, tiny_model_dir):
    config = write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir)
    runs = tmp_path / "runs"
    first = _start(config, tmp_path / "first.log", tmp_path)
    second = None
    try:
        _wait_for(lambda: any(runs.glob("*/started.json")), "the first run to start training")
        first.send_signal(signal.SIGSTOP)  # frozen inside train(), holding the run folder's lock
        second = _start(config, tmp_path / "second.log", tmp_path)
        _wait_for(lambda: "waiting for it to finish" in (tmp_path / "second.log").read_text(),
                  "the second run to wait")
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()
        assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
    first_log, second_log = (tmp_path / "first.log").read_text(), (tmp_path / "second.log").read_text()
    assert "Traceback" not in first_log + second_log
    assert "being written by pid" in second_log and f"pid {first.pid}" in second_log
    assert "train: reused run" in second_log and "eval: reused" in second_log
    assert first_log.strip().splitlines()[-1] == second_log.strip().splitlines()[-1]  # the same report path
    assert [p.name for p in runs.iterdir()] == [Path(first_log.strip().splitlines()[-1]).parent.name]
