"""The `validate` stage: turn each raw row into chat messages, or reject it with file, line and field.

Every input format becomes the same list of role/content turns here (the per-format readers are in
`formats.py`, preference rows in `preference.py`). Fix-ups (stripping whitespace, dropping placeholder inputs) are
counted in the stage's findings so the card says what was changed; every column no format reads is listed as
ignored, multimodal rows are rejected, and the kept rows are profiled column by column (`profile.py`). Text that
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
    RowProblem,
    media_problem,
    media_token_problem,
    row_messages,
    row_tools,
    short,
)
from tunesmith.curate.preference import PREFERENCE_FORMATS, PREFERENCE_KEYS, preference_example
from tunesmith.curate.profile import ColumnProfile
from tunesmith.curate.record import Example, Message
from tunesmith.curate.sources import FORMAT_KEYS
from tunesmith.curate.stage import DataError, Stage, StageContext, register_stage

__all__ = ["RowProblem", "Validate"]  # RowProblem lives in formats.py; re-exported for older imports

log = logging.getLogger(__name__)

# control characters and unpaired surrogates in one scan; the match tells which
BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# a turn of only whitespace and invisible characters (zero-width spaces and joiners, word joiner, BOM) is empty
BLANK = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]*")
DEFAULT_PLACEHOLDERS = ["<noinput>", "no input", "noinput", "n/a", "none", "null", "<no input>", "-", "nan"]
# columns each preference format reads: its identifying keys (preference.py) plus a system prompt
PREFERENCE_COLUMNS = {fmt: set().union(*(keys for name, keys in PREFERENCE_KEYS if name == fmt), {"system"})
                      for fmt in PREFERENCE_FORMATS}
REVIEW_CAP = 50


def _with_format_hint(problem: RowProblem, example: Example) -> RowProblem:
    """A missing field in a row that has another format's keys: say so (one source holds one format)."""
    fields = example.fields or {}
    other = next((fmt for fmt, keys in FORMAT_KEYS if keys <= fields.keys()), None)
    if problem.reason != "missing_field" or other is None or other == example.format:
        return problem
    detail = (f"{problem.detail}; the row has the keys of the {other} format but the source is read as "
              f"{example.format} (one format per source: split the file, or map names with `columns:`)")
    return RowProblem(problem.reason, problem.field, detail)


