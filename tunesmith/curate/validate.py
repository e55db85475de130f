"""The `validate` stage: turn each raw row into chat messages, or reject it with file, line and field.

Every input format becomes the same list of role/content turns here (the per-format readers are in
`formats.py`, preference rows in `preference.py`). Fix-ups (stripping whitespace, dropping placeholder inputs) are
counted in the stage's findings so the card says what was changed; every column no format reads is listed as
ignored (and every per-turn key no reader takes), multimodal rows are rejected, and the kept rows are profiled column by column (`profile.py`). Text that
holds the tokenizer's special tokens (chat-template markers such as `<|im_end|>`) is rejected by default.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from tunesmith.config import StrictModel, readable
from tunesmith.curate.control_tokens import control_pattern
from tunesmith.curate.formats import (
    COLUMNS,
    MEDIA_COLUMNS,
    PLAIN_TEXT,
    media_problem,
    media_token,
    read_columns,
    row_messages,
    row_tools,
    turn_weight_problem,
    unread_turn_keys,
)
from tunesmith.curate.preference import PREFERENCE_FORMATS, PREFERENCE_KEYS, preference_example
from tunesmith.curate.profile import ColumnProfile
from tunesmith.curate.record import Example, Message
from tunesmith.curate.sources import FORMAT_KEYS
from tunesmith.curate.stage import DataError, Stage, StageContext, register_stage
from tunesmith.curate.turn_checks import check_contents, check_roles, origin_of
from tunesmith.curate.turns import Origin, RowProblem

__all__ = ["RowProblem", "Validate"]  # RowProblem lives in turns.py; re-exported for older imports

log = logging.getLogger(__name__)

DEFAULT_PLACEHOLDERS = ["<noinput>", "no input", "noinput", "n/a", "none", "null", "<no input>", "-", "nan"]
# columns each preference format reads: its identifying keys (preference.py) plus a system prompt
PREFERENCE_COLUMNS = {fmt: set().union(*(keys for name, keys in PREFERENCE_KEYS if name == fmt), {"system"})
                      for fmt in PREFERENCE_FORMATS}
REVIEW_CAP = 50


def _with_format_hint(problem: RowProblem, example: Example) -> RowProblem:
    """A missing or mistyped field in a row that has another format's keys: say so (one source holds one format)."""
    fields = example.fields or {}
    other = next((fmt for fmt, keys in FORMAT_KEYS if keys <= fields.keys()), None)
    if problem.reason not in ("missing_field", "wrong_type") or other is None or other == example.format:
        return problem
    detail = (f"{problem.detail}; the row has the keys of the {other} format but the source is read as "
              f"{example.format} (one format per source: if the source sets `format:`, is it right? otherwise split the "
              "file, or map names with `columns:`)")
    return RowProblem(problem.reason, problem.field, detail)


