"""The per-turn and turn-order checks of the `validate` stage, naming the input's own field of a bad turn.

`origins` (from the format readers, parallel to the turns) says where each converted turn came from, so a ShareGPT
row's third turn is `conversations[2].from` and an alpaca answer is `output`, not a converted `messages[3]`; rows read
without origins (preference rows) fall back to `<key>[i]`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tunesmith.curate.record import Message
from tunesmith.curate.turns import Origin, RowProblem, short

# control characters and unpaired surrogates in one scan; the match tells which
BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# a turn of only whitespace and invisible characters (zero-width spaces and joiners, word joiner, BOM) is empty
BLANK = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]*")


def origin_of(origins: Sequence[Origin] | None, i: int, key: str = "messages") -> Origin:
    """Turn i's Origin, or `key[i]` when the reader gave none."""
    if origins is not None and i < len(origins):
        return origins[i]
    return Origin(f"{key}[{i}]", f"{key}[{i}].content", f"{key}[{i}].role")


def check_contents(messages: Sequence[Message], special: re.Pattern | None, key: str = "messages",
                   origins: Sequence[Origin] | None = None) -> int:
    """Per-turn text checks; returns the total characters. An assistant turn that only calls tools may be empty."""
    total = 0
    for i, message in enumerate(messages):
        field = origin_of(origins, i, key).content
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


def _expected(previous: Message | None) -> tuple[str, ...]:
    """The roles that may follow a turn: user and assistant alternate; a tool call is answered by tool turns."""
    if previous is None or (previous.role == "assistant" and not previous.tool_calls):
        return ("user",)
    if previous.role == "user":
        return ("assistant",)
    return ("tool",) if previous.role == "assistant" else ("tool", "assistant")


def _system_problem(roles: list[str], origins: Sequence[Origin] | None) -> RowProblem | None:
    """Two system prompts at the start (a top-level `system` and a system turn), or a system turn later on."""
    if "system" not in roles[1:]:
        return None
    late = roles.index("system", 1)
    where = origin_of(origins, late)
    if late == 1 and roles[0] == "system":
        first = origin_of(origins, 0).turn
        named = "the top-level `system` field" if first == "system" else first
        fix = ("remove the `system` field from the rows (or rename it away: `columns: {system: old_system}`, then "
               "it is listed as ignored) or remove the system turn" if first == "system" else "merge them into one")
        return RowProblem("two_system_prompts", where.role, f"the row has two system prompts, {named} and "
                          f"{where.turn}; keep one: {fix}")
    return RowProblem("system_not_first", where.role, f"{where.turn} is a system turn after the first turn; a "
                      "system prompt comes first, once")


def check_roles(messages: Sequence[Message], origins: Sequence[Origin] | None = None) -> None:
    """Roles in an order a chat template can render and training can learn from, ending in an assistant answer."""
    roles = [m.role for m in messages]
    if "assistant" not in roles:
        raise RowProblem("no_assistant_turn", "messages", "the conversation has no assistant turn to learn from")
    problem = _system_problem(roles, origins)
    if problem is not None:
        raise problem
    start = 1 if roles[0] == "system" else 0
    previous = None
    for offset in range(start, len(messages)):
        expected = _expected(previous)
        if roles[offset] not in expected:
            wanted = " or ".join(repr(role) for role in expected)
            why = ("a tool call is answered by tool turns, then the assistant" if "tool" in expected + (roles[offset],)
                   else "user and assistant alternate")
            where = origin_of(origins, offset)
            raise RowProblem("roles_out_of_order", where.role,
                             f"{where.turn} is {roles[offset]!r} where {wanted} was expected ({why})")
        previous = messages[offset]
    if roles[-1] != "assistant" or messages[-1].tool_calls:
        what = "a tool call with no answer after it" if messages[-1].tool_calls else f"a {roles[-1]} turn"
        raise RowProblem("last_turn_not_assistant", "messages", f"the conversation ends with {what}")
