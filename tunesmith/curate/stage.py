"""Stage base classes, the stage registry and the per-stage context that does the bookkeeping.

A stage takes the list of surviving examples and returns the survivors; it calls `ctx.reject` for every
row it drops and `ctx.finding` for what it measured. The base class counts rows, times the stage and
checks that rows_in = rows_out + rows_rejected.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

from tunesmith.artifacts import StageRecord
from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.errors import UsageError

log = logging.getLogger(__name__)

STAGES: dict[str, type[Stage]] = {}
_ENCODER = json.JSONEncoder(ensure_ascii=False)  # reused: json.dumps with options builds one per call
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class DataError(UsageError):
    """Bad input data with `on_error: fail`; the message names file, line/row and field."""


def register_stage(cls: type[Stage]) -> type[Stage]:
    if cls.name in STAGES:
        raise ValueError(f"stage name {cls.name!r} registered twice")
    STAGES[cls.name] = cls
    return cls


SAMPLES_PER_STAGE = 20
SAMPLE_CHARS = 500  # text kept per field in the card's samples; the rejected file keeps the whole row


def _clipped(value: Any, depth: int = 0) -> Any:
    """A rejected row small enough for the card: long strings cut (marked), long lists shortened."""
    if isinstance(value, str):
        return value if len(value) <= SAMPLE_CHARS else value[:SAMPLE_CHARS] + " …[cut]"
    if depth > 6:
        return "…[nested too deep]"
    if isinstance(value, dict):
        return {key: _clipped(item, depth + 1) for key, item in list(value.items())[:50]}
    if isinstance(value, list):
        return [_clipped(item, depth + 1) for item in value[:20]]
    return value


class StageContext:
    """Bookkeeping for one run of one stage: counters, findings, rejected rows, a seeded rng."""

    def __init__(self, stage_name: str, rejected_dir: Path | None, seed: int = 0, extra: dict | None = None):
        self.stage_name = stage_name
        self.counts: Counter[str] = Counter()
        self.findings: dict[str, Any] = {}
        self.rng = random.Random(f"{seed}:{stage_name}")
        self.seed = seed
        self.extra = extra or {}  # pipeline-wide inputs, e.g. the resolved tokenizer
        self.rejected_path = rejected_dir / f"{stage_name}.jsonl" if rejected_dir else None
        self._rejected_handle = None
        self.rejected_samples: list[dict[str, Any]] = []
        self.buffer: list[str] | None = None  # set in worker processes: rejected lines kept for the driver

    def take_part(self) -> tuple[Counter, list[str], list[dict[str, Any]]]:
        """What a worker's batch added (counts, rejected lines, samples), handed back to the driver; resets them."""
        part = (self.counts, self.buffer or [], self.rejected_samples)
        self.counts, self.buffer, self.rejected_samples = Counter(), [], []
        return part

    def add_part(self, part: tuple[Counter, list[str], list[dict[str, Any]]]) -> None:
        """Take in a worker's batch: counts add, lines are written in order, samples fill up to the cap."""
        counts, lines, samples = part
        self.counts.update(counts)
        room = SAMPLES_PER_STAGE - len(self.rejected_samples)
        if room > 0:
            self.rejected_samples.extend(samples[:room])
        if lines and self.rejected_path is not None:
            if self._rejected_handle is None:
                self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
                self._rejected_handle = open(self.rejected_path, "w", encoding="utf-8")
            self._rejected_handle.write("".join(line + "\n" for line in lines))

    def reject(
        self, example: Example, reason: str, detail: str = "", field: str | None = None, shown: Example | None = None
    ) -> None:
        """Count a dropped row and write it, with its reason, to rejected/<stage>.jsonl.

        `shown` replaces the row in the samples that go on the card and into the report (e.g. with PII
        masked); the rejected file always holds the original row.
        """
        self.counts[f"rejected:{reason}"] += 1
        self.counts["rejected"] += 1
        record = {"stage": self.stage_name, "reason": reason, "detail": detail, "where": example.where}
        if field:
            record["field"] = field
        record.update(example.to_rejected_json())
        try:
            line = _ENCODER.encode(record)
        except RecursionError:  # fields nested nearly as deep as the parser allows: keep their top levels
            record = _clipped(record)
            line = _ENCODER.encode(record)
        if _SURROGATE.search(line):  # lone surrogates (rejected as invalid_utf8) cannot be written as UTF-8
            line = _SURROGATE.sub("\ufffd", line)
            record = json.loads(line)
        if len(self.rejected_samples) < SAMPLES_PER_STAGE:
            sample = record if shown is None else {**record, **json.loads(_SURROGATE.sub("\ufffd", json.dumps(
                shown.to_rejected_json(), ensure_ascii=False)))}
            self.rejected_samples.append(_clipped(sample))
        if self.buffer is not None:  # a worker process: the driver writes the lines, in batch order
            self.buffer.append(line)
            return
        if self.rejected_path is None:
            return
        if self._rejected_handle is None:
            self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
            self._rejected_handle = open(self.rejected_path, "w", encoding="utf-8")
        self._rejected_handle.write(line + "\n")

    def finding(self, key: str, value: Any) -> None:
        self.findings[key] = value

    def close(self) -> None:
        if self._rejected_handle is not None:
            self._rejected_handle.close()
            self._rejected_handle = None


