"""The local streaming executor: batches flow through the stages, so memory is set by the batch size and the small
per-row keys of the global stages, not by the size of the data.

Row stages run lazily, batch by batch, in this process or in `workers` forked processes. A global stage first
consumes its input, spilling the rows to disk while it records their keys, resolves, and then streams the spilled
rows back through `apply`. A stage still in whole mode gets its input as one list (the old in-memory way).
Every stage's counts and findings are summed over batches and workers; the rows kept, the rejected files and the
findings are the same for any batch size and any number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

from tunesmith.artifacts import StageRecord
from tunesmith.curate.children import become_worker, can_fork
from tunesmith.curate.record import Example
from tunesmith.curate.stage import RowStore, Stage, StageContext

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000


def batched(rows: Iterable[Example], size: int) -> Iterator[list[Example]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


SPILL_AFTER_ROWS = 20_000  # a global stage holds this many input rows in memory (~50 MB) before it spills to disk


class SpillStore(RowStore):
    """A global stage's input rows, read back in order (twice if needed): in memory while they are few, then
    pickled batch by batch to one file, so small datasets pay no disk round trip and big ones no memory."""

    def __init__(self, path: Path, memory_rows: int = SPILL_AFTER_ROWS):
        self.path, self.memory_rows = path, memory_rows
        self.rows = 0
        self._held: list[list[Example]] | None = []  # None once spilled
        self._handle = None

    def write(self, batch: list[Example]) -> int:
        """Append a batch; returns its first position."""
        start = self.rows
        self.rows += len(batch)
        if self._held is not None:
            self._held.append(batch)
            if self.rows <= self.memory_rows:
                return start
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "wb")
            held, self._held = self._held, None
            for old in held:
                pickle.dump(old, self._handle, protocol=pickle.HIGHEST_PROTOCOL)
            return start
        pickle.dump(batch, self._handle, protocol=pickle.HIGHEST_PROTOCOL)
        return start

    @property
    def on_disk(self) -> bool:
        return self._held is None

    def seal(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def batches(self) -> Iterator[tuple[int, list[Example]]]:
        start = 0
        if self._held is not None:
            for batch in self._held:
                yield start, batch
                start += len(batch)
            return
        with open(self.path, "rb") as handle:
            while True:
                try:
                    batch = pickle.load(handle)
                except EOFError:
                    return
                yield start, batch
                start += len(batch)

    def remove(self) -> None:
        """Free the rows: drop the held batches, or close and delete the file."""
        self.seal()
        if self._held is not None:
            self._held.clear()
        self.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return self.rows


@dataclass
class StageRun:
    """One stage's bookkeeping over the whole stream."""

    stage: Stage
    ctx: StageContext
    state: Any = None
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    record: StageRecord | None = None
    spill: SpillStore | None = None
    opened: bool = field(default=False)

    def begin(self) -> None:
        if not self.opened:
            self.stage.setup(self.ctx)
            self.state = self.stage.open(self.ctx)
            self.opened = True

    def finish(self) -> StageRecord:
        """Close the stage (its findings) once all its rows have passed; idempotent."""
        if self.record is None:
            start = time.perf_counter()
            try:
                if self.stage.mode != "whole":
                    self.begin()  # a stage that saw no batch still reports its (empty) findings
                    self.stage.close(self.state, self.ctx)
            finally:
                self.ctx.close()
            self.seconds += time.perf_counter() - start
            self.record = self.stage.record(self.ctx, self.rows_in, self.rows_out, self.seconds)
            if self.spill is not None:
                self.spill.remove()
        return self.record


