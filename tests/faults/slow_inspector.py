"""Run `tunesmith curate CONFIG` with its bias_audit inspector made slow and visible, so a test can stop or SIGKILL
the curate process while the inspector still runs (in a forked worker with `workers: 2`, inline with `workers: 1`).

The inspector, a row stage here, writes its pid to PID_FILE (whole, by rename) and then lingers for a minute before
doing its work.
Run: python -m tests.faults.slow_inspector PID_FILE CONFIG
"""

import os
import sys
import time
from pathlib import Path

from tunesmith.cli import main
from tunesmith.curate.bias import BiasAudit


def announce_then_linger(self, examples, state, ctx):
    pid_file = Path(sys.argv[1])
    pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
    os.replace(pid_file.with_suffix(".tmp"), pid_file)
    time.sleep(60)  # far longer than the test waits: only its parent's death can end it in time
    return list(examples)


if __name__ == "__main__":
    BiasAudit.mode = "row"
    BiasAudit.open = lambda self, ctx: None
    BiasAudit.merge = lambda self, state, other: None
    BiasAudit.close = lambda self, state, ctx: None
    BiasAudit.process_batch = announce_then_linger
    sys.exit(main(["curate", sys.argv[2]]))
