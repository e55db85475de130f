"""The `near_dedup` stage: MinHash + LSH find candidate pairs, the exact shingle Jaccard confirms them.

drop (default): a greedy keep-set. Rows are visited in a fixed order (input order, or longest first) and a
row is rejected only when an earlier row that was KEPT has Jaccard >= threshold with it; the rejected row
names that row and the Jaccard. Nothing chains: with A~B and B~C but J(A, C) below the threshold, A and C
are kept and only B goes (keepset.py: this holds inside LSH buckets of any size). tag: rows linked by
confirmed pairs form one group (connected components, so chains join) and all are kept; `split` keeps a
group on one side, which is safe however loose the chain.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from tunesmith.config import StrictModel
from tunesmith.curate import keepset, minhash
from tunesmith.curate.dedup import MEMBERS_RECORDED, TextField, field_text, with_total
from tunesmith.curate.keepset import BucketCheck, greedy_keep
from tunesmith.curate.lsh import ShingleSets, jaccard
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage

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


def linked_groups(rank: np.ndarray, pairs: np.ndarray, jaccard: np.ndarray) -> dict[int, tuple[int, float, int]]:
    """{member: (group's first row by rank, Jaccard of the member's strongest link, that partner)} for tag mode."""
    if len(pairs) == 0:
        return {}
    n = len(rank)
    from scipy.sparse import coo_matrix  # here, not at the top: scipy costs 0.4 s of every command's start
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    labels = connected_components(graph, directed=False)[1]
    by_rank = np.argsort(rank, kind="stable")
    first_of_label = {}
    for row in by_rank.tolist():
        first_of_label.setdefault(int(labels[row]), row)
    ends, partners = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    strengths = np.concatenate([jaccard, jaccard])
    order = np.lexsort((rank[partners], -strengths, ends))  # per member: strongest link first
    firsts = order[np.concatenate([[True], ends[order][1:] != ends[order][:-1]])]
    out = {}
    for end, partner, j in zip(ends[firsts].tolist(), partners[firsts].tolist(), strengths[firsts].tolist()):
        keeper = first_of_label[int(labels[end])]
        if end != keeper:
            out[end] = (keeper, j, partner)
    return out


class NearDedup(Stage):
    """Near-duplicates by MinHash + LSH over word or character n-grams of the normalised message contents.

    A barrier stage: it needs all rows at once to build signatures and LSH buckets. See the module docstring
    for what drop and tag mean.
    """

    name = "near_dedup"
    version = "3"  # 3: the keep-set holds inside big LSH buckets; character 3-grams by default

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

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        cfg = self.config
        texts = [compared_text(ex, cfg.field) for ex in examples]
        shingles, chars = self.shingles(texts)
        pairs, jaccards, big, check, params = self._confirmed_pairs(shingles, len(texts))
        rank = self._rank(texts)
        if cfg.action == "drop":
            keep = greedy_keep(rank, pairs, jaccards, big, check)
            assigned = {m: (k, j, k) for m, (k, j) in keep.dropped.items()}
            pairs = np.concatenate([pairs, np.array([p[:2] for p in keep.pairs], dtype=np.int64).reshape(-1, 2)])
            params |= {"big_buckets": len(big), "bucket_comparisons": keep.compared,
                       "confirmed_pairs": params["confirmed_pairs"] + len(keep.pairs)}
            ctx.finding("warnings", self._cap_warnings(keep.past_cap))
        else:
            assigned = linked_groups(rank, pairs, jaccards)
        out = self._apply(examples, assigned, ctx)
        clusters: dict[int, list[int]] = {}
        for member in sorted(assigned):
            clusters.setdefault(assigned[member][0], []).append(member)
        clusters = dict(sorted(clusters.items()))
        ctx.finding("params", params | {"char_shingled_rows": int(chars.sum()), "grouping": (
            "greedy keep-set" if cfg.action == "drop" else "linked groups (connected components)")})
        ctx.finding("num_clusters", len(clusters))
        ctx.finding("duplicate_rows", len(assigned))
        ctx.finding("kept_beside_dropped", _kept_beside_dropped(pairs, assigned) if cfg.action == "drop" else 0)
        ctx.finding("clusters", self._describe(clusters, assigned, examples, texts))
        ctx.finding("clusters_file", write_clusters(ctx, clusters, assigned, examples, cfg.action))
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

    def _apply(self, examples: list[Example], assigned: dict, ctx: StageContext) -> list[Example]:
        cfg, out = self.config, []
        if cfg.action == "tag":
            keepers = {k for k, _, _ in assigned.values()}
            for i, example in enumerate(examples):
                keeper = assigned[i][0] if i in assigned else (i if i in keepers else None)
                if keeper is None:
                    out.append(example)
                    continue
                tag = f"near:{examples[keeper].id}"  # beside a group the row has already (a preference prompt's)
                out.append(example.replace(group=f"{example.group}|{tag}" if example.group else tag))
            return out
        for i, example in enumerate(examples):
            if i not in assigned:
                out.append(example)
                continue
            keeper, j, _ = assigned[i]
            ctx.reject(example, "near_duplicate", f"Jaccard {j:.3f} with {examples[keeper].id} (kept; threshold "
                       f"{cfg.threshold:g})")
        return out

    def _describe(self, clusters: dict[int, list[int]], assigned: dict, examples, texts) -> list[dict]:
        """The first clusters for the card, each with its first members: a 100k-row cluster stays a few lines."""
        described, limit = [], self.config.max_members_recorded
        for keeper, members in list(clusters.items())[: self.config.max_clusters_recorded]:
            described.append(with_total({
                "kept": examples[keeper].id,
                "kept_text": texts[keeper][:300],
                "members": [_member(m, assigned, examples, self.config.action) for m in members[:limit]],
                "member_texts": {examples[m].id: texts[m][:300] for m in members[: min(5, limit)]},
            }, "members", len(members)))
        return described


def _member(row: int, assigned: dict, examples: list[Example], action: str) -> dict:
    """A member with its Jaccard: with the kept row (drop), or with the partner that linked it (tag)."""
    _, j, partner = assigned[row]
    out = {"id": examples[row].id, "jaccard": round(j, 3)}
    if action == "tag":
        out["linked_to"] = examples[partner].id
    return out


def _kept_beside_dropped(pairs: np.ndarray, assigned: dict) -> int:
    """Kept rows similar to a row dropped as another row's duplicate: what chaining would have dropped too."""
    found = set()
    for a, b in pairs.tolist():
        kept, dropped = (a, b) if b in assigned else (b, a)
        if kept not in assigned and dropped in assigned and assigned[dropped][0] != kept:
            found.add(kept)
    return len(found)


def write_clusters(ctx: StageContext, clusters: dict[int, list[int]], assigned: dict, examples: list[Example],
                   action: str) -> str | None:
    """Every cluster with every member, next to the rejected rows (the card lists only the first); its
    path relative to the version folder, or None when there is nothing to write or nowhere to write it.

    A .json document, not .jsonl: rejected/*.jsonl holds rejected rows only, one per line.
    """
    if not clusters or ctx.rejected_path is None:
        return None
    path = ctx.rejected_path.with_name(f"{ctx.stage_name}.clusters.json")
    listed = [{"kept": examples[keeper].id, "members": [_member(m, assigned, examples, action) for m in members]}
              for keeper, members in clusters.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"stage": ctx.stage_name, "clusters": listed}, handle, ensure_ascii=False)
    return f"{path.parent.name}/{path.name}"


register_stage(NearDedup)
