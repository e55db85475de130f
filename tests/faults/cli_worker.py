"""Run `tunesmith` commands in real processes that a test can SIGKILL at a chosen moment, cheaply.

Importing torch/transformers costs seconds, so one server process imports tunesmith's CLI once and forks a
child per command; the child runs `tunesmith.cli.main(argv)` exactly as `python -m tunesmith.cli` would and
dies by SIGKILL like any process (no cleanup, no finally blocks). Run as a script it is the server: it reads
one JSON request a line on stdin and answers `{"pid": ...}` when the child starts and `{"rc": ...}` when it ends.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path


def _serve() -> None:
    import torch

    torch.set_num_threads(1)  # the same as the in-process tests, so runs compare exactly
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: F401

    import tunesmith.cli as cli
    import tunesmith.console  # noqa: F401
    import tunesmith.curate.pipeline  # noqa: F401
    import tunesmith.train.trainer  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(cli.main, request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
    os._exit(0)  # stdin closed: skip the interpreter's slow teardown of torch


def _child(main: Callable[[list[str]], int], request: dict) -> None:
    import faulthandler

    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    faulthandler.dump_traceback_later(60, exit=True)  # a hang ends with its stack in the log, not a stuck test
    os.chdir(request["cwd"])
    try:
        rc = main(request["argv"])
    except BaseException:
        traceback.print_exc()
        rc = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


class CliWorker:
    """Client of the server: `start` a command, `kill_when` a condition holds, `wait` for its exit code."""

    def __init__(self, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid: int | None = None
        self.started = False

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _next(self, key: str, timeout: float) -> object:
        try:
            message = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the CLI worker sent no {key!r} within {timeout} s (pid {self.pid})") from None
        return message[key]

    def ready(self, timeout: float = 120) -> None:
        """Wait until the server has imported everything (once; later calls return at once)."""
        if not self.started:
            self._next("ready", timeout)
            self.started = True

    def start(self, argv: list[str], cwd: Path, log: Path) -> int:
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        self.pid = int(self._next("pid", 30))
        return self.pid

    def wait(self, timeout: float = 120) -> int:
        return int(self._next("rc", timeout))

    def run(self, argv: list[str], cwd: Path, log: Path) -> int:
        self.start(argv, cwd, log)
        return self.wait()

    def kill_when(self, condition: Callable[[], bool], timeout: float = 60) -> int:
        """SIGKILL the running command as soon as `condition()` holds; its exit code (-9 if it was killed)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.lines.empty() or time.monotonic() > deadline:
                return self.wait()  # it ended (or hangs) before the moment came
            time.sleep(0.001)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    _serve()
