"""The `contamination` stage: exact and word n-gram overlap between splits and against evaluation files.

Evaluation rows (validation/test) that repeat a training prompt, or share an n-gram with a training row,
leak the answer into training; so do training rows that overlap a user's own evaluation file. Each
flagged pair is listed with the shared span as evidence; `action: drop` removes the leaking rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.curate import minhash
from tunesmith.curate.dedup import field_text, normalise
from tunesmith.curate.record import Example
from tunesmith.curate.sources import SourceConfig, read_source
from tunesmith.curate.stage import Stage, StageContext, register_stage

_WORD = re.compile(r"[^\W]+")


class Contamination(Stage):
    name = "contamination"
    version = "1"

    class Config(StrictModel):
        ngram: int = Field(13, ge=3, description="Word n-gram length that counts as overlap.")
        train_split: str = Field("train", description="The split that training reads.")
        eval_files: list[str] = Field(
            default_factory=list, description="Your evaluation files (any supported format) to check training against."
        )
        action: Literal["report", "drop"] = Field(
            "report", description="drop: reject leaking validation/test rows, and training rows overlapping eval files."
        )
        max_pairs_recorded: int = Field(200, ge=0, description="Evidence pairs listed on the card.")
        min_overlap: float = Field(
            0.5, gt=0, le=1, description="Share of a row's n-grams found in the reference at which it is flagged "
            "(PaLM used 70% of 8-grams); 1 n-gram is enough when this is tiny.",
        )
        boilerplate_rows: int = Field(
            10, ge=1, description="An n-gram found in more reference rows than this is shared boilerplate "
            "(templates, fixed instructions), not leakage, and is ignored (as GPT-3's decontamination did).",
        )

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        is_train = [ex.split in (self.config.train_split, None) for ex in examples]
        train = [ex for ex, t in zip(examples, is_train) if t]
        held_out = [ex for ex, t in zip(examples, is_train) if not t]
        pairs = self._overlaps(held_out, train, "test_vs_train")
        for path in self.config.eval_files:
            eval_rows = self._read_eval(path)
            pairs += self._overlaps(train, eval_rows, "train_vs_eval_file")
        leaking = {p["a"] for p in pairs}
        ctx.finding("ngram", self.config.ngram)
        ctx.finding("contaminated_rows", len(leaking))
        ctx.finding("pairs", pairs[: self.config.max_pairs_recorded])
        if self.config.action == "report":
            return examples
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
        from tunesmith.curate.validate import Validate

        raw, _ = read_source(SourceConfig(path=path, name=f"eval:{Path(path).stem}"))
        scratch = StageContext("contamination-eval", rejected_dir=None)
        rows, _ = Validate().run(raw, scratch)
        return [ex.replace(split="eval_file") for ex in rows]

    def _overlaps(self, queries: list[Example], reference: list[Example], kind: str) -> list[dict]:
        """Pairs (query row, reference row) sharing a normalised prompt or a word n-gram."""
        if not queries or not reference:
            return []
        found = {}
        ref_prompts = {}
        for ref in reference:
            ref_prompts.setdefault(normalise(field_text(ref, "prompt"), "aggressive"), ref)
        for query in queries:
            match = ref_prompts.get(normalise(field_text(query, "prompt"), "aggressive"))
            if match is not None:
                found[query.id] = self._pair(query, match, "exact", field_text(query, "prompt"), kind)
        n = self.config.ngram
        ref_sh = minhash.word_shingles([field_text(r, "conversation") for r in reference], n)
        query_texts = [field_text(q, "conversation") for q in queries]
        query_sh = minhash.word_shingles(query_texts, n)
        ref_sh = self._without_boilerplate(ref_sh)
        order = np.argsort(ref_sh.hashes)
        sorted_ref = ref_sh.hashes[order]
        pos = np.clip(np.searchsorted(sorted_ref, query_sh.hashes), 0, max(len(sorted_ref) - 1, 0))
        hit = (sorted_ref[pos] == query_sh.hashes) if len(sorted_ref) else np.zeros(0, bool)
        per_row = np.bincount(query_sh.row_of, minlength=len(queries))
        hits = np.bincount(query_sh.row_of[hit], minlength=len(queries))
        share = np.divide(hits, per_row, out=np.zeros(len(queries)), where=per_row > 0)
        first_hit = {}
        for shingle_index in np.flatnonzero(hit):
            first_hit.setdefault(int(query_sh.row_of[shingle_index]), shingle_index)
        for q, shingle_index in first_hit.items():
            if queries[q].id in found or share[q] < self.config.min_overlap:
                continue
            r = int(ref_sh.row_of[order[pos[shingle_index]]])
            offset = shingle_index - int(np.searchsorted(query_sh.row_of, q))
            words = _WORD.findall(query_texts[q].lower())
            span = " ".join(words[offset : offset + n])
            pair = self._pair(queries[q], reference[r], "ngram", span, kind)
            found[queries[q].id] = {**pair, "overlap": round(float(share[q]), 3)}
        return list(found.values())

    def _without_boilerplate(self, shingles: minhash.Shingles) -> minhash.Shingles:
        """Drop n-grams that occur in more than `boilerplate_rows` distinct reference rows."""
        if len(shingles.hashes) == 0:
            return shingles
        order = np.lexsort((shingles.row_of, shingles.hashes))
        h, r = shingles.hashes[order], shingles.row_of[order]
        first_in_row = np.concatenate([[True], (h[1:] != h[:-1]) | (r[1:] != r[:-1])])
        values, counts = np.unique(h[first_in_row], return_counts=True)
        common = values[counts > self.config.boilerplate_rows]
        keep = ~np.isin(shingles.hashes, common)
        return minhash.Shingles(shingles.hashes[keep], shingles.row_of[keep])

    @staticmethod
    def _pair(a: Example, b: Example, kind: str, span: str, direction: str) -> dict:
        return {"a": a.id, "a_split": a.split, "b": b.id, "b_split": b.split, "kind": kind,
                "direction": direction, "span": span[:300]}


register_stage(Contamination)
