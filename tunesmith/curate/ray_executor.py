"""`executor: ray`: the same stages, with the row-stage segments on Ray Data (`pip install 'tunesmith[ray]'`).

Only how a run of consecutive row stages executes changes (`RayEngine._rows`); global and whole stages run on the
driver exactly as in the local `Engine`, over the small per-row keys, because a Ray Data groupby over 100k unique
keys took 55 s on 2 CPUs where the driver resolves them in well under a second.

A row segment is one Ray Data pipeline: the driver pickles each batch of Examples into a queue actor, one read task
turns the queue into a stream of one-row Arrow blocks, `map_batches` runs a callable class (the stages' `setup` once
per actor, then `engine._worker_batch` per batch) on `workers` actors, and the answers come back IN ORDER
(`preserve_order`) to be merged on the driver with `engine._take`, the same merge the forked pool uses, so the
survivors, rejected files and findings equal the local engine's byte for byte. At most `2 * workers` batches are in
flight (4 per worker), so the driver holds a few batches, not the data; the object store holds the same few.

Sources and split files still go through the driver's local files; reading/writing them on pyarrow filesystems
(`s3://`, `gs://`) from the workers is not done yet.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import pyarrow as pa

from tunesmith.artifacts import StageRecord
from tunesmith.curate import engine
from tunesmith.curate.engine import DEFAULT_BATCH_SIZE, Engine, StageRun
from tunesmith.curate.record import Example
from tunesmith.errors import UsageError

log = logging.getLogger(__name__)

MISSING_RAY = "executor: ray needs Ray: pip install 'tunesmith[ray]'"
_PICKLE = pickle.HIGHEST_PROTOCOL


def import_ray():
    """Ray and Ray Data, or the one-line error that says how to get them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise UsageError(MISSING_RAY) from err
    return ray


class RayEngine(Engine):
    """`Engine` with its row segments on Ray Data. `address`: a running cluster to connect to (left running);
    None starts a local one with `workers` CPUs for this run (and stops it after). An already initialised Ray
    (a test session, a notebook) is used as it is."""

    def __init__(self, runs: list[StageRun], spill_dir: Path, batch_size: int = DEFAULT_BATCH_SIZE,
                 workers: int = 1, on_record: Callable[[StageRecord], None] | None = None,
                 address: str | None = None):
        super().__init__(runs, spill_dir, batch_size=batch_size, workers=workers, on_record=on_record)
        self.address = address
        self.ray = import_ray()

    def run(self, rows, sink) -> list[StageRecord]:
        with self._cluster(), _ordered_data_context(self.ray):
            return super().run(rows, sink)

    @contextmanager
    def _cluster(self):
        """Connect (or start a local cluster) unless Ray already runs here; `shutdown` then only disconnects from
        a cluster at `address`, and stops the local one this run started."""
        ray = self.ray
        if ray.is_initialized():
            yield
            return
        if self.address is not None:
            ray.init(address=self.address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=self.workers, include_dashboard=False, logging_level=logging.WARNING)
        try:
            yield
        finally:
            ray.shutdown()

    def _rows(self, runs: list[StageRun], stream: Iterator[list[Example]]) -> Iterator[list[Example]]:
        if not runs:
            return stream
        return self._ray_rows(runs, stream)

    def _ray_rows(self, runs: list[StageRun], stream: Iterator[list[Example]]) -> Iterator[list[Example]]:
        for run in runs:
            run.begin()  # the driver's accumulators, which every batch's accumulator merges into
        first = next(stream, None)
        if first is None:
            return  # nothing to run: no cluster work at all
        from ray.util.queue import Queue

        queue = Queue(actor_options={"num_cpus": 0})
        try:
            answers = iter(self._dataset(runs, queue).iter_batches(batch_size=None, batch_format="pyarrow"))
            yield from _exchange(runs, chain([first], stream), queue, answers, window=4 * self.workers)
        finally:
            self.ray.kill(queue.actor)

    def _dataset(self, runs: list[StageRun], queue):
        """The segment's lazy Ray Data pipeline: queue -> one-row blocks -> the stages on `workers` actors."""
        ray = self.ray
        # the read task mostly waits on the queue: it takes no CPU, so `workers` actors can hold all of them
        feed = ray.data.read_datasource(_QueueSource(queue), override_num_blocks=1, num_cpus=0)
        return feed.map_batches(_RowSegment, fn_constructor_args=(_worker_copies(runs),), batch_size=1,
                                batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=self.workers),
                                num_cpus=1)


