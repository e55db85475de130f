"""The `contamination` stage: exact and word n-gram overlap between splits and against evaluation files.

Evaluation rows (validation/test) that repeat a training prompt, or share an n-gram with a training row,
leak the answer into training; so do training rows that overlap a user's own evaluation file. Each
flagged pair is listed with the shared span as evidence; `action: drop` removes the leaking rows. The share of
each evaluation set found in training is recorded and warned about above `warn_rate`; the gate
`max_contamination_rate` reads `contamination_rate`, the worst share left in the written version.

A global stage in bounded memory: pass 1 keeps the held-out rows' keys only (a 64-bit hash of the normalised
prompt, their n-gram hashes: contamination_keys.py), training rows are re-read from the spill in the resolve and
probed against them, and pass 2 rejects the rows decided there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.curate import minhash
from tunesmith.curate.contamination_keys import EvalFileKeys, HeldOutKeys, Side
from tunesmith.curate.dedup import field_text
from tunesmith.curate.record import Example
from tunesmith.curate.sources import SourceConfig, read_source
from tunesmith.curate.split_keys import TokensBySplit
from tunesmith.curate.stage import GlobalStage, RowStore, StageContext, StageFindings, register_stage

log = logging.getLogger(__name__)


class ContaminationFindings(StageFindings):
    ngram: int
    contaminated_rows: int
    pairs: list[dict]
    rates: dict[str, dict]
    contamination_rate: float
    warnings: list[str]
    trainable_tokens_by_split: dict[str, int] | None = None  # only when token_stats counted them


@dataclass
class _Found:
    """The pairs of one comparison (held-out vs train, or train vs one eval file), in row order: the first
    `limit` in full, the count, the reference rows named, and per contaminated row id the first pair's reason
    (empty unless `action: drop` needs it)."""

    limit: int
    keep_reasons: bool
    pairs: list[dict] = field(default_factory=list)
    count: int = 0
    references: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)

    def add(self, pair: dict) -> None:
        self.count += 1
        if len(self.pairs) < self.limit:
            self.pairs.append(pair)
        self.references.add(pair["b"])
        if pair["a"] not in self.reasons:
            self.reasons[pair["a"]] = (f"{pair['kind']} overlap with {pair['b']}: {pair['span'][:200]}"
                                       if self.keep_reasons else "")


@dataclass
class _State:
    held: HeldOutKeys = field(default_factory=HeldOutKeys)
    reasons: dict[str, str] = field(default_factory=dict)  # contaminated row id -> why (after resolve)
    pairs: list[dict] = field(default_factory=list)
    rates: dict[str, dict] = field(default_factory=dict)
    rows: int = 0  # seen by pass 1
    tokens: TokensBySplit = field(default_factory=TokensBySplit)  # of the rows kept: a drop leaves train fewer


class Contamination(GlobalStage):
    """Flag (or drop) held-out rows that overlap training rows, and training rows that overlap eval files.

    Pass 1 keeps only the held-out rows' prompt and n-gram hashes; the resolve streams the training rows past
    them (and past each eval file), then reads back just the rows a pair names; pass 2 drops the flagged rows.
    """

    name = "contamination"
    version = "1"
    Findings = ContaminationFindings

    class Config(StrictModel):
        ngram: int = Field(13, ge=3, le=100, description="Word n-gram length that counts as overlap (at most 100).")
        train_split: str = Field("train", description="The split that training reads.")
        eval_files: list[str] = Field(
            default_factory=list, description="Your evaluation files (any supported format) to check training against."
        )
        action: Literal["report", "drop"] = Field(
            "report", description="drop: reject leaking validation/test rows, and training rows overlapping eval files."
        )
        max_pairs_recorded: int = Field(200, ge=0, le=10_000, description="Evidence pairs listed on the card (at most 10,000).")
        min_overlap: float = Field(
            0.5, gt=0, le=1, description="Share of a row's n-grams found in the reference at which it is flagged "
            "(PaLM used 70% of 8-grams); 1 n-gram is enough when this is tiny.",
        )
        boilerplate_rows: int = Field(
            10, ge=1, le=1_000_000_000, description="An n-gram found in more reference rows than this is shared boilerplate "
            "(templates, fixed instructions), not leakage, and is ignored (as GPT-3's decontamination did).",
        )
        warn_rate: float = Field(
            0.01, ge=0, le=1, description="Warn when more than this share of an evaluation set overlaps training: "
            "of the held-out (validation + test) rows, or of an `eval_files` file's rows."
        )

    def open(self, ctx: StageContext) -> _State:
        return _State()

    def _is_train(self, example: Example) -> bool:
        return example.split in (self.config.train_split, None)

    def add_keys(self, batch: list[Example], start: int, state: _State, ctx: StageContext) -> None:
        state.rows = start + len(batch)
        index = [i for i, ex in enumerate(batch) if not self._is_train(ex)]
        if index:
            side = Side.of([batch[i] for i in index], self.config.ngram, ctx.extra.get("word_cache"))
            state.held.add(side, start + np.array(index, dtype=np.int64))

    def resolve(self, state: _State, rows: RowStore, ctx: StageContext) -> None:
        cfg, held = self.config, state.held
        held.seal(state.rows)
        evals = [(path, EvalFileKeys(self._read_eval(path), cfg.ngram, cfg.boilerplate_rows)) for path in cfg.eval_files]
        found = [self._found() for _ in evals]
        if len(held.positions) or evals:
            for positions, batch in _train_chunks(rows, self._is_train):  # streamed past the held-out and eval keys
                train = Side.of(batch, cfg.ngram, ctx.extra.get("word_cache"))
                held.probe(train, positions)
                for (_, keys), into in zip(evals, found):
                    for q, kind, r, offset, share in keys.matches(train, cfg.min_overlap):
                        a, b = train.rows[q], keys.side.rows[r]
                        span = self._span(a, train.texts[q], kind, offset)
                        into.add(_pair(a.id, a.split, b.id, b.split, kind, span, share, "train_vs_eval_file"))
        held_found = self._held_out_pairs(held, rows)
        state.rates = {"held_out": _rate(len(held.positions), held_found.count)}
        for (path, keys), into in zip(evals, found):
            state.rates[f"eval_file:{path}"] = _rate(len(keys.side.rows), len(into.references))
        for part in (held_found, *found):  # the card's order: held-out pairs, then each eval file's
            state.pairs.extend(part.pairs[: cfg.max_pairs_recorded - len(state.pairs)])
            for row_id, reason in part.reasons.items():
                state.reasons.setdefault(row_id, reason)
        state.held = HeldOutKeys()  # its keys are spent

    def _found(self) -> _Found:
        return _Found(self.config.max_pairs_recorded, self.config.action == "drop")

    def _held_out_pairs(self, held: HeldOutKeys, rows: RowStore) -> _Found:
        """The held-out rows found in training, as pairs; their texts and the training rows' ids are read back
        from `rows`, only for the rows a pair names."""
        out = self._found()
        matches = held.matches(self.config.boilerplate_rows, self.config.min_overlap)
        if not matches:
            return out
        wanted = {int(held.positions[j]): (kind, offset) for j, kind, _, offset, _ in matches}
        references = {row for _, _, row, _, _ in matches}
        seen: dict[int, tuple] = {}  # position -> (id, split[, span]): a few short strings per pair
        for start, batch in rows.batches():
            for at in range(start, start + len(batch)):
                row = batch[at - start]
                if at in wanted:
                    seen[at] = (row.id, row.split, self._span(row, field_text(row, "conversation"), *wanted[at]))
                elif at in references:
                    seen[at] = (row.id, row.split)
        for j, kind, row, _, share in matches:
            a_id, a_split, span = seen[int(held.positions[j])]
            out.add(_pair(a_id, a_split, *seen[row], kind, span, share, "test_vs_train"))
        return out

    def _span(self, row: Example, text: str, kind: str, offset: int) -> str:
        """The evidence a pair shows: the repeated prompt, or the row's first shared n-gram."""
        if kind == "exact":
            return field_text(row, "prompt")[:300]
        return " ".join(minhash.words(text)[offset : offset + self.config.ngram])[:300]

    def apply(self, batch: list[Example], start: int, state: _State, ctx: StageContext) -> list[Example]:
        kept = batch
        if self.config.action == "drop" and state.reasons:
            kept = []
            for example in batch:
                reason = state.reasons.get(example.id)
                if reason is None:
                    kept.append(example)
                else:
                    ctx.reject(example, "contaminated", reason)
        state.tokens.add(kept, ctx)
        return kept

    def close(self, state: _State, ctx: StageContext) -> None:
        ctx.finding("ngram", self.config.ngram)
        ctx.finding("contaminated_rows", len(state.reasons))
        ctx.finding("pairs", state.pairs)
        self._record_rates(state.rates, ctx)
        state.tokens.report(ctx)

    def _record_rates(self, rates: dict[str, dict], ctx: StageContext) -> None:
        """The share of each evaluation set found in training, its warnings, and the worst share left after the
        action (what the `max_contamination_rate` gate reads: `drop` removes the leaking rows)."""
        dropped = self.config.action == "drop"
        ctx.finding("rates", rates)
        ctx.finding("contamination_rate", 0.0 if dropped else max((r["rate"] for r in rates.values()), default=0.0))
        warnings = []
        for name, r in rates.items():
            if r["rate"] <= self.config.warn_rate:
                continue
            what = "held-out (validation + test) rows" if name == "held_out" else f"rows of {name.split(':', 1)[1]}"
            then = ("they were dropped (`action: drop`)" if dropped else "scores on them measure memory, not skill; "
                    "set `action: drop`, or keep related rows together with `group_by`")
            warnings.append(f"{r['contaminated']} of {r['rows']} {what} ({r['rate']:.1%}) overlap training rows "
                            f"(same prompt or {self.config.ngram}-word overlap): {then}")
        ctx.finding("warnings", warnings)
        for warning in warnings:
            log.warning("contamination: %s", warning)

    def _read_eval(self, path: str) -> list[Example]:
        """An evaluation file's rows as conversations. Only their text is compared, so validate's advice about the
        file's other columns (keep them with `keep_columns`) does not apply and is not logged."""
        from tunesmith.curate import validate

        raw, _ = read_source(SourceConfig(path=path, name=f"eval:{Path(path).stem}"))
        scratch = StageContext("contamination-eval", rejected_dir=None)
        quiet = logging.getLogger(validate.__name__)
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            rows, _ = validate.Validate().run(raw, scratch)
        finally:
            quiet.setLevel(level)
        return [ex.replace(split="eval_file") for ex in rows]