class Engine:
    """Runs `runs` (stages with their contexts, in order) over a stream of rows."""

    def __init__(self, runs: list[StageRun], spill_dir: Path, batch_size: int = DEFAULT_BATCH_SIZE,
                 workers: int = 1, on_record: Callable[[StageRecord], None] | None = None,
                 fork_despite_threads: bool = False, spill_after_rows: int = SPILL_AFTER_ROWS):
        self.runs, self.spill_dir, self.batch_size = runs, spill_dir, batch_size
        self.spill_after_rows = spill_after_rows
        self.workers, self.on_record = max(1, workers), on_record
        self.fork_despite_threads = fork_despite_threads  # tests whose process has idle helper threads
        self.pooled_segments = 0  # row segments that really ran in worker processes

    def run(self, rows: Iterable[Example], sink: Callable[[list[Example]], None]) -> list[StageRecord]:
        """Stream `rows` through every stage into `sink` (called per batch of survivors, in order)."""
        self._streams: list[Iterator] = []
        try:
            return self._run(rows, sink)
        finally:  # on an error or Ctrl-C: stop worker pools and close spill files now, not when collected
            for stream in reversed(self._streams):
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    def _run(self, rows: Iterable[Example], sink: Callable[[list[Example]], None]) -> list[StageRecord]:
        stream: Iterator[list[Example]] = self._track(batched(rows, self.batch_size))
        pending_rows: list[StageRun] = []  # consecutive row stages not yet attached to the stream
        upstream: list[StageRun] = []  # stages whose rows are still flowing (closed once they have all passed)
        for index, run in enumerate(self.runs):
            if run.stage.mode == "row":
                pending_rows.append(run)
                continue
            stream = self._rows(pending_rows, stream)
            upstream.extend(pending_rows)
            pending_rows = []
            if run.stage.mode == "global":
                stream = self._track(self._global(run, index, stream, upstream))
            else:
                stream = self._track(self._whole(run, stream, upstream))
            upstream.append(run)
        stream = self._rows(pending_rows, stream)
        upstream.extend(pending_rows)
        for batch in stream:
            sink(batch)
        self._finish(upstream)
        return [run.record for run in self.runs]

    def _finish(self, runs: list[StageRun]) -> None:
        """Close, in order, the stages whose input is complete."""
        for run in runs:
            if run.record is None:
                record = run.finish()
                if self.on_record is not None:
                    self.on_record(record)

    def _rows(self, runs: list[StageRun], stream: Iterator[list[Example]]) -> Iterator[list[Example]]:
        if not runs:
            return stream
        if self.workers > 1 and can_fork():
            return self._track(self._pooled_if_worth_it(runs, stream))
        return self._track(_inline(runs, stream))

    def _pooled_if_worth_it(self, runs: list[StageRun], stream: Iterator[list[Example]]) -> Iterator[list[Example]]:
        """Workers for two batches or more, and only where fork is safe.

        A process with other Python threads is not: a thread may hold a lock (the import lock while it imports
        torch, a logging handler's) at the moment of the fork, and the worker would wait for it forever. There the
        stages run in this process, with the same results.
        """
        first, second = next(stream, None), next(stream, None)
        batches = chain((b for b in (first, second) if b is not None), stream)
        if second is None:
            yield from _inline(runs, batches)
        elif threading.active_count() > 1 and not self.fork_despite_threads:
            log.info("row stages run in this process, not in %d workers: other threads run here, and forking them "
                     "is unsafe", self.workers)
            yield from _inline(runs, batches)
        else:
            self.pooled_segments += 1
            yield from _pooled(runs, batches, self.workers)

    def _track(self, stream: Iterator[list[Example]]) -> Iterator[list[Example]]:
        self._streams.append(stream)
        return stream

    def _global(self, run: StageRun, index: int, stream: Iterator[list[Example]],
                upstream: list[StageRun]) -> Iterator[list[Example]]:
        """Pass 1 now (it drives everything upstream), then the resolve; pass 2 lazily, as the next stage reads."""
        spill = SpillStore(self.spill_dir / f"{index:02d}-{run.stage.name}.pickle", self.spill_after_rows)
        run.spill = spill
        run.begin()
        for batch in stream:
            start = spill.write(batch)
            t = time.perf_counter()
            run.stage.add_keys(batch, start, run.state, run.ctx)
            run.seconds += time.perf_counter() - t
            run.rows_in += len(batch)
        spill.seal()
        self._finish(upstream)  # every row has passed the stages before this one
        t = time.perf_counter()
        run.stage.resolve(run.state, spill, run.ctx)
        run.seconds += time.perf_counter() - t
        return self._apply(run, spill)

    @staticmethod
    def _apply(run: StageRun, spill: SpillStore) -> Iterator[list[Example]]:
        for start, batch in spill.batches():
            t = time.perf_counter()
            kept = run.stage.apply(batch, start, run.state, run.ctx)
            run.seconds += time.perf_counter() - t
            run.rows_out += len(kept)
            if kept:
                yield kept

    def _whole(self, run: StageRun, stream: Iterator[list[Example]], upstream: list[StageRun]) -> Iterator[list[Example]]:
        examples = [row for batch in stream for row in batch]
        self._finish(upstream)
        t = time.perf_counter()
        kept = run.stage.process(examples, run.ctx)
        run.seconds += time.perf_counter() - t
        run.rows_in, run.rows_out = len(examples), len(kept)
        del examples
        return batched(kept, self.batch_size)


