"""The `split` stage: deterministic, group-aware, optionally stratified train/validation/test assignment.

Each group (a near-duplicate cluster tagged by `near_dedup`, a user column's value, or a single row) gets a
position in [0, 1) from a hash of (seed, group key), so a group never straddles splits and the assignment
depends only on the rows and the seed, not on the order they arrive in.

With ratios alone, a group's split follows from its own position (the ratios cut [0, 1) into intervals),
so adding or removing rows never moves another row to a different split: a new dataset version keeps its
old rows where they were, and a model trained on one version is not tested on its own training rows in the
next. Split sizes then follow the ratios up to sampling noise. Absolute `sizes` and `stratify` ask for exact
counts instead: groups are taken in position order until each split is full, so rows near a cut can move
when other rows are added or removed (`tunesmith card diff` counts them).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections import Counter, defaultdict
from typing import Annotated

from pydantic import Field, model_validator

from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage


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
        groups: dict[str, list[int]] = defaultdict(list)
        for i, example in enumerate(examples):
            groups[self._group_key(example)].append(i)
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
        out = [ex.replace(split=assignment[self._group_key(ex)]) for ex in examples]
        sizes = Counter(ex.split for ex in out)
        ctx.finding("sizes", {name: sizes.get(name, 0) for name in self._names()})
        ctx.finding("groups", sum(1 for m in groups.values() if len(m) > 1))
        ctx.finding("stratify", self.config.stratify)
        ctx.finding("assignment", "exact counts" if exact else "stable by hash position")
        if self.config.stratify:
            table: dict[str, Counter] = defaultdict(Counter)
            for ex in out:
                table[ex.split][self._stratum(ex)] += 1
            ctx.finding("strata", {k: dict(v) for k, v in table.items()})
        return out

    def _names(self) -> list[str]:
        return list(dict.fromkeys([*self.config.sizes, *self.config.ratios]))

    def _group_key(self, example: Example) -> str:
        if self.config.group_by and self.config.group_by in example.meta:
            return f"col:{example.meta[self.config.group_by]}"
        return example.group or example.id

    def _stratum(self, example: Example) -> str:
        return str(example.meta.get(self.config.stratify, "")) if self.config.stratify else ""

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


register_stage(Split)
