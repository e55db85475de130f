"""The `validate` stage: turn each raw row into chat messages, or reject it with file, line and field.

Every input format becomes the same list of role/content turns here (the per-format readers are in
`formats.py`, preference rows in `preference.py`). Fix-ups (stripping whitespace, dropping placeholder inputs) are
counted in the stage's findings so the card says what was changed; every column no format reads is listed as
ignored (and every per-turn key no reader takes), multimodal rows are rejected, and the kept rows are profiled
column by column (`profile.py`). Text that holds the tokenizer's special tokens (chat-template markers such as
`<|im_end|>`) is rejected by default. A row stage: the counts and the profile merge over batches and workers
(`validate_tally.py`), so memory holds a few hashes per row, never the rows.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from tunesmith.config import StrictModel, readable
from tunesmith.curate.control_tokens import control_pattern
from tunesmith.curate.formats import COLUMNS, media_problem, row_messages, row_tools, turn_weight_problem
from tunesmith.curate.preference import PREFERENCE_FORMATS, preference_example
from tunesmith.curate.profile import ColumnProfile
from tunesmith.curate.record import Example, Message
from tunesmith.curate.sources import FORMAT_KEYS
from tunesmith.curate.stage import DataError, FilterStage, Reject, StageContext, register_stage
from tunesmith.curate.turn_checks import check_contents, check_roles
from tunesmith.curate.turns import Origin, RowProblem
from tunesmith.curate.validate_tally import ValidateFindings, ValidateTally

__all__ = ["RowProblem", "Validate"]  # RowProblem lives in turns.py; re-exported for older imports

log = logging.getLogger(__name__)

DEFAULT_PLACEHOLDERS = ["<noinput>", "no input", "noinput", "n/a", "none", "null", "<no input>", "-", "nan"]


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


class Validate(FilterStage):
    """Turn raw rows of any input format into chat messages, or reject them naming file, line and field.

    A row stage: each row is checked alone; the tally (counters, first review items, the column profile's small
    per-row hashes) merges over batches and workers, and `close` writes the findings of all rows."""

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

    Findings = ValidateFindings

    def setup(self, ctx: StageContext) -> None:
        """The special-token pattern once per process: the pipeline loads the configured tokenizer into ctx.extra;
        the built-in list of control strings serves when it could not."""
        self._special = control_pattern(ctx.extra.get("tokenizer")) if self.config.special_tokens == "reject" else None

    def open(self, ctx: StageContext) -> ValidateTally:
        # a worker (ctx.buffer set) keeps its rows' profile events for the driver's profile, which starts the stream
        return ValidateTally(profile=ColumnProfile() if ctx.buffer is None else None)

    def keep(self, example: Example, tally: ValidateTally, ctx: StageContext) -> Example | Reject:
        try:
            row = self._validate(example, tally)
        except RowProblem as problem:
            if self.config.on_error == "fail":
                field = f"field {problem.field}: " if problem.field else ""
                raise DataError(f"{example.where}: {field}{problem.detail}") from None
            tally.add(example, problem.reason)
            if problem.reason == "multimodal_unsupported":
                tally.multimodal[problem.kind or "multimodal"] += 1
            return Reject(problem.reason, problem.detail, field=problem.field or None)
        tally.add(example)
        tally.kept(example, row)
        return row

    def merge(self, state: ValidateTally, other: ValidateTally) -> ValidateTally:
        return state.merge(other)

    def close(self, tally: ValidateTally, ctx: StageContext) -> None:
        if self._special is not None:
            ctx.finding("special_tokens_from", ctx.extra.get("tokenizer_name", "?")
                        if ctx.extra.get("tokenizer") is not None else "built-in list of common control strings")
        for sentence in tally.write(ctx):
            log.warning("%s: %s", self.name, sentence)

    def _validate(self, example: Example, tally: ValidateTally) -> Example:
        if example.problem:
            raise RowProblem(example.problem, "", example.detail or example.problem)
        fields = example.fields or {}
        try:
            row, origins = self._convert(example, fields, tally.fixups)
        except RowProblem as problem:
            raise _with_format_hint(problem, example) from None
        messages, rejected = list(row.messages), list(row.rejected)
        if self.config.strip:
            stripped = [m._replace(content=m.content.strip()) for m in messages]
            stripped_rejected = [m._replace(content=m.content.strip()) for m in rejected]
            if stripped != messages or stripped_rejected != rejected:
                tally.fixups["stripped_whitespace"] += 1
            messages, rejected = stripped, stripped_rejected
        self._check_turns(messages, self._special, origins)
        check_contents(rejected, self._special, "rejected")
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


register_stage(Validate)