class Validate(Stage):
    """Turn raw rows of any input format into chat messages, or reject them naming file, line and field."""

    name = "validate"
    version = "3"  # 3: per-turn keys listed, turn weights, <image> tokens only reviewed, fields named as input

    class Config(StrictModel):
        on_error: Literal["reject", "fail"] = Field(
            "reject", description="reject: write bad rows to rejected/validate.jsonl; fail: stop at the first."
        )
        strip: bool = Field(True, description="Strip leading/trailing whitespace from every turn (a recorded fix-up).")
        placeholder_inputs: list[str] = Field(
            default_factory=lambda: list(DEFAULT_PLACEHOLDERS),
            description="Alpaca `input` values that mean 'no input' (compared case-insensitively).",
        )
        placeholder_action: Literal["drop_input", "reject", "keep"] = Field(
            "drop_input", description="What to do with a placeholder input: drop it (fix-up), reject the row, keep."
        )
        max_chars: int = Field(
            20000, ge=1, le=100_000_000, description="Rows whose turns add up to more characters are rejected "
            "(at most 100,000,000)."
        )
        max_turns: int = Field(200, ge=2, le=100_000, description="Rows with more turns are rejected (at most 100,000).")
        special_tokens: Literal["reject", "allow"] = Field(
            "reject", description="reject: rows whose text holds a special token of the configured tokenizer (or, "
            "when it cannot be loaded, a common chat control string such as <|im_end|> or [INST]); allow: keep them "
            "(training still encodes them as plain text)."
        )

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        kept, fixups, profile, tally = [], Counter(), ColumnProfile(), _Tally()
        # the pipeline loads the configured tokenizer into ctx.extra; the built-in list serves when it could not
        tokenizer = ctx.extra.get("tokenizer")
        special = control_pattern(tokenizer) if self.config.special_tokens == "reject" else None
        if special is not None:
            ctx.finding("special_tokens_from", ctx.extra.get("tokenizer_name", "?") if tokenizer is not None
                        else "built-in list of common control strings")
        for example in examples:
            try:
                row = self._validate(example, fixups, special, tally)
            except RowProblem as problem:
                if self.config.on_error == "fail":
                    field = f"field {problem.field}: " if problem.field else ""
                    raise DataError(f"{example.where}: {field}{problem.detail}") from None
                ctx.reject(example, problem.reason, problem.detail, field=problem.field or None)
                tally.add(example, problem.reason)
                if problem.reason == "multimodal_unsupported":
                    tally.multimodal[problem.kind or "multimodal"] += 1
                continue
            tally.add(example)
            profile.add(example.fields, row.messages, row)
            kept.append(row)
        ctx.finding("fixups", dict(fixups))
        ctx.finding("formats", dict(Counter(f"{ex.source} ({ex.format})" for ex in examples)))
        self._report(ctx, tally, profile)
        return kept

    def _report(self, ctx: StageContext, tally: _Tally, profile: ColumnProfile) -> None:
        """Findings and warning sentences for what was not read: ignored columns and turn keys, multimodal and
        plain-text rows; review items for media tokens and placeholders."""
        ignored, multimodal = tally.ignored, tally.multimodal
        ctx.finding("ignored_columns", dict(ignored.most_common()))
        ctx.finding("ignored_turn_keys", dict(tally.turn_keys.most_common()))
        ctx.extra["ignored_columns"] = dict(ignored)  # split names them when group_by/stratify asks for one
        warnings = [sentence] if (sentence := _ignored_sentence(ignored, tally.turn_keys)) else []
        if multimodal:
            ctx.finding("multimodal", {"rows": sum(multimodal.values()), "by_kind": dict(multimodal.most_common())})
            kinds = ", ".join(f"{kind}: {readable(n)}" for kind, n in multimodal.most_common())
            warnings.append(f"{readable(sum(multimodal.values()))} rows hold images, audio or video ({kinds}) and were "
                            "rejected as multimodal_unsupported: tunesmith trains on text only")
        text_rows = ctx.counts["rejected:plain_text_unsupported"]
        if text_rows:
            warnings.append(f"{readable(text_rows)} rows were rejected as plain_text_unsupported: {PLAIN_TEXT}")
        ctx.finding("profile", profile.findings())
        ctx.finding("media_token_rows", tally.media_rows)
        warnings += profile.warnings()
        review = tally.review + profile.review_items()
        if review:
            ctx.finding("review", review[:REVIEW_CAP])
            ctx.finding("review_total", tally.media_rows + profile.findings()["placeholders"]["rows"])
        for sentence in warnings:
            log.warning("%s: %s", self.name, sentence)
        ctx.finding("warnings", warnings)

    def _validate(self, example: Example, fixups: Counter, special: re.Pattern | None, tally: _Tally) -> Example:
        if example.problem:
            raise RowProblem(example.problem, "", example.detail or example.problem)
        fields = example.fields or {}
        try:
            row, origins = self._convert(example, fields, fixups)
        except RowProblem as problem:
            raise _with_format_hint(problem, example) from None
        messages, rejected = list(row.messages), list(row.rejected)
        if self.config.strip:
            stripped = [m._replace(content=m.content.strip()) for m in messages]
            stripped_rejected = [m._replace(content=m.content.strip()) for m in rejected]
            if stripped != messages or stripped_rejected != rejected:
                fixups["stripped_whitespace"] += 1
            messages, rejected = stripped, stripped_rejected
        self._check_turns(messages, special, origins)
        check_contents(rejected, special, "rejected")
        weight = turn_weight_problem(example.format, fields)
        if weight is not None:
            raise weight
        tally.media(example, messages, rejected, origins)
        return row.replace(messages=tuple(messages), rejected=tuple(rejected), fields=None)

    def _convert(self, example: Example, fields: dict[str, Any],
                 fixups: Counter) -> tuple[Example, list[Origin] | None]:
        """The row with its turns (and tools, and a preference row's rejected answer and label) filled in, and
        where each turn came from (None for preference rows, whose reader does not say)."""
        media = media_problem(fields)
        if media is not None:
            raise media
        if example.format in PREFERENCE_FORMATS:
            return preference_example(example, example.format, fields, fixups), None
        origins: list[Origin] = []
        messages = row_messages(example.format, fields, fixups, lambda value: self._alpaca_input(value, fixups),
                                origins)
        tools = row_tools(fields) if "tools" in COLUMNS.get(example.format, ()) else None
        return example.replace(messages=tuple(messages), tools=tools), origins

    def _alpaca_input(self, value: str | None, fixups: Counter) -> str | None:
        placeholders = {p.lower() for p in self.config.placeholder_inputs}
        if value is None or value.strip().lower() not in placeholders or self.config.placeholder_action == "keep":
            return value
        if self.config.placeholder_action == "reject":
            raise RowProblem("placeholder_input", "input", f"field 'input' is the placeholder {value!r}")
        fixups["dropped_placeholder_input"] += 1
        return None

    def _check_turns(self, messages: list[Message], special: re.Pattern | None = None,
                     origins: list[Origin] | None = None) -> None:
        total = check_contents(messages, special, "messages", origins)
        if len(messages) > self.config.max_turns:
            raise RowProblem("too_many_turns", "messages",
                             f"{readable(len(messages))} turns (max_turns={readable(self.config.max_turns)})")
        if total > self.config.max_chars:
            raise RowProblem("too_long", "messages",
                             f"{readable(total)} characters (max_chars={readable(self.config.max_chars)})")
        check_roles(messages, origins)


