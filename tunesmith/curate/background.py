"""Run an inspector stage (one that changes no row) in a forked child while later stages go on.

The child inherits the rows through fork (copy-on-write, nothing pickled), runs the stage, and sends
its StageRecord back through a pipe; the parent collects it at the end. On a machine with one core, or
without fork, the stage runs inline, with the same result.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from tunesmith.artifacts import StageRecord
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext

log = logging.getLogger(__name__)


def can_fork() -> bool:
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1


@dataclass
class BackgroundStage:
    name: str
    pid: int
    read_fd: int

    def result(self) -> StageRecord:
        """Wait for the child and return its record, or raise its error."""
        chunks = []
        with os.fdopen(self.read_fd, "rb") as pipe:
            for chunk in iter(lambda: pipe.read(1 << 16), b""):
                chunks.append(chunk)
        _, status = os.waitpid(self.pid, 0)
        payload = b"".join(chunks).decode("utf-8")
        if os.waitstatus_to_exitcode(status) != 0 or not payload.startswith("{"):
            raise RuntimeError(f"stage {self.name} failed in its background process: {payload or 'no output'}")
        return StageRecord.model_validate_json(payload)


    def cancel(self) -> None:
        """Stop the child and reap it (used when the pipeline fails before collecting it)."""
        try:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.read_fd)


def start(stage: Stage, examples: list[Example], ctx: StageContext) -> BackgroundStage:
    """Fork a child that runs `stage` on `examples`; the parent returns at once."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, and leave without running the parent's exit handlers
        os.close(read_fd)
        code = 0
        try:
            logging.disable(logging.CRITICAL)  # the parent logs the findings; two processes would interleave
            kept, record = stage.run(examples, ctx)
            if len(kept) != len(examples):
                raise AssertionError(f"inspector stage {stage.name} changed the rows")
            payload = record.model_dump_json().encode("utf-8")
        except BaseException as err:  # noqa: BLE001  (everything must reach the parent as text)
            payload, code = f"{type(err).__name__}: {err}".encode(), 1
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(code)
    os.close(write_fd)
    return BackgroundStage(stage.name, pid, read_fd)
