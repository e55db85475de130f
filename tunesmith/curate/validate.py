"""The `validate` stage: turn each raw row into chat messages, or reject it with file, line and field.

Every input format becomes the same list of role/content turns here. Fix-ups (stripping whitespace,
dropping placeholder inputs) are counted in the stage's findings so the card says what was changed. Text that
holds the tokenizer's special tokens (chat-template markers such as `<|im_end|>`) is rejected by default.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from tunesmith.config import StrictModel, preview, readable
from tunesmith.curate.control_tokens import control_pattern
from tunesmith.curate.readers import NOT_UTF8
from tunesmith.curate.record import ROLES, Example, Message
from tunesmith.curate.sources import FORMAT_KEYS
from tunesmith.curate.stage import DataError, Stage, StageContext, register_stage

# control characters and unpaired surrogates in one scan; the match tells which
BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# a turn of only whitespace and invisible characters (zero-width spaces and joiners, word joiner, BOM) is empty
BLANK = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]*")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
DEFAULT_PLACEHOLDERS = ["<noinput>", "no input", "noinput", "n/a", "none", "null", "<no input>", "-", "nan"]


class RowProblem(Exception):
    """A row that cannot become a valid conversation: reason code, field and a sentence for a person."""

    def __init__(self, reason: str, field: str, detail: str):
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


def _short(value: Any) -> str:
    """repr of a value for a one-line message, from a bounded preview so a 10 MB field is never formatted whole."""
    return preview(value, 60)


def _keys(turn: dict) -> str:
    """The first few keys of an object, each cut short, for a message about what the row holds instead."""
    return ", ".join(str(key)[:40] for key in list(turn)[:6]) or "none"


def _text(fields: dict[str, Any], key: str, required: bool = True) -> str | None:
    if key not in fields or fields[key] is None:
        if required:
            raise RowProblem("missing_field", key, f"field {key!r} is {'missing' if key not in fields else 'null'}")
        return None
    value = fields[key]
    if not isinstance(value, str):
        if isinstance(value, dict) and NOT_UTF8 in value:  # binary Parquet/hub cell (see readers._jsonable)
            raise RowProblem("invalid_utf8", key, f"field {key!r} holds bytes that are not UTF-8 "
                             f"(byte {value['bad_byte']} at {value['at']})")
        raise RowProblem("wrong_type", key, f"field {key!r} is {type(value).__name__}, expected a string")
    return value


def _turns(fields: dict[str, Any], key: str, role_key: str, text_key: str, role_map: dict) -> list[Message]:
    turns = fields.get(key)
    if turns is None:
        raise RowProblem("missing_field", key, f"field {key!r} is missing")
    if not isinstance(turns, list):
        raise RowProblem("wrong_type", key, f"field {key!r} is {type(turns).__name__}, expected a list of turns")
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RowProblem("wrong_type", where, f"{where} is {type(turn).__name__}, expected an object")
        if role_key not in turn:
            raise RowProblem("missing_field", f"{where}.{role_key}",
                             f"{where} has no {role_key!r} key (its keys: {_keys(turn)}); is `format:` right?")
        role = turn[role_key]
        if not isinstance(role, str) or role.lower() not in role_map:
            close = difflib.get_close_matches(str(role).lower()[:40], list(role_map), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (expected one of {sorted(role_map)})"
            raise RowProblem("unknown_role", f"{where}.{role_key}", f"{where}.{role_key} is {_short(role)}{hint}")
        content = turn.get(text_key)
        if not isinstance(content, str):
            kind = f"{type(content).__name__}, expected a string"
            if content is None:
                kind = "null" if text_key in turn else f"missing (its keys: {_keys(turn)})"
            reason = "missing_field" if content is None else "wrong_type"
            raise RowProblem(reason, f"{where}.{text_key}", f"{where}.{text_key} is {kind}")
        messages.append(Message(role_map[role.lower()], content))
    return messages


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
    version = "1"

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
        kept, fixups = [], Counter()
        # the pipeline loads the configured tokenizer into ctx.extra; the built-in list serves when it could not
        tokenizer = ctx.extra.get("tokenizer")
        special = control_pattern(tokenizer) if self.config.special_tokens == "reject" else None
        if special is not None:
            ctx.finding("special_tokens_from", ctx.extra.get("tokenizer_name", "?") if tokenizer is not None
                        else "built-in list of common control strings")
        for example in examples:
            try:
                kept.append(self._validate(example, fixups, special))
            except RowProblem as problem:
                if self.config.on_error == "fail":
                    field = f"field {problem.field}: " if problem.field else ""
                    raise DataError(f"{example.where}: {field}{problem.detail}") from None
                ctx.reject(example, problem.reason, problem.detail, field=problem.field or None)
        ctx.finding("fixups", dict(fixups))
        ctx.finding("formats", dict(Counter(f"{ex.source} ({ex.format})" for ex in examples)))
        return kept

    def _validate(self, example: Example, fixups: Counter, special: re.Pattern | None = None) -> Example:
        if example.problem:
            raise RowProblem(example.problem, "", example.detail or example.problem)
        try:
            messages = self._messages(example.format, example.fields or {}, fixups)
        except RowProblem as problem:
            raise _with_format_hint(problem, example) from None
        if self.config.strip:
            stripped = [Message(m.role, m.content.strip()) for m in messages]
            if stripped != messages:
                fixups["stripped_whitespace"] += 1
            messages = stripped
        self._check_turns(messages, special)
        return example.replace(messages=tuple(messages), fields=None)

    def _messages(self, fmt: str, fields: dict[str, Any], fixups: Counter) -> list[Message]:
        if fmt == "messages":
            return _turns(fields, "messages", "role", "content", {r: r for r in ROLES})
        if fmt == "sharegpt":
            return _turns(fields, "conversations", "from", "value", SHAREGPT_ROLES)
        system = _text(fields, "system", required=False)
        if fmt == "alpaca":
            prompt = _text(fields, "instruction")
            extra = self._alpaca_input(_text(fields, "input", required=False), fixups)
            prompt = f"{prompt}\n\n{extra}" if extra else prompt
            answer = _text(fields, "output")
        else:
            prompt = _text(fields, "prompt")
            answer = _text(fields, "response" if "response" in fields and "completion" not in fields else "completion")
        head = [Message("system", system)] if system else []
        return [*head, Message("user", prompt), Message("assistant", answer)]

    def _alpaca_input(self, value: str | None, fixups: Counter) -> str | None:
        placeholders = {p.lower() for p in self.config.placeholder_inputs}
        if value is None or value.strip().lower() not in placeholders or self.config.placeholder_action == "keep":
            return value
        if self.config.placeholder_action == "reject":
            raise RowProblem("placeholder_input", "input", f"field 'input' is the placeholder {value!r}")
        fixups["dropped_placeholder_input"] += 1
        return None

    def _check_turns(self, messages: list[Message], special: re.Pattern | None = None) -> None:
        total = 0
        for i, message in enumerate(messages):
            if BLANK.fullmatch(message.content):
                field = f"messages[{i}].content"
                raise RowProblem("empty_turn", field, f"the {message.role} turn {field} is empty or whitespace")
            bad = BAD_CHARS.search(message.content)
            if bad:
                field, code = f"messages[{i}].content", ord(bad.group())
                if 0xD800 <= code <= 0xDFFF:
                    raise RowProblem("invalid_utf8", field, f"{field} holds an unpaired UTF-16 surrogate (broken text)")
                raise RowProblem("control_characters", field, f"{field} holds control character U+{code:04X}")
            marker = special.search(message.content) if special is not None else None
            if marker:
                field = f"messages[{i}].content"
                raise RowProblem("special_token_in_text", field, f"{field} holds {_short(marker.group())}, a special "
                                 "token of the chat template; remove it, or set `special_tokens: allow` on validate")
            total += len(message.content)
        if len(messages) > self.config.max_turns:
            raise RowProblem("too_many_turns", "messages",
                             f"{readable(len(messages))} turns (max_turns={readable(self.config.max_turns)})")
        if total > self.config.max_chars:
            raise RowProblem("too_long", "messages",
                             f"{readable(total)} characters (max_chars={readable(self.config.max_chars)})")
        self._check_roles([m.role for m in messages])

    @staticmethod
    def _check_roles(roles: list[str]) -> None:
        if "assistant" not in roles:
            raise RowProblem("no_assistant_turn", "messages", "the conversation has no assistant turn to learn from")
        if "system" in roles[1:]:
            raise RowProblem("system_not_first", "messages", "a system turn appears after the first turn")
        body = roles[1:] if roles[0] == "system" else roles
        for i, role in enumerate(body):
            expected = "user" if i % 2 == 0 else "assistant"
            if role != expected:
                offset = i + (1 if roles[0] == "system" else 0)
                raise RowProblem(
                    "roles_out_of_order",
                    f"messages[{offset}].role",
                    f"messages[{offset}] is {role!r} where {expected!r} was expected (user and assistant alternate)",
                )
        if body[-1] != "assistant":
            raise RowProblem("last_turn_not_assistant", "messages", "the conversation ends with a user turn")


register_stage(Validate)