class Stage(ABC):
    """A curation step. Three shapes, named by `mode`:

    - ``"row"``: a pure function of each row (plus config and a per-process `setup`): the engine streams batches
      through `process_batch`, which updates a small accumulator made by `open`; accumulators of batches run in
      other processes are combined by `merge` (associative: merging batch results in order gives exactly what one
      pass over all rows gives), and `close` writes the findings from the combined one.
    - ``"global"`` (`GlobalStage`): a decision that needs every row (dedup, split): small per-row keys first, a
      resolve step on those keys, then a second streaming pass that applies the decisions.
    - ``"whole"``: a stage that still needs all rows in memory at once (`process` over the full list).

    `run` runs any stage over an in-memory list with the same code the engine uses, which is what tests call.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    mode: ClassVar[str] = "whole"
    inspector: ClassVar[bool] = False  # True: changes no row
    Config: ClassVar[type[StrictModel]] = StrictModel
    # the typed shape of the stage's findings (without the base's rejected_by_reason / rejected_samples): checked
    # when the record is made, so a renamed or missing finding fails loudly instead of reaching a gate as nothing
    Findings: ClassVar[type[BaseModel] | None] = None

    def __init__(self, config: StrictModel | None = None):
        self.config = config if config is not None else self.Config()

    # --- row mode -------------------------------------------------------------------------------------------
    def setup(self, ctx: StageContext) -> None:  # noqa: B027 (optional hook)
        """Once per process before the first batch (load a tokenizer, compile patterns); nothing by default."""

    def open(self, ctx: StageContext) -> Any:
        """A fresh, empty accumulator for the findings of the rows this process will see."""
        return None

    def process_batch(self, batch: list[Example], state: Any, ctx: StageContext) -> list[Example]:
        raise NotImplementedError(f"stage {self.name} has no batch form")

    def merge(self, state: Any, other: Any) -> Any:
        """`state` then `other` (the later rows), as one accumulator; may update `state` in place."""
        return state

    def close(self, state: Any, ctx: StageContext) -> None:  # noqa: B027 (optional hook)
        """Write the findings of all rows (from the merged accumulator) with `ctx.finding`."""

    # --- whole mode -----------------------------------------------------------------------------------------
    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        """All rows at once. Row and global stages get this for free from their batch methods."""
        if self.mode == "row":
            self.setup(ctx)
            state = self.open(ctx)
            kept = self.process_batch(examples, state, ctx)
            self.close(state, ctx)
            return kept
        raise NotImplementedError(f"stage {self.name} implements neither process nor process_batch")

    def run(self, examples: list[Example], ctx: StageContext) -> tuple[list[Example], StageRecord]:
        """Run the stage over an in-memory list with bookkeeping; returns the survivors and the stage's record."""
        start = time.perf_counter()
        try:
            kept = self.process(examples, ctx)
        finally:
            ctx.close()
        return kept, self.record(ctx, len(examples), len(kept), time.perf_counter() - start)

    def record(self, ctx: StageContext, rows_in: int, rows_out: int, seconds: float) -> StageRecord:
        """The stage's card record from its counters and findings; checks that no row was lost."""
        rejected = ctx.counts["rejected"]
        if rows_in != rows_out + rejected:
            raise AssertionError(f"stage {self.name} lost rows: {rows_in} in, {rows_out} out, {rejected} rejected")
        findings = dict(ctx.findings)
        if self.Findings is not None:
            self.Findings.model_validate(findings)
        reasons = {k.split(":", 1)[1]: v for k, v in ctx.counts.items() if k.startswith("rejected:")}
        if reasons:
            findings["rejected_by_reason"] = dict(sorted(reasons.items()))
            findings["rejected_samples"] = ctx.rejected_samples
        return StageRecord(
            name=self.name,
            version=self.version,
            config=self.config.model_dump(mode="json"),
            rows_in=rows_in,
            rows_out=rows_out,
            rows_rejected=rejected,
            seconds=round(seconds, 4),
            findings=findings,
            rejected_file=f"rejected/{self.name}.jsonl" if rejected else None,
        )


