"""The `contamination` stage: exact and word n-gram overlap between splits and against evaluation files.

Evaluation rows (validation/test) that repeat a training prompt, or share an n-gram with a training row,
leak the answer into training; so do training rows that overlap a user's own evaluation file. Each
flagged pair is listed with the shared span as evidence; `action: drop` removes the leaking rows. The share of
each evaluation set found in training is recorded and warned about above `warn_rate`; the gate
`max_contamination_rate` reads `contamination_rate`, the worst share left in the written version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.curate import minhash
from tunesmith.curate.dedup import field_text, normalise
from tunesmith.curate.record import Example
from tunesmith.curate.sources import SourceConfig, read_source
from tunesmith.curate.split import record_trainable_tokens
from tunesmith.curate.stage import Stage, StageContext, register_stage

log = logging.getLogger(__name__)


class Contamination(Stage):
    """Flag (or drop) held-out rows that overlap training rows, and training rows that overlap eval files."""

    name = "contamination"
    version = "1"

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

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        is_train = np.array([ex.split in (self.config.train_split, None) for ex in examples], dtype=bool)
        everything = _Side.of(examples, self.config.ngram, ctx.extra.get("word_cache"))  # shingle every row once, then take subsets
        train, held_out = everything.subset(is_train), everything.subset(~is_train)
        pairs = self._overlaps(held_out, train, "test_vs_train")
        rates = {"held_out": _rate(len(held_out.rows), len(pairs))}
        for path in self.config.eval_files:
            eval_side = _Side.of(self._read_eval(path), self.config.ngram)
            found = self._overlaps(train, eval_side, "train_vs_eval_file")
            rates[f"eval_file:{path}"] = _rate(len(eval_side.rows), len({p["b"] for p in found}))
            pairs += found
        ctx.finding("ngram", self.config.ngram)
        ctx.finding("contaminated_rows", len({p["a"] for p in pairs}))
        ctx.finding("pairs", pairs[: self.config.max_pairs_recorded])
        self._record_rates(rates, ctx)
        out = examples if self.config.action == "report" else self._drop(examples, pairs, ctx)
        record_trainable_tokens(out, ctx)  # after a drop, train may hold fewer tokens than the split counted
        return out

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

    def _drop(self, examples: list[Example], pairs: list[dict], ctx: StageContext) -> list[Example]:
        out = []
        reason_of = {p["a"]: p for p in reversed(pairs)}
        for example in examples:
            pair = reason_of.get(example.id)
            if pair is None:
                out.append(example)
            else:
                ctx.reject(example, "contaminated", f"{pair['kind']} overlap with {pair['b']}: {pair['span'][:200]}")
        return out

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

    def _overlaps(self, queries: _Side, reference: _Side, kind: str) -> list[dict]:
        """Pairs (query row, reference row) sharing a normalised prompt, or most of the query's n-grams."""
        if not queries.rows or not reference.rows:
            return []
        found = {}
        first_prompt = dict(zip(reversed(reference.prompt_keys), reversed(range(len(reference.rows)))))
        for q, key in enumerate(queries.prompt_keys):
            r = first_prompt.get(key)
            if r is not None and key:
                found[q] = self._pair(queries.rows[q], reference.rows[r], "exact", field_text(queries.rows[q], "prompt"),
                                      kind)
        ref_values, ref_rows = self._shared_ngrams(queries.shingles, reference.shingles)
        q_sh = queries.shingles
        hit, pos = _lookup(ref_values, q_sh.hashes)
        per_row = np.bincount(q_sh.row_of, minlength=len(queries.rows))
        share = np.bincount(q_sh.row_of[hit], minlength=len(queries.rows)) / np.maximum(per_row, 1)
        hit_index = np.flatnonzero(hit)
        first_hits = hit_index[np.unique(q_sh.row_of[hit_index], return_index=True)[1]]
        for shingle_index in first_hits:
            q = int(q_sh.row_of[shingle_index])
            if q in found or share[q] < self.config.min_overlap:
                continue
            offset = shingle_index - int(np.searchsorted(q_sh.row_of, q))
            span = " ".join(minhash.words(queries.texts[q])[offset : offset + self.config.ngram])
            pair = self._pair(queries.rows[q], reference.rows[int(ref_rows[pos[shingle_index]])], "ngram", span, kind)
            found[q] = {**pair, "overlap": round(float(share[q]), 3)}
        return [found[q] for q in sorted(found)]

    def _shared_ngrams(self, queries: minhash.Shingles, reference: minhash.Shingles) -> tuple[np.ndarray, np.ndarray]:
        """Sorted n-grams found on both sides, without boilerplate, and a reference row holding each.

        Only the (small) query side is sorted; the reference is probed against it. An n-gram seen more than
        `boilerplate_rows` times in the reference is template text, not leakage.
        """
        found, _ = _lookup(np.unique(queries.hashes), reference.hashes)
        where = np.flatnonzero(found)
        values, first, counts = np.unique(reference.hashes[where], return_index=True, return_counts=True)
        keep = counts <= self.config.boilerplate_rows
        return values[keep], reference.row_of[where[first[keep]]]

    @staticmethod
    def _pair(a: Example, b: Example, kind: str, span: str, direction: str) -> dict:
        return {"a": a.id, "a_split": a.split, "b": b.id, "b_split": b.split, "kind": kind,
                "direction": direction, "span": span[:300]}


