"""Deduplication stages: `exact_dedup` (normalised hash) and `near_dedup` (MinHash + LSH clusters).

Both keep one row per duplicate group and reject the others with the id of the row they duplicate, so
the rejected file reads as evidence. `near_dedup` can instead tag clusters, which `split` keeps together.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tunesmith.config import StrictModel
from tunesmith.curate import minhash
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage

log = logging.getLogger(__name__)

MEMBERS_RECORDED = 20  # ids per duplicate group on the card and in the report
TextField = Literal["conversation", "prompt", "response", "system"]


def field_text(example: Example, field: TextField) -> str:
    if field == "prompt":
        return "\n".join(m.content for m in example.messages if m.role == "user")
    if field == "response":
        return example.response_text()
    if field == "system":
        return "\n".join(m.content for m in example.messages if m.role == "system")
    return "\n".join(f"{m.role}: {m.content}" for m in example.messages)


def normalise(text: str, mode: str) -> str:
    """whitespace: lowercase, runs of whitespace made one space; aggressive: punctuation blanked first."""
    if mode == "none":
        return text
    if mode == "aggressive":
        return " ".join(minhash.words(text))
    return " ".join(text.lower().split())


class ExactDedup(Stage):
    """Drop rows whose normalised key fields repeat an earlier row; warn when a key field is near-constant."""

    name = "exact_dedup"
    version = "1"

    class Config(StrictModel):
        fields: list[TextField] = Field(
            default_factory=lambda: ["conversation"], description="Fields whose normalised text forms the key."
        )
        normalize: Literal["none", "whitespace", "aggressive"] = Field(
            "whitespace", description="whitespace: lowercase + collapse spaces; aggressive: also drop punctuation."
        )
        constant_warning: float = Field(
            0.05, ge=0, le=1, description="Warn when a key field has fewer distinct values than this share of rows."
        )
        max_members_recorded: int = Field(
            MEMBERS_RECORDED, ge=0, le=10_000,
            description="Dropped ids listed per group on the card; rejected/exact_dedup.jsonl names every one.",
        )

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        cfg = self.config
        columns = {f: [normalise(field_text(ex, f), cfg.normalize) for ex in examples] for f in cfg.fields}
        self._warn_constant_fields(columns, len(examples), ctx)
        first_of: dict[bytes, Example] = {}
        groups: dict[str, list[str]] = {}
        kept = []
        for example, parts in zip(examples, zip(*columns.values())):
            key = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()
            original = first_of.setdefault(key, example)
            if original is example:
                kept.append(example)
            else:
                groups.setdefault(original.id, []).append(example.id)
                ctx.reject(example, "exact_duplicate", f"same {'+'.join(cfg.fields)} as {original.id}")
        ctx.finding("duplicates", len(examples) - len(kept))
        ctx.finding("key_fields", list(cfg.fields))
        limit = cfg.max_members_recorded
        ctx.finding("groups", [_with_total({"kept": k, "dropped": v[:limit]}, "dropped", len(v))
                               for k, v in list(groups.items())[:100]])
        return kept

    def _warn_constant_fields(self, columns: dict[str, list[str]], rows: int, ctx: StageContext) -> None:
        warnings = []
        for field, values in columns.items():
            distinct = len(set(values))
            if rows >= 20 and distinct / rows < self.config.constant_warning:
                warnings.append(
                    f"key field '{field}' has only {distinct} distinct values in {rows} rows: "
                    f"deduplicating on it would keep at most {distinct} rows. Add more fields to the key."
                )
        for warning in warnings:
            log.warning("exact_dedup: %s", warning)
        ctx.finding("warnings", warnings)


class NearDedup(Stage):
    """Cluster rows by MinHash + LSH on word n-grams (exact Jaccard confirms); keep one per cluster or tag.

    A barrier stage: it needs all rows at once to build signatures and LSH buckets.
    """

    name = "near_dedup"
    version = "1"

    class Config(StrictModel):
        field: TextField = Field("conversation", description="Text compared: the whole record by default.")
        ngram: int = Field(5, ge=1, le=100, description="Word n-gram size of the shingles (at most 100).")
        num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations (signature length).")
        threshold: float = Field(0.8, gt=0, le=1, description="Estimated Jaccard at or above which rows are duplicates.")
        bands: int | None = Field(
            None, ge=1, le=1024, description="LSH bands; with `rows`, overrides the threshold-derived choice "
            "(bands x rows at most num_perm)."
        )
        rows: int | None = Field(None, ge=1, le=1024, description="LSH rows per band.")
        keep: Literal["first", "longest"] = Field("first", description="Which member of a cluster survives.")
        action: Literal["drop", "tag"] = Field(
            "drop", description="drop: reject all but one per cluster; tag: keep all and group them for `split`."
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
        texts = [field_text(ex, cfg.field) for ex in examples]
        shingles = minhash.word_shingles(texts, cfg.ngram, ctx.extra.get("word_cache"))
        sig = minhash.signatures(shingles, len(texts), cfg.num_perm, cfg.seed)
        bands, rows = (cfg.bands, cfg.rows) if cfg.bands else minhash.optimal_bands(cfg.threshold, cfg.num_perm)
        has_text = np.zeros(len(texts), dtype=bool)
        has_text[shingles.row_of] = True
        pairs = minhash.candidate_pairs(sig, bands, rows, has_text)
        # the signature estimate only pre-filters; the verdict uses the true Jaccard of the shingle sets,
        # so estimation noise (about +-0.03 at 128 permutations) cannot drop real duplicates
        likely = pairs[minhash.estimated_jaccard(sig, pairs) >= cfg.threshold - 0.15]
        jaccard = minhash.exact_jaccard(shingles, likely)
        similar = likely[jaccard >= cfg.threshold]
        labels = self._components(similar, len(examples))
        keep_index, clusters = self._choose(examples, texts, labels)
        members = np.flatnonzero(keep_index != np.arange(len(examples)))
        to_keeper = np.stack([keep_index[members], members], axis=1)
        similarity = dict(zip(members.tolist(), minhash.exact_jaccard(shingles, to_keeper).tolist()))
        out = []
        for i, example in enumerate(examples):
            kept_i = keep_index[i]
            if kept_i == i:
                out.append(example)
            elif cfg.action == "tag":
                out.append(example.replace(group=f"near:{examples[kept_i].id}"))
            else:
                ctx.reject(example, "near_duplicate", f"Jaccard {similarity[i]:.2f} with {examples[kept_i].id}")
        if cfg.action == "tag":
            out = self._tag_keepers(out, clusters, examples)
        ctx.finding("params", {"ngram": cfg.ngram, "num_perm": cfg.num_perm, "threshold": cfg.threshold,
                               "bands": bands, "rows": rows, "candidate_pairs": int(len(pairs))})
        ctx.finding("num_clusters", len(clusters))
        ctx.finding("duplicate_rows", sum(len(m) - 1 for m in clusters.values()))
        ctx.finding("clusters", self._describe(clusters, examples, texts, similarity))
        ctx.finding("clusters_file", write_clusters(ctx, clusters, examples, similarity))
        return out

    @staticmethod
    def _components(pairs: np.ndarray, n: int) -> np.ndarray:
        if len(pairs) == 0:
            return np.arange(n)
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        return connected_components(graph, directed=False)[1]

    def _choose(self, examples, texts, labels) -> tuple[np.ndarray, dict[int, list[int]]]:
        """Index of the surviving row for every row, and clusters (kept index -> member indices)."""
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.concatenate([[True], sorted_labels[1:] != sorted_labels[:-1]]))
        keep_index = np.arange(len(examples))
        clusters: dict[int, list[int]] = {}
        for start, stop in zip(starts, [*starts[1:], len(order)]):
            if stop - start < 2:
                continue
            members = sorted(order[start:stop].tolist())
            keeper = max(members, key=lambda i: (len(texts[i]), -i)) if self.config.keep == "longest" else members[0]
            keep_index[members] = keeper
            clusters[keeper] = members
        return keep_index, clusters

    @staticmethod
    def _tag_keepers(out: list[Example], clusters: dict[int, list[int]], examples: list[Example]) -> list[Example]:
        keeper_ids = {examples[k].id for k in clusters}
        return [ex.replace(group=f"near:{ex.id}") if ex.id in keeper_ids else ex for ex in out]

    def _describe(self, clusters, examples, texts, similarity: dict[int, float]) -> list[dict]:
        """The first clusters for the card, each with its first members: a 100k-row cluster stays a few lines."""
        described, limit = [], self.config.max_members_recorded
        for keeper, members in list(clusters.items())[: self.config.max_clusters_recorded]:
            others = [m for m in members if m != keeper]
            described.append(_with_total({
                "kept": examples[keeper].id,
                "kept_text": texts[keeper][:300],
                "members": [{"id": examples[m].id, "jaccard": round(similarity[m], 3)} for m in others[:limit]],
                "member_texts": {examples[m].id: texts[m][:300] for m in others[: min(5, limit)]},
            }, "members", len(others)))
        return described


def _with_total(group: dict, key: str, total: int) -> dict:
    """`group`, plus `<key>_total` when its `key` list was cut short of `total` members."""
    if len(group[key]) < total:
        group[f"{key}_total"] = total
    return group


def write_clusters(ctx: StageContext, clusters: dict[int, list[int]], examples: list[Example],
                   similarity: dict[int, float]) -> str | None:
    """Every cluster with every member, next to the rejected rows (the card lists only the first); its
    path relative to the version folder, or None when there is nothing to write or nowhere to write it.

    A .json document, not .jsonl: rejected/*.jsonl holds rejected rows only, one per line.
    """
    if not clusters or ctx.rejected_path is None:
        return None
    path = ctx.rejected_path.with_name(f"{ctx.stage_name}.clusters.json")
    listed = [{"kept": examples[keeper].id,
               "members": [{"id": examples[m].id, "jaccard": round(similarity[m], 3)} for m in members if m != keeper]}
              for keeper, members in clusters.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"stage": ctx.stage_name, "clusters": listed}, handle, ensure_ascii=False)
    return f"{path.parent.name}/{path.name}"


register_stage(ExactDedup)
register_stage(NearDedup)
