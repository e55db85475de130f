"""The streaming engine: any batch size and any number of workers give the same survivors, rejected files and
stage records as one pass over an in-memory list; global stages see every row; nothing is left behind."""

from __future__ import annotations

import multiprocessing
import tracemalloc
from array import array
from collections import Counter

import pytest

from tunesmith.curate.children import can_fork
from tunesmith.curate.engine import Engine, SpillStore, StageRun
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import FilterStage, GlobalStage, Reject, Stage, StageContext

from .engine_helpers import comparable, rejected_lines


class DropOdd(FilterStage):
    """Drops rows whose number is odd; counts the words it kept (a mergeable accumulator)."""

    name = "drop_odd"

    def open(self, ctx):
        return Counter()

    def keep(self, example, state, ctx):
        if int(example.id.split(":")[1]) % 2:
            return Reject("odd", f"row {example.id} is odd", field="id")
        state.update(example.messages[0].content.split())
        return example

    def merge(self, state, other):
        state.update(other)
        return state

    def close(self, state, ctx):
        ctx.finding("words", dict(sorted(state.items())))


class FirstOfText(GlobalStage):
    """Keeps the first row (smallest position) of each text; keys are 8-byte hashes."""

    name = "first_of_text"

    def open(self, ctx):
        return {"hashes": array("q"), "drop": set()}

    def add_keys(self, batch, start, state, ctx):
        assert start == len(state["hashes"])
        state["hashes"].extend(hash(ex.messages[0].content) for ex in batch)

    def resolve(self, state, rows, ctx):
        seen = {}
        for position, value in enumerate(state["hashes"]):
            if seen.setdefault(value, position) != position:
                state["drop"].add(position)

    def apply(self, batch, start, state, ctx):
        kept = []
        for offset, example in enumerate(batch):
            if start + offset in state["drop"]:
                ctx.reject(example, "repeat", "same text as an earlier row")
            else:
                kept.append(example)
        return kept

    def close(self, state, ctx):
        ctx.finding("repeats", len(state["drop"]))


class Tag(Stage):
    """A row stage that changes every row it sees."""

    name = "tag"
    mode = "row"

    def process_batch(self, batch, state, ctx):
        return [ex.replace(group=f"g{len(ex.messages[0].content) % 3}") for ex in batch]


class Everything(Stage):
    """A whole-mode stage: needs every row at once (the old in-memory way)."""

    name = "everything"

    def process(self, examples, ctx):
        ctx.finding("rows_seen", len(examples))
        return examples[::-1][::-1]


def rows(n: int) -> list[Example]:
    return [Example(id=f"s:{i}", source="s.jsonl", row=i, line=i + 1,
                    messages=(Message("user", f"text {i % 7} word"), Message("assistant", "ok")))
            for i in range(n)]


def run_chain(tmp_path, examples, batch_size, workers, stages=None, spill_after_rows=10):
    stages = stages or [DropOdd(), FirstOfText(), Tag(), Everything(), DropOdd()]
    runs = [StageRun(s, StageContext(f"{s.name}{i}", tmp_path / "rejected")) for i, s in enumerate(stages)]
    kept: list[Example] = []
    engine = Engine(runs, tmp_path / "spill", batch_size=batch_size, workers=workers, fork_despite_threads=True,
                    spill_after_rows=spill_after_rows)
    records = engine.run(examples, kept.extend)
    assert (engine.pooled_segments > 0) == (workers > 1 and can_fork())  # the workers really ran
    rejected = {f"{s.name}{i}": rejected_lines(tmp_path, f"{s.name}{i}") for i, s in enumerate(stages)}
    return [ex.to_json() for ex in kept], [comparable(r) for r in records], rejected


@pytest.mark.parametrize(("batch_size", "workers", "spill_after_rows"),
                         [(1, 1, 10), (3, 1, 0), (1000, 1, 10), (2, 2, 10), (5, 2, 1000)])
def test_any_batch_size_and_worker_count_give_the_records_of_one_pass(tmp_path, batch_size, workers,
                                                                      spill_after_rows):
    """Also with the global stages' rows held in memory (spill_after_rows above the row count) or on disk."""
    one_pass = run_chain(tmp_path / "one", rows(40), 10**6, 1, spill_after_rows=10**6)
    streamed = run_chain(tmp_path / "streamed", rows(40), batch_size, workers, spill_after_rows=spill_after_rows)
    assert streamed == one_pass
    kept, records, rejected = streamed
    assert [r["rows_in"] for r in records] == [40, 20, 7, 7, 7]
    assert records[1]["findings"]["repeats"] == 13  # 20 even rows, 7 distinct texts
    assert records[0]["findings"]["words"]["text"] == 20
    assert len(rejected["drop_odd0"]) == 20 and rejected["drop_odd0"][0]["where"] == "s.jsonl:2"
    assert all(r["detail"] == "same text as an earlier row" for r in rejected["first_of_text1"])