def _rate(rows: int, contaminated: int) -> dict:
    return {"rows": rows, "contaminated": contaminated, "rate": round(contaminated / rows, 4) if rows else 0.0}


_FILTER_BITS = 1 << 24  # 2 MB of flags: fits in cache, so probing millions of keys stays cheap


def _lookup(sorted_values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each key: is it in `sorted_values`, and at which position (valid where found).

    A flag table indexed by the low bits of the hashes rules out most keys before the binary search,
    whose random memory access is what costs on millions of keys.
    """
    found = np.zeros(len(keys), dtype=bool)
    pos = np.zeros(len(keys), dtype=np.int64)
    if len(sorted_values) == 0 or len(keys) == 0:
        return found, pos
    flags = np.zeros(_FILTER_BITS, dtype=bool)
    flags[sorted_values & np.uint64(_FILTER_BITS - 1)] = True
    maybe = np.flatnonzero(flags[keys & np.uint64(_FILTER_BITS - 1)])
    at = np.minimum(np.searchsorted(sorted_values, keys[maybe]), len(sorted_values) - 1)
    found[maybe] = sorted_values[at] == keys[maybe]
    pos[maybe] = at
    return found, pos


@dataclass
class _Side:
    """Rows on one side of a comparison, with their texts, prompt keys and n-gram shingles."""

    rows: list[Example]
    texts: list[str]
    prompt_keys: list[str]
    shingles: minhash.Shingles

    @classmethod
    def of(cls, rows: list[Example], ngram: int, cache: minhash.WordCache | None = None) -> _Side:
        texts = [field_text(r, "conversation") for r in rows]
        keys = [normalise(field_text(r, "prompt"), "aggressive") for r in rows]
        return cls(rows, texts, keys, minhash.word_shingles(texts, ngram, cache))

    def subset(self, mask: np.ndarray) -> _Side:
        index = np.flatnonzero(mask)
        new_row = np.full(len(self.rows), -1, dtype=np.int64)
        new_row[index] = np.arange(len(index))
        keep = mask[self.shingles.row_of] if len(self.shingles.row_of) else np.zeros(0, bool)
        shingles = minhash.Shingles(self.shingles.hashes[keep], new_row[self.shingles.row_of[keep]])
        return _Side([self.rows[i] for i in index], [self.texts[i] for i in index],
                     [self.prompt_keys[i] for i in index], shingles)


register_stage(Contamination)
