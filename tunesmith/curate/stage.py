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
from pathlib import Path
from typing import Any, ClassVar

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
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    inspector: ClassVar[bool] = False  # True: changes no row, so the pipeline may run it in the background
    Config: ClassVar[type[StrictModel]] = StrictModel

    def __init__(self, config: StrictModel | None = None):
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]: ...

    def run(self, examples: list[Example], ctx: StageContext) -> tuple[list[Example], StageRecord]:
        """Run the stage with bookkeeping and return the survivors and the stage's record."""
        start = time.perf_counter()
        try:
            kept = self.process(examples, ctx)
        finally:
            ctx.close()
        rejected = ctx.counts["rejected"]
        if len(examples) != len(kept) + rejected:
            raise AssertionError(
                f"stage {self.name} lost rows: {len(examples)} in, {len(kept)} out, {rejected} rejected"
            )
        findings = dict(ctx.findings)
        reasons = {k.split(":", 1)[1]: v for k, v in ctx.counts.items() if k.startswith("rejected:")}
        if reasons:
            findings["rejected_by_reason"] = dict(sorted(reasons.items()))
            findings["rejected_samples"] = ctx.rejected_samples
        record = StageRecord(
            name=self.name,
            version=self.version,
            config=self.config.model_dump(mode="json"),
            rows_in=len(examples),
            rows_out=len(kept),
            rows_rejected=rejected,
            seconds=round(time.perf_counter() - start, 4),
            findings=findings,
            rejected_file=f"rejected/{self.name}.jsonl" if rejected else None,
        )
        return kept, record


def build_stage(entry: dict[str, Any]) -> Stage:
    """Build a stage from a config entry `{stage: name, ...params}` (params validated by its Config)."""
    params = dict(entry)
    name = params.pop("stage", None)
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known stages: {', '.join(sorted(STAGES))}")
    cls = STAGES[name]
    return cls(cls.Config.model_validate(params))
