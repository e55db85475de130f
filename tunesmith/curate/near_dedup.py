"""The `near_dedup` stage: MinHash + LSH find candidate pairs, the exact shingle Jaccard confirms them.

drop (default): a greedy keep-set. Rows are visited in a fixed order (input order, or longest first) and a
row is rejected only when an earlier row that was KEPT has Jaccard >= threshold with it; the rejected row
names that row and the Jaccard. Nothing chains: with A~B and B~C but J(A, C) below the threshold, A and C
are kept and only B goes (keepset.py: this holds inside LSH buckets of any size). tag: rows linked by
confirmed pairs form one group (connected components, so chains join) and all are kept; `split` keeps a
group on one side, which is safe however loose the chain.

Streamed in two passes: pass 1 keeps each row's LSH band keys only; resolve finds the rows sharing a bucket
with another row, reads just those back and runs the keep-set on them; pass 2 rejects or tags by position.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from tunesmith.config import StrictModel
from tunesmith.curate import keepset, lsh, minhash
from tunesmith.curate import near_clusters as clusters_
from tunesmith.curate.dedup import MEMBERS_RECORDED, TextField, field_text
from tunesmith.curate.keepset import BucketCheck, greedy_keep
from tunesmith.curate.lsh import ShingleSets, jaccard
from tunesmith.curate.record import Example
from tunesmith.curate.stage import GlobalStage, RowStore, StageContext, StageFindings, register_stage

# scripts written without spaces between words; a row mostly in them gets character shingles under `auto`
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff]"
)
UNSPACED_SHARE = 0.3  # of a row's non-space characters
PREFILTER_MARGIN = 0.15  # candidates whose estimate is this far below the threshold are not verified

log = logging.getLogger(__name__)


def compared_text(example: Example, field: TextField) -> str:
    """The text near_dedup shingles: message contents only (role words would make short chats look alike),
    with a preference row's rejected answer counted as part of its conversation and response."""
    rejected = [m.content for m in example.rejected]
    if field == "conversation":
        return "\n".join([m.content for m in example.messages] + rejected)
    if field == "response":
        return "\n".join([example.response_text()] + rejected)
    return field_text(example, field)


def unspaced_rows(texts: list[str]) -> np.ndarray:
    """Rows where scripts written without spaces (Chinese, Japanese, Thai, ...) make up 30% of the characters."""
    out = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        if not text.isascii():
            letters = len(text) - sum(text.count(c) for c in " \n\t")
            out[i] = letters > 0 and len(_UNSPACED.findall(text)) >= UNSPACED_SHARE * letters
    return out


class NearDedupFindings(StageFindings):
    warnings: list[str] | None = None  # drop mode only
    params: dict[str, str | int | float | bool]
    num_clusters: int
    duplicate_rows: int
    kept_beside_dropped: int
    clusters: list[dict]
    clusters_file: str | None


@dataclass
class Candidates:
    """The rows that share an LSH bucket with another row, read back from the spill: only these are compared."""

    positions: np.ndarray  # int64, sorted: their rows' positions in the stage's input
    ids: list[str]
    texts: list[str]  # compared_text of each


@dataclass
class Decision:
    """The keep-set (or tag groups) over some rows, numbered 0..n-1 in position order."""

    assigned: clusters_.Assigned  # member -> (kept row, Jaccard, partner)
    pairs: np.ndarray  # confirmed similar pairs
    params: dict[str, Any]
    past_cap: int = 0


@dataclass
class NearKeys:
    """Pass 1's per-row keys (band keys, has-shingles flag), then resolve's verdict for pass 2 and the findings."""

    bands: int
    rows: int
    keys: list[np.ndarray] = field(default_factory=list)  # per batch: n x bands uint64
    has_text: list[np.ndarray] = field(default_factory=list)  # per batch: bool, rows with at least one shingle
    char_rows: int = 0
    verdict: dict[int, tuple[str, float]] = field(default_factory=dict)  # position -> (kept row's id, Jaccard)
    findings: dict[str, Any] = field(default_factory=dict)