def _inline(runs: list[StageRun], stream: Iterator[list[Example]]) -> Iterator[list[Example]]:
    for run in runs:
        run.begin()
    for batch in stream:
        for run in runs:
            run.rows_in += len(batch)
            t = time.perf_counter()
            batch = run.stage.process_batch(batch, run.state, run.ctx)
            run.seconds += time.perf_counter() - t
            run.rows_out += len(batch)
            if not batch:
                break
        if batch:
            yield batch


# --- worker processes ------------------------------------------------------------------------------------------
# The row stages a pool runs, set before the pool forks so every worker inherits them (and their loaded setup).
_WORKER_RUNS: list[StageRun] = []


def _worker_setup(parent_pid: int) -> None:
    """A forked worker: behave as a child (see children.py), then get the stages ready."""
    become_worker(parent_pid)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the driver may have used a fast tokenizer before the fork
    logging.disable(logging.WARNING)  # stages log in `close`, on the driver; two processes would interleave
    prepare_worker_runs(_WORKER_RUNS)


def prepare_worker_runs(runs: list[StageRun]) -> None:
    """In a worker process (forked, or a Ray actor): rejected rows go back to the driver, and each stage is set up."""
    for run in runs:
        run.ctx.buffer = []
        run.ctx.counts.clear()
        run.ctx.rejected_samples = []
        run.ctx._rejected_handle = None  # never write the driver's files from a worker
        run.stage.setup(run.ctx)


def _worker_batch(batch: list[Example]) -> tuple[list[Example], list[tuple[int, int, float, Any, tuple]]]:
    """One batch through the chain in a worker: the survivors, and per stage (in, out, seconds, its accumulator
    for this batch, its rejected rows)."""
    results = []
    for run in _WORKER_RUNS:
        if not batch:
            break
        t = time.perf_counter()
        state = run.stage.open(run.ctx)
        rows_in = len(batch)
        batch = run.stage.process_batch(batch, state, run.ctx)
        results.append((rows_in, len(batch), time.perf_counter() - t, state, run.ctx.take_part()))
    return batch, results


def _pooled(runs: list[StageRun], stream: Iterator[list[Example]], workers: int) -> Iterator[list[Example]]:
    """The row stages over `workers` forked processes; results come back in batch order and merge in that order,
    so the survivors, rejected files and findings equal a one-process run. At most two batches per worker are in
    flight (Pool.imap would read the whole input ahead)."""
    global _WORKER_RUNS
    for run in runs:
        run.begin()
    _WORKER_RUNS = runs
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_worker_setup, initargs=(os.getpid(),)) as pool:
        _WORKER_RUNS = []
        in_flight: deque = deque()
        for batch in stream:
            in_flight.append(pool.apply_async(_worker_batch, (batch,)))
            if len(in_flight) >= 2 * workers:
                yield from _take(runs, in_flight.popleft().get())
        while in_flight:
            yield from _take(runs, in_flight.popleft().get())


def _take(runs: list[StageRun], answer) -> Iterator[list[Example]]:
    kept, results = answer
    for run, (rows_in, rows_out, seconds, state, part) in zip(runs, results):
        run.rows_in += rows_in
        run.rows_out += rows_out
        run.seconds += seconds
        run.state = run.stage.merge(run.state, state)
        run.ctx.add_part(part)
    if kept:
        yield kept