class Validate(Stage):
    """Turn raw rows of any input format into chat messages, or reject them naming file, line and field."""

    name = "validate"
    version = "2"  # 2: tool turns, content parts, history, ignored columns, multimodal, profile

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
        kept, fixups, profile = [], Counter(), ColumnProfile()
        ignored, multimodal = Counter(), Counter()
        # the pipeline loads the configured tokenizer into ctx.extra; the built-in list serves when it could not
        tokenizer = ctx.extra.get("tokenizer")
        special = control_pattern(tokenizer) if self.config.special_tokens == "reject" else None
        if special is not None:
            ctx.finding("special_tokens_from", ctx.extra.get("tokenizer_name", "?") if tokenizer is not None
                        else "built-in list of common control strings")
        for example in examples:
            try:
                row = self._validate(example, fixups, special)
            except RowProblem as problem:
                if self.config.on_error == "fail":
                    field = f"field {problem.field}: " if problem.field else ""
                    raise DataError(f"{example.where}: {field}{problem.detail}") from None
                ctx.reject(example, problem.reason, problem.detail, field=problem.field or None)
                if problem.reason == "multimodal_unsupported":
                    multimodal[problem.kind or "multimodal"] += 1
                ignored.update(_ignored(example, media_used=problem.reason == "multimodal_unsupported"))
                continue
            ignored.update(_ignored(example))
            profile.add(example.fields, row.messages, row)
            kept.append(row)
        ctx.finding("fixups", dict(fixups))
        ctx.finding("formats", dict(Counter(f"{ex.source} ({ex.format})" for ex in examples)))
        self._report(ctx, examples, ignored, multimodal, profile)
        return kept

    def _report(self, ctx: StageContext, examples: list[Example], ignored: Counter, multimodal: Counter,
                profile: ColumnProfile) -> None:
        """Findings and warning sentences for what was not read: ignored columns, multimodal and plain-text rows."""
        warnings = []
        ctx.finding("ignored_columns", dict(ignored.most_common()))
        ctx.extra["ignored_columns"] = dict(ignored)  # split names them when group_by/stratify asks for one
        if ignored:
            listed = ", ".join(f"{column} ({readable(rows)} rows)" for column, rows in ignored.most_common(10))
            more = f" and {len(ignored) - 10} more" if len(ignored) > 10 else ""
            keep = ", ".join(column for column, _ in ignored.most_common(3))
            warnings.append(f"ignored columns: {listed}{more}; keep one with `keep_columns: [{keep}]` on the source")
        if multimodal:
            ctx.finding("multimodal", {"rows": sum(multimodal.values()), "by_kind": dict(multimodal.most_common())})
            kinds = ", ".join(f"{kind}: {readable(n)}" for kind, n in multimodal.most_common())
            warnings.append(f"{readable(sum(multimodal.values()))} rows hold images, audio or video ({kinds}) and were "
                            "rejected as multimodal_unsupported: tunesmith trains on text only")
        text_rows = ctx.counts["rejected:plain_text_unsupported"]
        if text_rows:
            warnings.append(f"{readable(text_rows)} rows were rejected as plain_text_unsupported: {PLAIN_TEXT}")
        ctx.finding("profile", profile.findings())
        warnings += profile.warnings()
        review = profile.review_items()
        if review:
            ctx.finding("review", review[:REVIEW_CAP])
            ctx.finding("review_total", profile.findings()["placeholders"]["rows"])
        for sentence in warnings:
            log.warning("%s: %s", self.name, sentence)
        ctx.finding("warnings", warnings)

    def _validate(self, example: Example, fixups: Counter, special: re.Pattern | None = None) -> Example:
        if example.problem:
            raise RowProblem(example.problem, "", example.detail or example.problem)
        fields = example.fields or {}
        try:
            row = self._convert(example, fields, fixups)
        except RowProblem as problem:
            raise _with_format_hint(problem, example) from None
        messages, rejected = list(row.messages), list(row.rejected)
        if self.config.strip:
            stripped = [m._replace(content=m.content.strip()) for m in messages]
            stripped_rejected = [m._replace(content=m.content.strip()) for m in rejected]
            if stripped != messages or stripped_rejected != rejected:
                fixups["stripped_whitespace"] += 1
            messages, rejected = stripped, stripped_rejected
        media = media_token_problem(messages + rejected)
        if media is not None:
            raise media
        self._check_turns(messages, special)
        self._check_contents(rejected, special, "rejected")
        return row.replace(messages=tuple(messages), rejected=tuple(rejected), fields=None)

    def _convert(self, example: Example, fields: dict[str, Any], fixups: Counter) -> Example:
        """The row with its turns (and tools, and a preference row's rejected answer and label) filled in."""
        media = media_problem(fields)
        if media is not None:
            raise media
        if example.format in PREFERENCE_FORMATS:
            return preference_example(example, example.format, fields, fixups)
        messages = row_messages(example.format, fields, fixups, lambda value: self._alpaca_input(value, fixups))
        tools = row_tools(fields) if "tools" in COLUMNS.get(example.format, ()) else None
        return example.replace(messages=tuple(messages), tools=tools)

    def _alpaca_input(self, value: str | None, fixups: Counter) -> str | None:
        placeholders = {p.lower() for p in self.config.placeholder_inputs}
        if value is None or value.strip().lower() not in placeholders or self.config.placeholder_action == "keep":
            return value
        if self.config.placeholder_action == "reject":
            raise RowProblem("placeholder_input", "input", f"field 'input' is the placeholder {value!r}")
        fixups["dropped_placeholder_input"] += 1
        return None

    def _check_contents(self, messages: list[Message], special: re.Pattern | None, key: str = "messages") -> int:
        """Per-turn text checks; returns the total characters. An assistant turn that only calls tools may be empty."""
        total = 0
        for i, message in enumerate(messages):
            field = f"{key}[{i}].content"
            if BLANK.fullmatch(message.content) and not message.tool_calls:
                raise RowProblem("empty_turn", field, f"the {message.role} turn {field} is empty or whitespace")
            bad = BAD_CHARS.search(message.content)
            if bad:
                code = ord(bad.group())
                if 0xD800 <= code <= 0xDFFF:
                    raise RowProblem("invalid_utf8", field, f"{field} holds an unpaired UTF-16 surrogate (broken text)")
                raise RowProblem("control_characters", field, f"{field} holds control character U+{code:04X}")
            marker = special.search(message.content) if special is not None else None
            if marker:
                raise RowProblem("special_token_in_text", field, f"{field} holds {short(marker.group())}, a special "
                                 "token of the chat template; remove it, or set `special_tokens: allow` on validate")
            total += len(message.content)
        return total

    def _check_turns(self, messages: list[Message], special: re.Pattern | None = None) -> None:
        total = self._check_contents(messages, special)
        if len(messages) > self.config.max_turns:
            raise RowProblem("too_many_turns", "messages",
                             f"{readable(len(messages))} turns (max_turns={readable(self.config.max_turns)})")
        if total > self.config.max_chars:
            raise RowProblem("too_long", "messages",
                             f"{readable(total)} characters (max_chars={readable(self.config.max_chars)})")
        _check_roles(messages)


def _ignored(example: Example, media_used: bool = False) -> list[str]:
    """The row's columns that its format does not read and `keep_columns` does not keep."""
    if example.fields is None:
        return []
    used = COLUMNS.get(example.format) or PREFERENCE_COLUMNS.get(example.format, set())
    return [column for column in example.fields if column not in used and column not in example.meta
            and not (media_used and column in MEDIA_COLUMNS)]


def _expected(previous: Message | None) -> tuple[str, ...]:
    """The roles that may follow a turn: user and assistant alternate; a tool call is answered by tool turns."""
    if previous is None or (previous.role == "assistant" and not previous.tool_calls):
        return ("user",)
    if previous.role == "user":
        return ("assistant",)
    return ("tool",) if previous.role == "assistant" else ("tool", "assistant")


def _check_roles(messages: list[Message]) -> None:
    roles = [m.role for m in messages]
    if "assistant" not in roles:
        raise RowProblem("no_assistant_turn", "messages", "the conversation has no assistant turn to learn from")
    if "system" in roles[1:]:
        raise RowProblem("system_not_first", "messages", "a system turn appears after the first turn")
    start = 1 if roles[0] == "system" else 0
    previous = None
    for offset in range(start, len(messages)):
        expected = _expected(previous)
        if roles[offset] not in expected:
            wanted = " or ".join(repr(role) for role in expected)
            why = ("a tool call is answered by tool turns, then the assistant" if "tool" in expected + (roles[offset],)
                   else "user and assistant alternate")
            raise RowProblem("roles_out_of_order", f"messages[{offset}].role",
                             f"messages[{offset}] is {roles[offset]!r} where {wanted} was expected ({why})")
        previous = messages[offset]
    if roles[-1] != "assistant" or messages[-1].tool_calls:
        what = "a tool call with no answer after it" if messages[-1].tool_calls else f"a {roles[-1]} turn"
        raise RowProblem("last_turn_not_assistant", "messages", f"the conversation ends with {what}")


register_stage(Validate)
