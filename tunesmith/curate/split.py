"""The `split` stage: deterministic, group-aware, optionally stratified train/validation/test assignment.

Each group (a near-duplicate cluster tagged by `near_dedup`, a user column's value, or a single row) gets a
position in [0, 1) from a hash of (seed, group key), so a group never straddles splits and the assignment
depends only on the rows and the seed, not on the order they arrive in.

With ratios alone, a group's split follows from its own position (the ratios cut [0, 1) into intervals),
so adding or removing rows never moves another row to a different split: a new dataset version keeps its
old rows where they were, and a model trained on one version is not tested on its own training rows in the
next. Split sizes then follow the ratios up to sampling noise. Absolute `sizes` and `stratify` ask for exact
counts instead: groups are taken in position order until each split is full, so rows near a cut can move
when other rows are added or removed (`tunesmith card diff` counts them). Either way the achieved shares are
recorded beside the asked ones, with a warning and its cause (large groups, chance) when they differ.

Streamed in two passes (split_keys.py): pass 1 keeps each row's group labels as 64-bit hashes and its stratum as a
small number; the resolve joins the groups and assigns them on those keys; pass 2 sets each row's split.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.split_keys import (
    ColumnTally,
    Groups,
    SplitKeys,
    TokensBySplit,
    cut_by_count,
    label_hash,
)
from tunesmith.curate.stage import DataError, GlobalStage, RowStore, StageContext, StageFindings, register_stage

log = logging.getLogger(__name__)


class SplitFindings(StageFindings):
    sizes: dict[str, int]
    groups: int
    stratify: str | None
    assignment: str
    ratios: dict[str, dict]
    warnings: list[str]
    trainable_tokens_by_split: dict[str, int] | None = None  # when token_stats counted them
    strata: dict[str, dict[str, int]] | None = None  # with stratify


class Split(GlobalStage):
    """Assign train/validation/test deterministically; groups stay together, strata keep their shares."""

    name = "split"
    version = "1"
    Findings = SplitFindings

    class Config(StrictModel):
        ratios: dict[str, float] = Field(
            default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05},
            description="Share of rows per split; must add up to 1. Ignored for splits named in `sizes`.",
        )
        sizes: dict[str, Annotated[int, Field(le=1_000_000_000)]] = Field(
            default_factory=dict, description="Absolute row counts for some splits (e.g. {test: 200}; each at most "
            "1,000,000,000); the rest by ratio."
        )
        seed: int = Field(0, ge=-(2**63), le=2**63 - 1, description="Seed of the assignment hash.")
        stratify: str | None = Field(None, description="Column (a source `keep_columns` entry) to stratify by.")
        group_by: str | None = Field(None, description="Column whose equal values stay in one split.")
        ratio_tolerance: float = Field(
            0.02, ge=0, le=1, description="Warn when a split's achieved share of rows differs from the asked share "
            "by more than this (0.02 = 2 percentage points) and by more than one row."
        )

        @model_validator(mode="after")
        def _ratios_add_up(self):
            rest = {k: v for k, v in self.ratios.items() if k not in self.sizes}
            if any(v < 0 for v in self.ratios.values()) or any(v < 0 for v in self.sizes.values()):
                raise ValueError("split ratios and sizes must not be negative")
            if rest and self.sizes and sum(rest.values()) > 0:
                # the ratios share out what the absolute sizes leave, so rescale them to add up to 1
                total = sum(rest.values())
                object.__setattr__(self, "ratios", {**{k: v / total for k, v in rest.items()}})
            elif rest and abs(sum(rest.values()) - 1.0) > 1e-6:
                raise ValueError(f"split ratios {rest} add up to {sum(rest.values())}, not 1")
            for name in [*self.ratios, *self.sizes]:
                if not name.replace("_", "").replace("-", "").isalnum():
                    raise ValueError(f"split name {name!r} must be letters, digits, '-' or '_'")
            return self

    def open(self, ctx: StageContext) -> SplitKeys:
        state = SplitKeys()
        state.columns = {option: ColumnTally() for option in ("group_by", "stratify") if getattr(self.config, option)}
        return state

    def add_keys(self, batch: list[Example], start: int, state: SplitKeys, ctx: StageContext) -> None:
        if start != state.rows:
            raise ValueError(f"split: batch at position {start} after {state.rows} rows")
        seed, stratify = self.config.seed, self.config.stratify
        for example in batch:
            for option, tally in state.columns.items():
                tally.add(example, getattr(self.config, option))
            state.add([label_hash(seed, label) for label in self._labels(example)],
                      self._stratum(example) if stratify else None)

    def resolve(self, state: SplitKeys, rows: RowStore, ctx: StageContext) -> None:
        state.column_warnings = [w for option, tally in state.columns.items()
                                 if (w := self._check_column(option, tally, state.rows, ctx))]
        groups = state.groups(rows, self._labels, self.config.seed)
        names = self._names()
        group_split = np.zeros(len(groups.sizes), dtype=np.uint16)
        if self._exact():
            for name, members in self._cut_strata(groups, state).items():
                group_split[members] = names.index(name)
        else:
            edges, interval_names = self._intervals()
            index = np.array([names.index(name) for name in interval_names], dtype=np.uint16)
            group_split = index[np.searchsorted(np.array(edges, dtype=np.float64), groups.position, "right")]
        state.row_split = group_split[groups.of_row]
        state.group_count = int((groups.sizes > 1).sum())
        state.largest = int(groups.sizes.max()) if len(groups.sizes) else 0
        state.drop_keys()

    def _cut_strata(self, groups: Groups, state: SplitKeys) -> dict[str, np.ndarray]:
        """Exact counts per stratum (a group's stratum is its first row's): {split: its groups, all strata}."""
        group_stratum = (np.frombuffer(state.stratum, dtype=np.uint32)[groups.first_row] if state.strata
                         else np.zeros(len(groups.sizes), dtype=np.uint32))
        # by stratum, then position; equal positions keep the groups' order of appearance, as a stable sort did
        order = np.lexsort((groups.first_row, groups.position, group_stratum))
        bounds = np.flatnonzero(np.diff(group_stratum[order])) + 1
        chosen: dict[str, list[np.ndarray]] = {}
        for members in np.split(order, bounds) if len(order) else []:
            targets = self._targets(int(groups.sizes[members].sum()), state.rows)
            for name, picked in cut_by_count(members, groups.sizes, targets).items():
                chosen.setdefault(name, []).append(picked)
        return {name: np.concatenate(parts) for name, parts in chosen.items()}

    def apply(self, batch: list[Example], start: int, state: SplitKeys, ctx: StageContext) -> list[Example]:
        names = self._names()
        out = [ex.replace(split=names[i]) for ex, i in zip(batch, state.row_split[start : start + len(batch)].tolist())]
        state.tokens.add(out, ctx)
        if self.config.stratify:
            for ex in out:
                state.strata_table.setdefault(ex.split, Counter())[self._stratum(ex)] += 1
        return out

    def close(self, state: SplitKeys, ctx: StageContext) -> None:
        names, total = self._names(), state.rows
        counts = np.bincount(state.row_split, minlength=len(names)) if total else np.zeros(len(names), np.int64)
        sizes = Counter({name: int(counts[i]) for i, name in enumerate(names) if counts[i]})
        exact = self._exact()
        ctx.finding("sizes", {name: sizes.get(name, 0) for name in names})
        ctx.finding("groups", state.group_count)
        ctx.finding("stratify", self.config.stratify)
        ctx.finding("assignment", "exact counts" if exact else "stable by hash position")
        ratios = self._ratios(sizes, total)
        ctx.finding("ratios", ratios)
        warnings = state.column_warnings + [
            self._ratio_warning(name, r, total, state.largest, exact) for name, r in ratios.items()
            if abs(r["achieved"] - r["asked"]) > self.config.ratio_tolerance and abs(r["rows"] - r["asked"] * total) > 1
        ]
        ctx.finding("warnings", warnings)
        for warning in warnings:
            log.warning("split: %s", warning)
        state.tokens.report(ctx)
        if self.config.stratify:
            ctx.finding("strata", {k: dict(v) for k, v in state.strata_table.items()})

    def _exact(self) -> bool:
        return bool(self.config.sizes or self.config.stratify)

    def _ratios(self, sizes: Counter, total: int) -> dict[str, dict]:
        """Asked and achieved share of rows per split (asked: `sizes` over all rows, ratios over what is left)."""
        if total == 0:
            return {}
        fixed = {k: min(v, total) for k, v in self.config.sizes.items()}
        left = max(total - sum(fixed.values()), 0)
        asked = {**{k: v / total for k, v in fixed.items()},
                 **{k: v * left / total for k, v in self.config.ratios.items() if k not in fixed}}
        return {name: {"asked": round(asked[name], 4), "achieved": round(sizes.get(name, 0) / total, 4),
                       "rows": sizes.get(name, 0)} for name in self._names()}

    def _check_column(self, option: str, tally: ColumnTally, rows: int, ctx: StageContext) -> str | None:
        """A `group_by`/`stratify` column that no row carries would be ignored silently (and the ratio warning
        would blame chance), so it stops the run; one missing on some rows is a warning naming how many."""
        column = getattr(self.config, option)
        if not rows:
            return None
        alone = "grouped alone" if option == "group_by" else "put in one stratum of their own"
        if tally.missing == rows:
            why = ""
            if column in ctx.extra.get("ignored_columns", {}):
                why = " (it was listed as an ignored column)"
            elif "ignored_columns" in ctx.extra:  # validate saw every column and this one on no input row
                why = " that has it, or check the name: no input row has such a column"
            raise DataError(f"split.{option}: column {column!r} is on no row; add keep_columns: [{column}] to the "
                            f"source{why}")
        if not tally.missing:
            return None
        return (f"split.{option}: column {column!r} is missing on {tally.missing} of {rows} rows (e.g. "
                f"{', '.join(tally.shown)}); those rows are {alone}")

    @staticmethod
    def _ratio_warning(name: str, ratio: dict, total: int, largest: int, exact: bool) -> str:
        if largest > 1:
            why = (f"groups stay whole in one split and the largest holds {largest} rows ({largest / total:.1%}); "
                   "smaller groups (a finer `group_by`, or more rows) bring the shares closer")
        elif not exact:
            why = (f"each row's split follows from its own hash, so on {total} rows the sizes vary by chance; "
                   "set `sizes` for exact counts")
        else:
            why = "the counts were rounded per stratum"
        return (f"{name} got {ratio['achieved']:.1%} of the rows ({ratio['rows']} of {total}) where "
                f"{ratio['asked']:.1%} was asked: {why}")

    def _names(self) -> list[str]:
        return list(dict.fromkeys([*self.config.sizes, *self.config.ratios]))

    def _names(self) -> list[str]:
        return list(dict.fromkeys([*self.config.sizes, *self.config.ratios]))

    def _labels(self, example: Example) -> list[str]:
        labels = example.group.split("|") if example.group else []
        value = example.meta.get(self.config.group_by) if self.config.group_by else None
        if value is not None:  # a null value names no group: the row is grouped by its other labels or alone
            labels.insert(0, f"col:{value}")
        return labels or [example.id]

    def _stratum(self, example: Example) -> str:
        value = example.meta.get(self.config.stratify) if self.config.stratify else None
        return "" if value is None else str(value)

    def _intervals(self) -> tuple[list[float], list[str]]:
        """The ratios cut [0, 1) into one interval per split, the largest (train) last: upper edges and names."""
        ratios = self.config.ratios
        largest = max(ratios, key=ratios.get)
        names = [k for k in ratios if k != largest]
        return list(itertools.accumulate(ratios[k] for k in names)), [*names, largest]

    def _targets(self, rows: int, total: int) -> dict[str, float]:
        """Rows wanted per split in one stratum; the largest-ratio split (train) is filled last."""
        cfg = self.config
        fixed = {k: v * rows / total for k, v in cfg.sizes.items()}
        remaining = max(rows - sum(fixed.values()), 0)
        by_ratio = {k: v * remaining for k, v in cfg.ratios.items() if k not in cfg.sizes}
        targets = {**fixed, **by_ratio}
        last = max(by_ratio, key=by_ratio.get) if by_ratio else None
        order = [k for k in targets if k != last] + ([last] if last else [])
        return {k: (round(targets[k]) if k != last else float("inf")) for k in order}


def record_trainable_tokens(examples: list[Example], ctx: StageContext) -> None:
    """The `trainable_tokens_by_split` finding of `examples` (all of a stage's rows at once)."""
    tally = TokensBySplit()
    tally.add(examples, ctx)
    tally.report(ctx)


register_stage(Split)
