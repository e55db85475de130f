"""Deduplication: `exact_dedup` (normalised hash of the key fields) here, `near_dedup` in near_dedup.py.

Both reject a duplicate with the id of the row it duplicates, so the rejected file reads as evidence.
`near_dedup` can instead tag clusters, which `split` keeps together.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Literal

from pydantic import Field

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


def key_text(example: Example, field: TextField) -> str:
    """A key field's text; a preference row's rejected turns belong to its conversation and its response, since
    prompt + chosen + rejected identify a preference row (same prompt and chosen, other rejected: another row)."""
    text = field_text(example, field)
    if example.rejected and field in ("conversation", "response"):
        text += "\x1erejected\x1e" + "\n".join(f"{m.role}: {m.content}" for m in example.rejected)
    return text


class ExactDedup(Stage):
    """Drop rows whose normalised key fields repeat an earlier row; warn when a key field is near-constant.

    The conversation key keeps the role words: the same contents under other roles is another conversation.
    """

    name = "exact_dedup"
    version = "2"

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
        ctx.finding("groups", [with_total({"kept": k, "dropped": v[:limit]}, "dropped", len(v))
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


def with_total(group: dict, key: str, total: int) -> dict:
    """`group`, plus `<key>_total` when its `key` list was cut short of `total` members."""
    if len(group[key]) < total:
        group[f"{key}_total"] = total
    return group


register_stage(ExactDedup)

# near_dedup lives in its own module; importing it here registers it wherever dedup is imported
from tunesmith.curate import near_dedup  # noqa: E402, F401