class NearDedup(GlobalStage):
    """Near-duplicates by MinHash + LSH over word or character n-grams of the normalised message contents.

    A global stage: pass 1 keeps 8 bytes per LSH band per row (128 bytes at the defaults), resolve compares only
    the rows sharing a bucket with another row. See the module docstring for what drop and tag mean.
    """

    name = "near_dedup"
    version = "3"  # 3: the keep-set holds inside big LSH buckets; character 3-grams by default
    Findings = NearDedupFindings


    class Config(StrictModel):
        field: TextField = Field("conversation", description="Text compared: all message contents by default.")
        shingle: Literal["auto", "word", "char"] = Field(
            "auto", description="word n-grams, character n-grams, or auto: "
            "character n-grams for rows mostly in scripts written without spaces (Chinese, Japanese, Thai)."
        )
        ngram: int = Field(5, ge=1, le=100, description="Word n-gram size of word shingles (at most 100).")
        char_ngram: int = Field(
            3, ge=1, le=100, description="Character n-gram size of character shingles: 3 finds a one-character "
            "edit in a 45-character Chinese question (5 misses it) and keeps different short questions below 0.8."
        )
        normalize: bool = Field(
            True, description="Compare NFKC, lower-cased text with punctuation and whitespace folded (as text-dedup)."
        )
        num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations (signature length).")
        threshold: float = Field(0.8, gt=0, le=1, description="Shingle Jaccard at or above which rows are duplicates.")
        bands: int | None = Field(
            None, ge=1, le=1024, description="LSH bands; with `rows`, overrides the threshold-derived choice "
            "(bands x rows at most num_perm)."
        )
        rows: int | None = Field(None, ge=1, le=1024, description="LSH rows per band.")
        keep: Literal["first", "longest"] = Field(
            "first", description="Which row of a duplicate pair survives: the first in the input, or the longest.")
        action: Literal["drop", "tag"] = Field(
            "drop", description="drop: reject rows similar to a kept row; tag: keep all and group linked rows for `split`."
        )
        seed: int = Field(1, ge=0, le=2**63 - 1, description="Seed of the MinHash permutations.")
        max_clusters_recorded: int = Field(
            100, ge=0, le=10_000, description="Clusters listed with their members on the card (at most 10,000)."
        )
        max_members_recorded: int = Field(
            MEMBERS_RECORDED, ge=0, le=10_000,
            description="Members listed per cluster on the card; rejected/near_dedup.clusters.json lists them all.",
        )

        @model_validator(mode="after")
        def _bands_fit(self):
            if (self.bands is None) != (self.rows is None):
                raise ValueError("set both `bands` and `rows`, or neither")
            if self.bands and self.bands * self.rows > self.num_perm:
                raise ValueError(f"bands*rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
            return self

    def open(self, ctx: StageContext) -> NearKeys:
        cfg = self.config
        bands, rows = (cfg.bands, cfg.rows) if cfg.bands else minhash.optimal_bands(cfg.threshold, cfg.num_perm)
        return NearKeys(bands, rows)

    def add_keys(self, batch: list[Example], start: int, state: NearKeys, ctx: StageContext) -> None:
        """Each row's band keys: a row's signature depends on its text alone, so batches give the same keys."""
        cfg = self.config
        shingles, chars = self.shingles([compared_text(ex, cfg.field) for ex in batch])
        sig = minhash.signatures(shingles, len(batch), cfg.num_perm, cfg.seed)
        has_text = np.zeros(len(batch), dtype=bool)
        has_text[shingles.row_of] = True
        state.keys.append(lsh.row_band_keys(sig, state.bands, state.rows))
        state.has_text.append(has_text)
        state.char_rows += int(chars.sum())

    def resolve(self, state: NearKeys, rows: RowStore, ctx: StageContext) -> None:
        """The keep-set over the rows that share a bucket with another row (no other row can be anyone's
        near-duplicate, so this is the keep-set over all rows), then the findings."""
        valid = np.concatenate(state.has_text) if state.has_text else np.zeros(0, dtype=bool)
        positions = lsh.shared_bucket_rows(state.keys, valid)
        state.keys, state.has_text = [], []
        found = read_candidates(rows, positions, self.config.field)
        decision = self.decide(found.texts)
        self._verdict(state, found, decision.assigned)
        state.findings = self._findings(ctx, state, found, decision)

    def apply(self, batch: list[Example], start: int, state: NearKeys, ctx: StageContext) -> list[Example]:
        cfg, out = self.config, []
        for position, example in enumerate(batch, start):
            verdict = state.verdict.get(position)
            if verdict is None:
                out.append(example)
            elif cfg.action == "tag":
                tag = f"near:{verdict[0]}"  # beside a group the row has already (a preference prompt's)
                out.append(example.replace(group=f"{example.group}|{tag}" if example.group else tag))
            else:
                ctx.reject(example, "near_duplicate", f"Jaccard {verdict[1]:.3f} with {verdict[0]} (kept; threshold "
                           f"{cfg.threshold:g})")
        return out

    def close(self, state: NearKeys, ctx: StageContext) -> None:
        for key, value in state.findings.items():
            ctx.finding(key, value)

    def decide(self, texts: list[str]) -> Decision:
        """The keep-set (drop) or linked groups (tag) over `texts`, rows numbered in the order given."""
        cfg = self.config
        shingles, _ = self.shingles(texts)
        pairs, jaccards, big, check, params = self._confirmed_pairs(shingles, len(texts))
        rank = self._rank(texts)
        if cfg.action == "tag":
            return Decision(clusters_.linked_groups(rank, pairs, jaccards), pairs, params)
        keep = greedy_keep(rank, pairs, jaccards, big, check)
        pairs = np.concatenate([pairs, np.array([p[:2] for p in keep.pairs], dtype=np.int64).reshape(-1, 2)])
        params |= {"big_buckets": len(big), "bucket_comparisons": keep.compared,
                   "confirmed_pairs": params["confirmed_pairs"] + len(keep.pairs)}
        return Decision({m: (k, j, k) for m, (k, j) in keep.dropped.items()}, pairs, params, keep.past_cap)

    def _verdict(self, state: NearKeys, found: Candidates, assigned: clusters_.Assigned) -> None:
        """Position -> (kept row's id, Jaccard) for pass 2; in tag mode the kept rows carry their own id too."""
        at = found.positions.tolist()
        state.verdict = {at[m]: (found.ids[k], j) for m, (k, j, _) in assigned.items()}
        if self.config.action == "tag":
            for k, _, _ in assigned.values():
                state.verdict.setdefault(at[k], (found.ids[k], 1.0))

    def _findings(self, ctx: StageContext, state: NearKeys, found: Candidates, decision: Decision) -> dict[str, Any]:
        """The findings, in today's key order (the card's fingerprint covers the records)."""
        cfg, assigned = self.config, decision.assigned
        clusters = clusters_.clusters_of(assigned)
        out: dict[str, Any] = {}
        if cfg.action == "drop":
            out["warnings"] = self._cap_warnings(decision.past_cap)
        out["params"] = decision.params | {"char_shingled_rows": state.char_rows, "grouping": (
            "greedy keep-set" if cfg.action == "drop" else "linked groups (connected components)")}
        out["num_clusters"] = len(clusters)
        out["duplicate_rows"] = len(assigned)
        out["kept_beside_dropped"] = (
            clusters_.kept_beside_dropped(decision.pairs, assigned) if cfg.action == "drop" else 0)
        out["clusters"] = clusters_.describe(clusters, assigned, found.ids, found.texts, cfg.action,
                                             cfg.max_clusters_recorded, cfg.max_members_recorded)
        out["clusters_file"] = clusters_.write_clusters(ctx, clusters, assigned, found.ids, cfg.action)
        return out

    def _cap_warnings(self, past_cap: int) -> list[str]:
        if not past_cap:
            return []
        warning = (f"{past_cap} kept rows shared an LSH bucket with {keepset.LEADERS_PER_BUCKET} other kept rows already "
                   "and were not compared with rows after them, so a near-duplicate of them may remain: "
                   "such rows share much text; look at them, or set more LSH `rows` per band.")
        log.warning("%s: %s", self.name, warning)
        return [warning]

    def shingles(self, texts: list[str]) -> tuple[minhash.Shingles, np.ndarray]:
        """Shingles of every row, and which rows got character shingles."""
        cfg = self.config
        texts = [minhash.nfkc(t) for t in texts] if cfg.normalize else texts
        chars = unspaced_rows(texts) if cfg.shingle == "auto" else np.full(len(texts), cfg.shingle == "char")
        if not chars.any():
            return minhash.word_shingles(texts, cfg.ngram, fold=cfg.normalize), chars
        parts = []
        for rows, use_chars in ((np.flatnonzero(~chars), False), (np.flatnonzero(chars), True)):
            subset = [texts[i] for i in rows]
            if use_chars:
                got = minhash.char_shingles([minhash.fold_text(t) for t in subset] if cfg.normalize else subset,
                                            cfg.char_ngram)
            else:
                got = minhash.word_shingles(subset, cfg.ngram, fold=cfg.normalize)
            parts.append(minhash.Shingles(got.hashes, rows[got.row_of]))
        row_of = np.concatenate([p.row_of for p in parts])
        order = np.argsort(row_of, kind="stable")
        return minhash.Shingles(np.concatenate([p.hashes for p in parts])[order], row_of[order]), chars

    def _confirmed_pairs(self, shingles: minhash.Shingles, n: int):
        """Row pairs whose exact shingle Jaccard is >= threshold, with that Jaccard; the big LSH buckets (drop
        mode: greedy_keep compares their members itself), the check it does that with, and the LSH parameters.

        The signature estimate only pre-filters (its noise is about +-0.04 at 128 permutations); the verdict
        and the recorded value are the true Jaccard of the shingle sets.
        """
        cfg = self.config
        sig = minhash.signatures(shingles, n, cfg.num_perm, cfg.seed)
        bands, rows = (cfg.bands, cfg.rows) if cfg.bands else minhash.optimal_bands(cfg.threshold, cfg.num_perm)
        has_text = np.zeros(n, dtype=bool)
        has_text[shingles.row_of] = True
        if cfg.action == "drop":
            pairs, big = minhash.band_buckets(sig, bands, rows, has_text)
        else:  # connected components need only a path through a big bucket: its star pairs give one
            pairs, big = minhash.candidate_pairs(sig, bands, rows, has_text), []
        check = BucketCheck(sig, ShingleSets(shingles), cfg.threshold, cfg.threshold - PREFILTER_MARGIN)
        likely = pairs[minhash.estimated_jaccard(sig, pairs) >= check.floor]
        jaccards = np.array([jaccard(check.sets.of(a), check.sets.of(b)) for a, b in likely.tolist()]).reshape(-1)
        similar = jaccards >= cfg.threshold
        params = {"shingle": cfg.shingle, "ngram": cfg.ngram, "char_ngram": cfg.char_ngram, "normalize": cfg.normalize,
                  "num_perm": cfg.num_perm, "threshold": cfg.threshold, "bands": bands, "rows": rows,
                  "candidate_pairs": int(len(pairs)), "confirmed_pairs": int(similar.sum())}
        return likely[similar], jaccards[similar], big, check, params

    def _rank(self, texts: list[str]) -> np.ndarray:
        """Position of each row in the visiting order: input order, or longest first (ties in input order)."""
        if self.config.keep == "first":
            return np.arange(len(texts))
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        rank = np.empty(len(texts), dtype=np.int64)
        rank[np.lexsort((np.arange(len(texts)), -lengths))] = np.arange(len(texts))
        return rank


def read_candidates(rows: RowStore, positions: np.ndarray, text_field: TextField) -> Candidates:
    """Position, id and compared text of the rows at `positions` (sorted), read again from the stage's input."""
    ids, texts = [], []
    for start, batch in rows.batches():
        if len(ids) == len(positions):
            break
        lo, hi = np.searchsorted(positions, [start, start + len(batch)])
        for position in positions[lo:hi].tolist():
            example = batch[position - start]
            ids.append(example.id)
            texts.append(compared_text(example, text_field))
    return Candidates(positions, ids, texts)


register_stage(NearDedup)