class StageFindings(BaseModel):
    """Base of a stage's `Findings` model: every key the stage writes is declared (extra keys are an error)."""

    model_config = ConfigDict(extra="forbid")


class FilterStage(Stage):
    """A row stage that answers one question per row: `keep(example, state, ctx)` returns the row (possibly
    changed) to keep it, or a `Reject` to drop it; the base loops, counts and writes every rejected row with its
    reason (datatrove's BaseFilter.filter_batch, with tunesmith's file:line records)."""

    mode = "row"

    @abstractmethod
    def keep(self, example: Example, state: Any, ctx: StageContext) -> Example | Reject: ...

    def process_batch(self, batch: list[Example], state: Any, ctx: StageContext) -> list[Example]:
        kept = []
        for example in batch:
            answer = self.keep(example, state, ctx)
            if isinstance(answer, Reject):
                ctx.reject(example, answer.reason, answer.detail, field=answer.field, shown=answer.shown)
            else:
                kept.append(answer)
        return kept


class Reject(NamedTuple):
    """Why `FilterStage.keep` drops a row (`shown`: the row as the card's samples may show it, e.g. masked)."""

    reason: str
    detail: str = ""
    field: str | None = None
    shown: Example | None = None


class RowStore(ABC):
    """The rows a global stage saw, readable again in order as `(first position, batch)` pairs; a row's position
    (0-based, in input order) is its stable id for the keep rule: the smallest position wins."""

    @abstractmethod
    def batches(self) -> Iterator[tuple[int, list[Example]]]: ...

    @abstractmethod
    def __len__(self) -> int: ...


class ListStore(RowStore):
    """Rows held in memory (tests, `Stage.run`)."""

    def __init__(self, examples: list[Example], batch_size: int = 1 << 30):
        self.examples, self.batch_size = examples, batch_size

    def batches(self) -> Iterator[tuple[int, list[Example]]]:
        for start in range(0, len(self.examples), self.batch_size):
            yield start, self.examples[start : start + self.batch_size]

    def __len__(self) -> int:
        return len(self.examples)


class GlobalStage(Stage):
    """A stage whose decision needs every row, in two streaming passes around a resolve step:

    1. `add_keys(batch, start, state, ctx)` records small per-row keys (a hash, band keys, a group key) in `state`;
    2. `resolve(state, rows, ctx)` decides from the keys alone, or reads `rows` again for the few rows it needs
       (near-duplicate candidates, say);
    3. `apply(batch, start, state, ctx)` keeps, changes or rejects each row by the decision.

    `close(state, ctx)` then writes the findings. Positions are the rows' 0-based order in the stage's input.
    """

    mode = "global"

    @abstractmethod
    def add_keys(self, batch: list[Example], start: int, state: Any, ctx: StageContext) -> None: ...

    def resolve(self, state: Any, rows: RowStore, ctx: StageContext) -> None:
        """Decide from the keys; the default has nothing to decide."""

    @abstractmethod
    def apply(self, batch: list[Example], start: int, state: Any, ctx: StageContext) -> list[Example]: ...

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        self.setup(ctx)
        state = self.open(ctx)
        self.add_keys(examples, 0, state, ctx)
        self.resolve(state, ListStore(examples), ctx)
        kept = self.apply(examples, 0, state, ctx)
        self.close(state, ctx)
        return kept


def build_stage(entry: dict[str, Any]) -> Stage:
    """Build a stage from a config entry `{stage: name, ...params}` (params validated by its Config)."""
    params = dict(entry)
    name = params.pop("stage", None)
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known stages: {', '.join(sorted(STAGES))}")
    cls = STAGES[name]
    return cls(cls.Config.model_validate(params))
