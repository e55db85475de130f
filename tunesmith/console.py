"""Terminal output for the CLI: rich logging and tables (counts with thousands separators). Only `cli.py` uses this."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from tunesmith.config import readable

console = Console(stderr=True)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the moment (a handler that kept the stream it was made with would
    write into a closed one after an in-process caller, such as a test, swapped stderr)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbosity: int = 0) -> None:
    """Rich log lines on a terminal; elsewhere (CI, a pipe, a log file) plain ones that are never wrapped, so an
    error is one physical line that grep and a log reader see whole."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-8s %(message)s", datefmt="%X"))
    logging.basicConfig(level=level, force=True, handlers=[handler])
    for noisy in ("httpx", "urllib3", "datasets", "transformers", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stage_table(stages) -> Table:
    table = Table(title="curation summary", show_lines=False)
    for column in ("stage", "rows in", "rows out", "rejected", "seconds", "top reasons"):
        table.add_column(column, justify="right" if column.startswith(("rows", "rej", "sec")) else "left")
    for s in stages:
        reasons = s.findings.get("rejected_by_reason", {})
        top = ", ".join(f"{k}={readable(v)}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        table.add_row(s.name, readable(s.rows_in), readable(s.rows_out), readable(s.rows_rejected),
                      f"{s.seconds:,.2f}", top)
    return table


def gate_table(gates) -> Table:
    table = Table(title="quality gates")
    for column in ("gate", "limit", "value", "result", "measures"):
        table.add_column(column)
    for g in gates:
        table.add_row(g.name, readable(g.limit), readable(g.value), "[green]pass[/]" if g.passed else "[red]FAIL[/]",
                      g.measures or "")
    return table


def eval_table(result) -> Table:
    """Base vs tuned per metric with the paired bootstrap interval of the delta."""
    table = Table(title=f"eval {result.eval_id}: run {result.run_id}, split {result.split} (n={readable(result.n_examples)})")
    for column in ("metric", "base", "tuned", "delta", "interval", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for m in result.metrics:
        verdict = ("better" if m.improved else "worse") if m.excludes_zero else "no significant change"
        colour = {"better": "green", "worse": "red"}.get(verdict, "dim")
        table.add_row(m.name, f"{m.base:.2f}", f"{m.tuned:.2f}", f"{m.delta:+.2f}",
                      f"[{m.ci_low:+.2f}, {m.ci_high:+.2f}]", f"[{colour}]{verdict}[/{colour}]")
    return table