class _Tally:
    """What validate counts across rows besides fix-ups: unread columns and turn keys, multimodal rejections and
    the media-token review items."""

    def __init__(self) -> None:
        self.ignored: Counter = Counter()
        self.turn_keys: Counter = Counter()
        self.multimodal: Counter = Counter()
        self.review: list[dict[str, Any]] = []
        self.media_rows = 0

    def add(self, example: Example, reason: str | None = None) -> None:
        """Count a row's unread columns and turn keys (a rejected row's media columns and weights were read)."""
        if example.fields is None:
            return
        fields, fmt = example.fields, example.format
        used = read_columns(fmt, fields) or PREFERENCE_COLUMNS.get(fmt, set())
        media_used = reason == "multimodal_unsupported"
        self.ignored.update(column for column in fields if column not in used and column not in example.meta
                            and not (media_used and column in MEDIA_COLUMNS))
        keys = unread_turn_keys(fmt, fields)
        if reason == "turn_weight_unsupported":
            keys = [key for key in keys if not key.endswith("[].weight")]
        self.turn_keys.update(keys)

    def media(self, example: Example, messages: list[Message], rejected: list[Message],
              origins: list[Origin] | None) -> None:
        """A review item for an `<image>`-style token in a row with no media: text, or media lost on export."""
        texts = [(m.content, origin_of(origins, i).content) for i, m in enumerate(messages)]
        texts += [(m.content, origin_of(None, i, "rejected").content) for i, m in enumerate(rejected)]
        for text, field in texts:
            kind = media_token(text)
            if kind is None:
                continue
            self.media_rows += 1
            if len(self.review) < REVIEW_CAP:
                self.review.append({
                    "kind": "media_token", "id": example.id, "where": example.where, "field": field,
                    "text": text[:300],
                    "detail": f"the text holds <{kind}>, the placeholder multimodal datasets put where {_a(kind)} {kind} "
                              f"goes, but the row has no {kind}: if its media were lost on export, the text refers "
                              f"to something the model never sees; if <{kind}> is literal text (HTML, code), ignore "
                              "this"})
            return


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _ignored_sentence(columns: Counter, turn_keys: Counter) -> str | None:
    """One warning sentence naming the unread columns and per-turn keys, with the row count of each."""
    parts = []
    if columns:
        listed = ", ".join(f"{column} ({readable(rows)} rows)" for column, rows in columns.most_common(10))
        more = f" and {len(columns) - 10} more" if len(columns) > 10 else ""
        keep = ", ".join(column for column, _ in columns.most_common(3))
        parts.append(f"ignored columns: {listed}{more}; keep one with `keep_columns: [{keep}]` on the source")
    if turn_keys:
        listed = ", ".join(f"{key} ({readable(rows)} rows)" for key, rows in turn_keys.most_common(10))
        more = f" and {len(turn_keys) - 10} more" if len(turn_keys) > 10 else ""
        parts.append(f"ignored per-turn keys: {listed}{more} (a turn keeps only its role, text, tool calls, "
                     "tool_call_id and name)")
    return "; ".join(parts) or None


register_stage(Validate)
