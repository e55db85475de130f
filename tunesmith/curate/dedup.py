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
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage

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


class ExactDedup(Stage):
    """Drop rows whose normalised key fields repeat an earlier row; warn when a key field is near-constant.

    The conversation key keeps the role words: the same contents under other roles is another conversation. A KTO
    row's label is part of the key: the same answer labelled true and false is a contradiction, not a duplicate, so
    both rows are kept and reported (a warning and a review item per pair).
    """

    name = "exact_dedup"
    version = "3"  # 3: the KTO label is part of the key; conflicting labels are reported

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
        columns = {f: [normalise(key_text(ex, f), cfg.normalize) for ex in examples] for f in cfg.fields}
        self._warn_constant_fields(columns, len(examples), ctx)
        first_of: dict[bytes, Example] = {}
        groups: dict[str, list[str]] = {}
        labels = _LabelConflicts()
        # two labels contradict only when the answer is in the key; one prompt with a good and a bad answer is KTO
        answer_keyed = bool({"conversation", "response"} & set(cfg.fields))
        kept = []
        for example, parts in zip(examples, zip(*columns.values())):
            unlabelled = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()
            key = unlabelled if example.label is None else unlabelled + (b"T" if example.label else b"F")
            original = first_of.setdefault(key, example)
            if original is example:
                kept.append(example)
                if example.label is not None and answer_keyed:
                    labels.add(unlabelled, example)
            else:
                groups.setdefault(original.id, []).append(example.id)
                ctx.reject(example, "exact_duplicate", f"same {'+'.join(cfg.fields)} as {original.id}")
        ctx.finding("duplicates", len(examples) - len(kept))
        ctx.finding("key_fields", list(cfg.fields))
        limit = cfg.max_members_recorded
        ctx.finding("groups", [with_total({"kept": k, "dropped": v[:limit]}, "dropped", len(v))
                               for k, v in list(groups.items())[:100]])
        labels.report(ctx, cfg.fields)
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


class _LabelConflicts:
    """KTO rows whose key fields match but whose labels differ: the first row of each label per unlabelled key."""

    def __init__(self) -> None:
        self.first: dict[bytes, dict[bool, Example]] = {}
        self.pairs: list[tuple[Example, Example]] = []  # (the earlier row, the row with the other label)

    def add(self, unlabelled: bytes, example: Example) -> None:
        """Called for the first row of each (key, label), so a key pairs at most once: true with false."""
        seen = self.first.setdefault(unlabelled, {})
        seen[example.label] = example
        other = seen.get(not example.label)
        if other is not None:
            self.pairs.append((other, example))

    def report(self, ctx: StageContext, fields: list[str]) -> None:
        """Findings, a warning and review items for the conflicting pairs (nothing when there are none)."""
        if not self.pairs:
            return
        key = "+".join(fields)
        ctx.finding("conflicting_labels", {"pairs": len(self.pairs), "rows": 2 * len(self.pairs)})
        a, b = self.pairs[0]
        warning = (f"{readable(len(self.pairs))} KTO answer(s) appear labelled both true and false (same {key}, "
                   f"e.g. {a.id} and {b.id}); KTO would push the same answer up and down: keep the right label and "
                   "drop the other row (see exact_dedup's review items)")
        log.warning("exact_dedup: %s", warning)
        ctx.finding("warnings", [*ctx.findings.get("warnings", []), warning])
        ctx.finding("review", [_conflict_item(first, second, key) for first, second in self.pairs[:REVIEW_CAP]])
        ctx.finding("review_total", len(self.pairs))


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