def _exchange(runs: list[StageRun], batches: Iterator[list[Example]], queue, answers,
              window: int) -> Iterator[list[Example]]:
    """Keep up to `window` batches in flight; merge each answer, in order, as it comes back."""
    in_flight, fed_all = 0, False
    while True:
        while not fed_all and in_flight < window:
            batch = next(batches, None)
            if batch is None:
                queue.put(None)  # the read task ends, and with it the pipeline
                fed_all = True
            else:
                queue.put(pickle.dumps(batch, protocol=_PICKLE))
                in_flight += 1
        if in_flight == 0:
            break
        block = next(answers, None)
        if block is None:
            raise RuntimeError(f"Ray Data ended with {in_flight} batches unanswered")
        for blob in block.column("answer").to_pylist():
            in_flight -= 1
            yield from engine._take(runs, pickle.loads(blob))
    for _ in answers:  # lets the pipeline finish cleanly
        raise RuntimeError("Ray Data answered more batches than it was given")


def _worker_copies(runs: list[StageRun]) -> list[StageRun]:
    """What an actor needs of each stage: the stage and a context without the driver's open file, counts or
    accumulator (the actor's `engine.prepare_worker_runs` then sets each stage up there)."""
    copies = []
    for run in runs:
        ctx = copy.copy(run.ctx)
        ctx._rejected_handle = None
        ctx.counts, ctx.findings, ctx.rejected_samples, ctx.buffer = Counter(), {}, [], []
        copies.append(StageRun(run.stage, ctx))
    return copies


class _RowSegment:
    """The callable class Ray Data runs on each actor: setup once, then one pickled batch per row of a block."""

    def __init__(self, runs: list[StageRun]):
        # engine._worker_setup minus its fork-only part (signals, exit with the parent: Ray owns the actor's life)
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        logging.disable(logging.WARNING)  # stages log in `close`, on the driver
        engine.prepare_worker_runs(runs)
        engine._WORKER_RUNS = runs  # an actor is its own process, like a forked worker

    def __call__(self, table: pa.Table) -> pa.Table:
        answers = [pickle.dumps(engine._worker_batch(pickle.loads(blob)), protocol=_PICKLE)
                   for blob in table.column("batch").to_pylist()]
        return pa.table({"answer": pa.array(answers, pa.large_binary())})


def _queue_source_class():
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class QueueSource(Datasource):
        """One read task that yields each pickled batch the driver puts on the queue, until it puts None."""

        def __init__(self, queue):
            self.queue = queue

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list:
            queue = self.queue

            def read() -> Iterator[pa.Table]:
                while (blob := queue.get()) is not None:
                    yield pa.table({"batch": pa.array([blob], pa.large_binary())})

            meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
            return [ReadTask(read, meta)]

    return QueueSource


def _QueueSource(queue):  # noqa: N802 - builds the class on first use, so importing this module needs no Ray
    return _queue_source_class()(queue)


@contextmanager
def _ordered_data_context(ray):
    """Answers in batch order (what makes the merge equal the local engine's), and no progress bars in the log."""
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.enable_progress_bars, context.target_max_block_size
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    # every pickled batch its own block, at once: by default the read task would pack them into one ~128 MiB
    # block, so nothing would flow until the driver had put that much on the queue (or all of it)
    context.target_max_block_size = 1
    try:
        yield
    finally:
        (context.execution_options.preserve_order, context.enable_progress_bars,
         context.target_max_block_size) = saved
