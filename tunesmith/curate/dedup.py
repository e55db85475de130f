"""Deduplication: `exact_dedup` (normalised hash of the key fields) here, `near_dedup` in near_dedup.py.

Both reject a duplicate with the id of the row it duplicates, so the rejected file reads as evidence.
`near_dedup` can instead tag clusters, which `split` keeps together.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Literal

from pydantic import Field

from tunesmith.config import StrictModel, readable
from tunesmith.curate import minhash
from tunesmith.curate.dedup_keys import DedupKeys
from tunesmith.curate.record import Example
from tunesmith.curate.stage import GlobalStage, RowStore, StageContext, StageFindings, register_stage

log = logging.getLogger(__name__)

MEMBERS_RECORDED = 20  # ids per duplicate group on the card and in the report
REVIEW_CAP = 50
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


def key_text(example: Example, field: TextField) -> str:
    """A key field's text; a preference row's rejected turns belong to its conversation and its response, since
    prompt + chosen + rejected identify a preference row (same prompt and chosen, other rejected: another row)."""
    text = field_text(example, field)
    if example.rejected and field in ("conversation", "response"):
        text += "\x1erejected\x1e" + "\n".join(f"{m.role}: {m.content}" for m in example.rejected)
    # tool calls are trained answers too: two rows that differ only in a call's arguments are different rows
    calls = [m.tool_calls for m in example.messages if m.tool_calls] if field in ("conversation", "response") else []
    if calls:
        text += "\x1ecalls\x1e" + json.dumps(calls, sort_keys=True, ensure_ascii=False)
    if example.tools is not None and field == "conversation":
        text += "\x1etools\x1e" + json.dumps(example.tools, sort_keys=True, ensure_ascii=False)
    return text


class ExactDedupFindings(StageFindings):
    warnings: list[str]
    duplicates: int
    key_fields: list[str]
    groups: list[dict]
    conflicting_labels: dict[str, int] | None = None  # only when KTO labels contradict
    review: list[dict] | None = None
    review_total: int | None = None


class ExactDedup(GlobalStage):
    """Drop rows whose normalised key fields repeat an earlier row; warn when a key field is near-constant.

    The conversation key keeps the role words: the same contents under other roles is another conversation. A KTO
    row's label is part of the key: the same answer labelled true and false is a contradiction, not a duplicate, so
    both rows are kept and reported (a warning and a review item per pair).

    Streamed: pass 1 keeps 17 bytes a row (dedup_keys.py), the resolve picks the first row of each key, pass 2
    rejects the others naming their original, whose id it met first (an original comes before its duplicates).
    """

    name = "exact_dedup"
    version = "3"  # 3: the KTO label is part of the key; conflicting labels are reported
    Findings = ExactDedupFindings

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

    def open(self, ctx: StageContext) -> DedupKeys:
        return DedupKeys()

    def add_keys(self, batch: list[Example], start: int, state: DedupKeys, ctx: StageContext) -> None:
        if start != state.rows:
            raise ValueError(f"exact_dedup: batch at position {start} after {state.rows} rows")
        cfg = self.config
        several = len(cfg.fields) > 1
        for example in batch:
            parts = [normalise(key_text(example, f), cfg.normalize) for f in cfg.fields]
            digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()
            fields = {f: _field_hash(part) for f, part in zip(cfg.fields, parts)} if several else {}
            state.add(digest, example.label, fields)

    def resolve(self, state: DedupKeys, rows: RowStore, ctx: StageContext) -> None:
        # two labels contradict only when the answer is in the key; one prompt with a good and a bad answer is KTO
        answer_keyed = bool({"conversation", "response"} & set(self.config.fields))
        state.decide(list(self.config.fields), answer_keyed, REVIEW_CAP)

    def apply(self, batch: list[Example], start: int, state: DedupKeys, ctx: StageContext) -> list[Example]:
        positions = range(start, start + len(batch))
        original_of, heads = state.original_of(positions), state.heads_among(positions)
        key, limit, kept = "+".join(self.config.fields), self.config.max_members_recorded, []
        for position, example in zip(positions, batch):
            original = original_of.get(position)
            if original is None:
                kept.append(example)
                if position in heads:
                    state.open_ids[position] = example.id
                    if position in state.card:
                        state.card_kept[position] = example.id
                if position in state.pair_rows:
                    state.pair_rows[position] = example
                continue
            ctx.reject(example, "exact_duplicate", f"same {key} as {state.open_ids[original]}")
            dropped = state.card.get(original)
            if dropped is not None and len(dropped) < limit:
                dropped.append(example.id)
            state.duplicate_seen(original)
        return kept

    def close(self, state: DedupKeys, ctx: StageContext) -> None:
        self._warn_constant_fields(state, ctx)
        ctx.finding("duplicates", int(len(state.dup_pos)))
        ctx.finding("key_fields", list(self.config.fields))
        ctx.finding("groups", [with_total({"kept": state.card_kept[head], "dropped": dropped}, "dropped",
                                          state.card_totals[head]) for head, dropped in state.card.items()])
        self._report_conflicts(state, ctx)

    def _warn_constant_fields(self, state: DedupKeys, ctx: StageContext) -> None:
        warnings, rows = [], state.rows
        for field, distinct in state.distinct.items():
            if rows >= 20 and distinct / rows < self.config.constant_warning:
                warnings.append(
                    f"key field '{field}' has only {distinct} distinct values in {rows} rows: "
                    f"deduplicating on it would keep at most {distinct} rows. Add more fields to the key."
                )
        for warning in warnings:
            log.warning("exact_dedup: %s", warning)
        ctx.finding("warnings", warnings)

    def _report_conflicts(self, state: DedupKeys, ctx: StageContext) -> None:
        """Findings, a warning and review items for KTO rows whose key fields match but whose labels differ
        (the first row of each label per key; nothing when there are none)."""
        if not state.pairs_total:
            return
        key = "+".join(self.config.fields)
        pairs = [(state.pair_rows[a], state.pair_rows[b]) for a, b in state.pairs]
        ctx.finding("conflicting_labels", {"pairs": state.pairs_total, "rows": 2 * state.pairs_total})
        a, b = pairs[0]
        warning = (f"{readable(state.pairs_total)} KTO answer(s) appear labelled both true and false (same {key}, "
                   f"e.g. {a.id} and {b.id}); KTO would push the same answer up and down: keep the right label and "
                   "drop the other row (see exact_dedup's review items)")
        log.warning("exact_dedup: %s", warning)
        ctx.finding("warnings", [*ctx.findings.get("warnings", []), warning])
        ctx.finding("review", [_conflict_item(first, second, key) for first, second in pairs])
        ctx.finding("review_total", state.pairs_total)


def _field_hash(text: str) -> bytes:
    """8 bytes standing for one key field's normalised text, to count its distinct values."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _conflict_item(first: Example, second: Example, key: str) -> dict:
    answer = "\n".join(m.content for m in second.messages if m.role == "assistant")
    return {"kind": "conflicting_label", "id": second.id, "where": second.where, "field": "label",
            "text": answer[:300], "detail": f"this row is labelled {str(second.label).lower()} and {first.id} "
            f"({first.where}) is labelled {str(first.label).lower()} with the same {key}: one of the two is wrong"}


def with_total(group: dict, key: str, total: int) -> dict:
    """`group`, plus `<key>_total` when its `key` list was cut short of `total` members."""
    if len(group[key]) < total:
        group[f"{key}_total"] = total
    return group


register_stage(ExactDedup)

# near_dedup lives in its own module; importing it here registers it wherever dedup is imported
from tunesmith.curate import near_dedup  # noqa: E402, F401