CHUNK_ROWS = 8192  # training rows shingled at once: hashing a chunk's vocabulary once beats once per small batch


def _train_chunks(rows: RowStore, is_train) -> Iterator[tuple[np.ndarray, list[Example]]]:
    """The training rows of `rows`, with their positions, in chunks of about CHUNK_ROWS rows."""
    positions: list[int] = []
    chunk: list[Example] = []
    for start, batch in rows.batches():
        for i, example in enumerate(batch):
            if is_train(example):
                positions.append(start + i)
                chunk.append(example)
        if len(chunk) >= CHUNK_ROWS:
            yield np.array(positions, dtype=np.int64), chunk
            positions, chunk = [], []
    if chunk:
        yield np.array(positions, dtype=np.int64), chunk


def _pair(a_id: str, a_split: str | None, b_id: str, b_split: str | None, kind: str, span: str, share: float,
          direction: str) -> dict:
    """A pair as the card lists it; an n-gram pair also gives the share of the row's n-grams found."""
    pair = {"a": a_id, "a_split": a_split, "b": b_id, "b_split": b_split, "kind": kind, "direction": direction,
            "span": span}
    return pair if kind == "exact" else {**pair, "overlap": round(share, 3)}


def _rate(rows: int, contaminated: int) -> dict:
    return {"rows": rows, "contaminated": contaminated, "rate": round(contaminated / rows, 4) if rows else 0.0}


register_stage(Contamination)