def test_a_global_stage_keeps_the_smallest_position_of_each_key(tmp_path):
    kept, _, rejected = run_chain(tmp_path, rows(30), 4, 1, stages=[FirstOfText()])
    assert [row["id"] for row in kept] == [f"s:{i}" for i in range(7)]
    assert len(rejected["first_of_text0"]) == 23


def test_spill_files_are_removed_when_the_run_ends(tmp_path):
    seen = []
    real_write = SpillStore.write

    def write(self, batch):
        start = real_write(self, batch)
        seen.append(self.on_disk)
        return start

    SpillStore.write = write
    try:
        run_chain(tmp_path, rows(25), 4, 1, spill_after_rows=10)
    finally:
        SpillStore.write = real_write
    assert seen[0] is False and seen[-1] is True  # held in memory first, then spilled
    assert list((tmp_path / "spill").iterdir()) == []


class Lossy(Stage):
    name = "lossy"
    mode = "row"

    def process_batch(self, batch, state, ctx):
        return batch[1:]  # drops a row without ctx.reject


def test_a_stage_that_loses_rows_is_a_bug_not_a_smaller_dataset(tmp_path):
    with pytest.raises(AssertionError, match="lossy lost rows: 9 in, 6 out, 0 rejected"):
        run_chain(tmp_path, rows(9), 3, 1, stages=[Lossy()])


class Broken(Stage):
    name = "broken"
    mode = "row"

    def process_batch(self, batch, state, ctx):
        if any(ex.row == 7 for ex in batch):
            raise ValueError("stage bug on row 7")
        return batch


@pytest.mark.skipif(not can_fork(), reason="workers need fork and two cores")
def test_an_error_in_a_worker_reaches_the_driver_and_no_worker_is_left(tmp_path):
    with pytest.raises(ValueError, match="stage bug on row 7"):
        run_chain(tmp_path, rows(40), 2, 2, stages=[Broken(), FirstOfText()])
    assert multiprocessing.active_children() == []


def test_one_batch_needs_no_workers_and_threads_make_forking_unsafe(tmp_path):
    """A single batch runs in this process (forking would only cost); and a process running other threads does
    not fork (one of them might hold the import lock), yet gives the same records."""
    one_batch = Engine([StageRun(Tag(), StageContext("tag", None))], tmp_path / "a", batch_size=100, workers=2)
    one_batch.run(rows(10), lambda batch: None)
    assert one_batch.pooled_segments == 0
    import threading

    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)
    helper.start()
    try:
        threaded = Engine([StageRun(Tag(), StageContext("tag", None))], tmp_path / "b", batch_size=2, workers=2)
        kept = []
        threaded.run(rows(10), kept.extend)
    finally:
        stop.set()
    assert threaded.pooled_segments == 0 and len(kept) == 10


@pytest.mark.skipif(not can_fork(), reason="workers need fork and two cores")
def test_stopping_early_stops_the_workers(tmp_path):
    runs = [StageRun(Tag(), StageContext("tag", None))]
    engine = Engine(runs, tmp_path / "spill", batch_size=2, workers=2, fork_despite_threads=True)

    def sink(batch):
        raise KeyboardInterrupt  # Ctrl-C while the first batch is written

    with pytest.raises(KeyboardInterrupt):
        engine.run(rows(100), sink)
    assert multiprocessing.active_children() == []


def test_memory_is_set_by_the_batch_not_by_the_rows(tmp_path):
    """200k rows stream through a row and a global stage; only the batches and 8-byte keys are held at once."""

    def generated(n):
        for i in range(n):
            yield Example(id=f"s:{i}", source="s.jsonl", row=i, line=i + 1,
                          messages=(Message("user", f"question number {i} " + "x" * 200), Message("assistant", "ok")))

    runs = [StageRun(Tag(), StageContext("tag", None)), StageRun(FirstOfText(), StageContext("first", None))]
    count = 0

    def sink(batch):
        nonlocal count
        count += len(batch)

    tracemalloc.start()
    Engine(runs, tmp_path / "spill", batch_size=500, workers=1, spill_after_rows=1000).run(generated(200_000), sink)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 200_000
    # one row as an Example is ~1 KB here, so holding them all would take ~200 MB
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.1f} MiB"
