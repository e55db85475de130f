"""The curate config: sources, the ordered list of stages with their parameters, and quality gates."""

from __future__ import annotations

import difflib
import os
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from tunesmith.config import StrictModel, home_path, preview, problem_text
from tunesmith.curate.sources import SourceConfig, require_utf8, source_name
from tunesmith.curate.stage import STAGES

DEFAULT_SHARD_ROWS = 100_000
DEFAULT_STAGES = ["validate", "exact_dedup", "near_dedup", "pii", "bias_audit", "token_stats", "split", "contamination"]


class GatesConfig(StrictModel):
    """Limits that stop a dataset version from being written; unset gates are not checked. Each description
    says what the gate measures; the card's gate records say it too (`measures`)."""

    min_rows: int | None = Field(1, ge=0, le=1_000_000_000, description="Fewest rows the training split may have.")
    max_duplicate_rate: float | None = Field(
        None, ge=0, le=1, description="Most exact+near duplicates per input row (all rows read, before the split)."
    )
    max_pii_rows: int | None = Field(
        None, ge=0, le=1_000_000_000, description="Most rows in which `pii` found something (all rows, before the split)."
    )
    max_contamination_rows: int | None = Field(
        None, ge=0, le=1_000_000_000, description="Most rows flagged by `contamination`: held-out rows overlapping "
        "training, plus training rows overlapping `eval_files` (all splits)."
    )
    max_contamination_rate: float | None = Field(
        0.05, ge=0, le=1, description="Most share of an evaluation set found in training: held-out (validation + test) "
        "rows overlapping a training row, per held-out row, and for each `eval_files` file its rows that a training "
        "row overlaps, per file row; the worst of these is gated. Rows removed by `action: drop` no longer count."
    )
    min_trainable_tokens: int | None = Field(
        None, ge=0, le=10**15, description="Fewest trainable tokens in the training split (`token_stats` per-row "
        "counts summed over the rows the split put in train; all rows when nothing was split)."
    )
    max_rejected_rate: float | None = Field(0.5, ge=0, le=1, description="Most rejected rows per input row, all stages.")


class CurateConfig(StrictModel):
    name: str = Field("dataset", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Dataset name (a folder name).")
    version: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Version folder; default: next free vN."
    )
    output_dir: str = Field("artifacts/datasets", description="Versions go to <output_dir>/<name>/<version>/.")
    tokenizer: str = Field("smollm2-135m-instruct", description="Model whose tokenizer and chat template count tokens.")
    trust_remote_code: bool = Field(False, description="Allow the tokenizer's own Python code (off by default).")
    sources: list[SourceConfig] = Field(min_length=1, description="Input files or hub datasets.")
    stages: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"stage": s} for s in DEFAULT_STAGES],
        validate_default=True,
        description="Ordered stages: `{stage: <name>, ...parameters}`; `validate` must come first.",
    )
    gates: GatesConfig = Field(default_factory=GatesConfig, description="Quality gates checked before writing.")
    report: bool = Field(True, description="Write report.html (the audit report) with the version.")
    executor: Literal["local", "ray"] = Field(
        "local", description="local: stream in this process (and `workers` forked processes); ray: the same stages "
        "on Ray Data (`pip install tunesmith[ray]`). Both write identical files."
    )
    workers: int | Literal["auto"] = Field(
        "auto", description="Processes for the row stages (validate, pii, bias_audit, token_stats) with the local "
        "executor; auto: one per CPU this process may use (at most 8)."
    )
    batch_size: int = Field(
        1000, ge=1, le=1_000_000, description="Rows per batch; memory grows with it, not with the size of the data."
    )
    split_format: Literal["parquet", "jsonl"] = Field(
        "parquet", description="How split files are written: parquet (shards `<split>-00000-of-00003.parquet`, "
        "which `datasets.load_dataset(<version folder>)` reads) or jsonl (one `<split>.jsonl` per split)."
    )
    shard_rows: int = Field(
        DEFAULT_SHARD_ROWS, ge=1, le=100_000_000, description="Rows per Parquet shard; shards are cut by row count, "
        "so the files never depend on `batch_size` or `workers`."
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to connect to (e.g. ray://head:10001); default: start a local one."
    )

    def worker_count(self) -> int:
        if self.workers != "auto":
            return max(1, int(self.workers))
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, 8))

    @field_validator("output_dir")
    @classmethod
    def _home_folder(cls, value: str) -> str:
        return home_path(require_utf8(value, "give an output folder whose name is UTF-8"))

    @field_validator("sources")
    @classmethod
    def _distinct_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        """Row ids are `<source name>:<row>`, so two sources with one name would give rows the same ids."""
        first: dict[str, int] = {}
        for i, source in enumerate(sources):
            name = source_name(source)
            if name in first:
                raise ValueError(f"sources[{i}] ({source.path}) has the same name {name!r} as sources[{first[name]}] "
                                 f"({sources[first[name]].path}); give one of them a distinct `name:`")
            first[name] = i
        return sources

    @field_validator("stages")
    @classmethod
    def _resolve_stages(cls, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Validate each entry against its stage's Config and fill in the defaults."""
        resolved = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "stage" not in entry:
                raise ValueError(f"stages[{i}] must be a mapping with a `stage:` name, got {preview(entry)}")
            params = {k: v for k, v in entry.items() if k != "stage"}
            name = entry["stage"]
            if name not in STAGES:
                close = difflib.get_close_matches(str(name), list(STAGES), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"stages[{i}]: unknown stage {preview(name)}{hint} (known: {', '.join(sorted(STAGES))})")
            stage_config = STAGES[name].Config
            try:
                validated = stage_config.model_validate(params)
            except ValidationError as err:
                raise ValueError(f"stages[{i}] ({name}): {_explain(err, stage_config)}") from None
            resolved.append({"stage": name, **validated.model_dump(mode="json")})
        if not resolved or resolved[0]["stage"] != "validate":
            raise ValueError("the first stage must be `validate` (it turns raw rows into conversations)")
        return resolved


def _explain(err: ValidationError, model: type[StrictModel]) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(p)[:100] for p in item["loc"])
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key[:100], list(model.model_fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"unknown key {preview(key)}{hint} (valid keys: {', '.join(model.model_fields)})")
        elif key:
            problems.append(f"{key}: {problem_text(item)} (got {preview(item.get('input'))})")
        else:  # a rule about the whole stage config (e.g. split ratios that do not add up)
            problems.append(problem_text(item))
    return "; ".join(problems)
