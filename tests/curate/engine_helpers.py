"""Run one stage through the streaming engine (small batches, optionally forked workers), to compare with
`stage.run` over the whole list: a batch-form stage must give the same survivors, rejected file and findings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tunesmith.curate.engine import Engine, StageRun
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext


def run_streamed(stage: Stage, examples: list[Example], folder: Path, batch_size: int = 3, workers: int = 1,
                 seed: int = 0, extra: dict | None = None):
    """(survivors, record, rejected lines) of `stage` run by the engine over `examples`."""
    ctx = StageContext(stage.name, folder / "rejected", seed=seed, extra=dict(extra or {}))
    kept: list[Example] = []
    # pytest's process may hold idle helper threads: fork anyway, so the workers are really tested
    # and spill a global stage's rows to disk after a few, so both stores are tested
    engine = Engine([StageRun(stage, ctx)], folder / "spill", batch_size=batch_size, workers=workers,
                    fork_despite_threads=True, spill_after_rows=5)
    [record] = engine.run(examples, kept.extend)
    return kept, record, rejected_lines(folder, stage.name)


def run_whole(stage: Stage, examples: list[Example], folder: Path, seed: int = 0, extra: dict | None = None):
    """(survivors, record, rejected lines) of `stage.run` over the whole list."""
    ctx = StageContext(stage.name, folder / "rejected", seed=seed, extra=dict(extra or {}))
    kept, record = stage.run(examples, ctx)
    return kept, record, rejected_lines(folder, stage.name)


def rejected_lines(folder: Path, name: str) -> list[dict]:
    path = folder / "rejected" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def comparable(record) -> dict:
    """A stage record without its timing, for equality checks."""
    return {k: v for k, v in record.model_dump(mode="json").items() if k != "seconds"}


def three_runs(make_stage: Callable[[], Stage], examples: list[Example], folder: Path, extra: dict | None = None):
    """(survivors, record, rejected lines) of the whole-list run, batches of 3 in one process, and batches of 2
    over two workers: what a batch-form stage must keep identical."""
    results = [run_whole(make_stage(), examples, folder / "whole", extra=extra)]
    for name, batch_size, workers in (("b3", 3, 1), ("b2w2", 2, 2)):
        results.append(run_streamed(make_stage(), examples, folder / name, batch_size=batch_size, workers=workers,
                                    extra=extra))
    return results


def assert_same(results) -> None:
    """Every run kept the same rows, rejected the same lines and made the same record, findings' key order included
    (it reaches the card's JSON)."""
    (kept, record, rejected), *others = results
    for other_kept, other_record, other_rejected in others:
        assert [e.to_json() for e in other_kept] == [e.to_json() for e in kept]
        assert other_rejected == rejected
        assert comparable(other_record) == comparable(record)
        assert json.dumps(other_record.findings) == json.dumps(record.findings)
