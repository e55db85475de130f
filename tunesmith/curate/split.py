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
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
from collections import Counter, defaultdict
from typing import Annotated

from pydantic import Field, model_validator

from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.stage import DataError, Stage, StageContext, register_stage

log = logging.getLogger(__name__)
TRAINABLE_BY_ID = "trainable_tokens_by_id"  # ctx.extra key: token_stats' per-row trainable token counts


class Split(Stage):
    """Assign train/validation/test deterministically; groups stay together, strata keep their shares."""

    name = "split"
    version = "1"

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

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        column_warnings = [w for option in ("group_by", "stratify") if (w := self._check_column(option, examples, ctx))]
        keys = self._group_keys(examples)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            groups[key].append(i)
        strata: dict[str, list[str]] = defaultdict(list)
        for key, members in groups.items():
            strata[self._stratum(examples[members[0]])].append(key)
        assignment: dict[str, str] = {}
        exact = bool(self.config.sizes or self.config.stratify)
        for stratum_keys in strata.values():
            if exact:
                assignment.update(self._cut_by_count(stratum_keys, groups, len(examples)))
            else:
                edges, names = self._intervals()
                assignment.update({key: names[bisect.bisect_right(edges, self._position(key))] for key in stratum_keys})
        out = [ex.replace(split=assignment[key]) for ex, key in zip(examples, keys)]
        sizes = Counter(ex.split for ex in out)
        ctx.finding("sizes", {name: sizes.get(name, 0) for name in self._names()})
        ctx.finding("groups", sum(1 for m in groups.values() if len(m) > 1))
        ctx.finding("stratify", self.config.stratify)
        ctx.finding("assignment", "exact counts" if exact else "stable by hash position")
        ratios = self._ratios(sizes, len(out))
        ctx.finding("ratios", ratios)
        largest = max((len(m) for m in groups.values()), default=0)
        warnings = column_warnings + [
            self._ratio_warning(name, r, len(out), largest, exact) for name, r in ratios.items()
            if abs(r["achieved"] - r["asked"]) > self.config.ratio_tolerance and abs(r["rows"] - r["asked"] * len(out)) > 1
        ]
        ctx.finding("warnings", warnings)
        for warning in warnings:
            log.warning("split: %s", warning)
        record_trainable_tokens(out, ctx)
        if self.config.stratify:
            table: dict[str, Counter] = defaultdict(Counter)
            for ex in out:
                table[ex.split][self._stratum(ex)] += 1
            ctx.finding("strata", {k: dict(v) for k, v in table.items()})
        return out

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

    def _check_column(self, option: str, examples: list[Example], ctx: StageContext) -> str | None:
        """A `group_by`/`stratify` column that no row carries would be ignored silently (and the ratio warning
        would blame chance), so it stops the run; one missing on some rows is a warning naming how many."""
        column = getattr(self.config, option)
        if not column or not examples:
            return None
        missing = [ex for ex in examples if ex.meta.get(column) is None]
        alone = "grouped alone" if option == "group_by" else "put in one stratum of their own"
        if len(missing) == len(examples):
            why = ""
            if column in ctx.extra.get("ignored_columns", {}):
                why = " (it was listed as an ignored column)"
            elif "ignored_columns" in ctx.extra:  # validate saw every column and this one on no input row
                why = " that has it, or check the name: no input row has such a column"
            raise DataError(f"split.{option}: column {column!r} is on no row; add keep_columns: [{column}] to the "
                            f"source{why}")
        if not missing:
            return None
        shown = ", ".join(ex.where for ex in missing[:3])
        return (f"split.{option}: column {column!r} is missing on {len(missing)} of {len(examples)} rows (e.g. "
                f"{shown}); those rows are {alone}")

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

    def _group_keys(self, examples: list[Example]) -> list[str]:
        """Each row's group: rows sharing any label (the `group_by` value, a preference row's prompt, a near-dup
        cluster; `group` joins several with "|") are joined transitively, so no label straddles splits."""
        parent: dict[str, str] = {}

        def root(label: str) -> str:
            while parent.setdefault(label, label) != label:
                parent[label] = parent[parent[label]]  # path halving keeps the chains short
                label = parent[label]
            return label

        labels = [self._labels(example) for example in examples]
        for row in labels:
            for other in row[1:]:
                a, b = root(row[0]), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the smaller label is the root: the result is order-free
        return [root(row[0]) for row in labels]

    def _labels(self, example: Example) -> list[str]:
        labels = example.group.split("|") if example.group else []
        value = example.meta.get(self.config.group_by) if self.config.group_by else None
        if value is not None:  # a null value names no group: the row is grouped by its other labels or alone
            labels.insert(0, f"col:{value}")
        return labels or [example.id]

    def _stratum(self, example: Example) -> str:
        value = example.meta.get(self.config.stratify) if self.config.stratify else None
        return "" if value is None else str(value)

    def _position(self, key: str) -> float:
        digest = hashlib.sha256(f"{self.config.seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _intervals(self) -> tuple[list[float], list[str]]:
        """The ratios cut [0, 1) into one interval per split, the largest (train) last: upper edges and names."""
        ratios = self.config.ratios
        largest = max(ratios, key=ratios.get)
        names = [k for k in ratios if k != largest]
        return list(itertools.accumulate(ratios[k] for k in names)), [*names, largest]

    def _cut_by_count(self, keys: list[str], groups: dict[str, list[int]], total: int) -> dict[str, str]:
        """Cut the position-ordered groups of one stratum into splits by row count (exact shares)."""
        ordered = sorted(keys, key=self._position)
        rows = sum(len(groups[k]) for k in keys)
        targets = self._targets(rows, total)
        assignment, names, filled, current = {}, list(targets), 0, 0
        for key in ordered:
            while current < len(names) - 1 and filled >= targets[names[current]]:
                current, filled = current + 1, 0
            assignment[key] = names[current]
            filled += len(groups[key])
        return assignment

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
    """Trainable tokens per split, from token_stats' per-row counts, for the gates (token_stats runs before the
    split, so only a stage that sees both the counts and the splits can tell train's share)."""
    counts = ctx.extra.get(TRAINABLE_BY_ID)
    if counts is None:
        return
    by_split: Counter = Counter()
    for example in examples:
        by_split[example.split or "all"] += counts.get(example.id, 0)
    ctx.finding("trainable_tokens_by_split", dict(sorted(by_split.items())))


register_stage(Split)
