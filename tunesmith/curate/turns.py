"""Reading chat turns into Messages: OpenAI messages and ShareGPT conversations, and the RowProblem they raise.

Each reader can note where every turn came from (`Origin`), so validate's rejections name the input's own field
(`conversations[2].from`), not a converted turn's index. `formats.py` builds the per-format rows on these and
`preference.py` reads its prompt and answer turns with them.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from typing import Any, NamedTuple

from tunesmith.config import preview
from tunesmith.curate.readers import NOT_UTF8
from tunesmith.curate.record import Message

OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
# LLaMA-Factory's sharegpt: function_call is an assistant turn that calls a tool, observation is the tool's result
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}

class Origin(NamedTuple):
    """Where a converted turn came from in the input row: the turn, its text field and its role field.

    Alpaca's turns are whole columns (`instruction`, `history[0][1]`), so all three name the same field there."""

    turn: str
    content: str
    role: str


class RowProblem(Exception):
    """A row that cannot become a valid conversation: reason code, field and a sentence for a person.

    `kind` sorts multimodal rejections for the counts in validate's findings (e.g. "images column").
    """

    def __init__(self, reason: str, field: str, detail: str, kind: str | None = None):
        super().__init__(detail)
        self.reason, self.field, self.detail, self.kind = reason, field, detail, kind


def short(value: Any) -> str:
    """repr of a value for a one-line message, from a bounded preview so a 10 MB field is never formatted whole."""
    return preview(value, 60)


def keys_of(turn: dict) -> str:
    """The first few keys of an object, each cut short, for a message about what the row holds instead."""
    return ", ".join(str(key)[:40] for key in list(turn)[:6]) or "none"


def text_field(fields: dict[str, Any], key: str, required: bool = True) -> str | None:
    """`fields[key]` as a string; None when absent and not required; RowProblem otherwise."""
    if key not in fields or fields[key] is None:
        if required:
            raise RowProblem("missing_field", key, f"field {key!r} is {'missing' if key not in fields else 'null'}")
        return None
    return as_string(fields[key], f"field {key!r}", key)


def as_string(value: Any, what: str, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and NOT_UTF8 in value:  # binary Parquet/hub cell (see readers._jsonable)
        raise RowProblem("invalid_utf8", field, f"{what} holds bytes that are not UTF-8 "
                         f"(byte {value['bad_byte']} at {value['at']})")
    raise RowProblem("wrong_type", field, f"{what} is {type(value).__name__}, expected a string")


def _turn_list(fields: dict[str, Any], key: str) -> list:
    turns = fields.get(key)
    if turns is None:
        raise RowProblem("missing_field", key, f"field {key!r} is missing")
    if not isinstance(turns, list):
        raise RowProblem("wrong_type", key, f"field {key!r} is {type(turns).__name__}, expected a list of turns")
    return turns


def _role(turn: Any, where: str, role_key: str, role_map: dict[str, str]) -> str:
    if not isinstance(turn, dict):
        raise RowProblem("wrong_type", where, f"{where} is {type(turn).__name__}, expected an object")
    if role_key not in turn:
        raise RowProblem("missing_field", f"{where}.{role_key}",
                         f"{where} has no {role_key!r} key (its keys: {keys_of(turn)}); {_style_hint(turn, where)}")
    role = turn[role_key]
    if not isinstance(role, str) or role.lower() not in role_map:
        close = difflib.get_close_matches(str(role).lower()[:40], list(role_map), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (expected one of {sorted(role_map)})"
        raise RowProblem("unknown_role", f"{where}.{role_key}", f"{where}.{role_key} is {short(role)}{hint}")
    return role.lower()


def _style_hint(turn: dict, where: str) -> str:
    """What to do about a turn in the other style: ShareGPT from/value in messages, or role/content mixed in."""
    key = where.split("[", 1)[0]
    if "from" in turn and key == "messages":
        return "it is a ShareGPT from/value turn: map the column with `columns: {messages: conversations}`"
    if "role" in turn:
        return ("it is an OpenAI role/content turn among from/value turns: write every turn of the row in one style "
                "(a list of role/content turns only is read as is)")
    return "is `format:` right?"


def _missing(turn: dict, key: str, where: str) -> RowProblem:
    kind = "null" if key in turn else f"missing (its keys: {keys_of(turn)})"
    return RowProblem("missing_field", f"{where}.{key}", f"{where}.{key} is {kind}")


def _content(value: Any, where: str, fixups: Counter) -> str:
    """OpenAI content: a string, or a list of parts whose text parts are joined; any other part is multimodal."""
    if not isinstance(value, list):
        return as_string(value, where, where)
    texts = []
    for j, part in enumerate(value):
        at = f"{where}[{j}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise RowProblem("wrong_type", at, f"{at} is {short(part)}, expected a part like "
                             "{'type': 'text', 'text': ...}")
        if part["type"] != "text":
            raise RowProblem("multimodal_unsupported", at, f"{at} is an {short(part['type'])} part; tunesmith trains "
                             "on text only, and the text alone would refer to an input the model never sees",
                             kind=f"{part['type'][:40]} part")
        texts.append(as_string(part.get("text"), f"{at}.text", f"{at}.text"))
    fixups["joined_content_parts"] += 1
    return "\n".join(texts)


def _tool_calls(value: Any, where: str) -> list:
    """An assistant turn's tool calls, checked for the shape chat templates read (function.name at least)."""
    if not isinstance(value, list) or not value:
        raise RowProblem("wrong_type", where, f"{where} is {short(value)}, expected a non-empty list of tool calls")
    for j, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RowProblem("malformed_tool_call", f"{where}[{j}]", f"{where}[{j}] is {short(call)}, expected "
                             "{'type': 'function', 'function': {'name': ..., 'arguments': ...}}")
    return value


def _optional_str(turn: dict, key: str, where: str) -> str | None:
    value = turn.get(key)
    return None if value is None else as_string(value, f"{where}.{key}", f"{where}.{key}")


def openai_turns(fields: dict[str, Any], key: str, fixups: Counter | None = None,
                 origins: list[Origin] | None = None) -> list[Message]:
    """OpenAI chat messages: content as text or parts; assistant tool_calls (content may be null); tool turns.

    `origins`, when given, gets each turn's Origin (the same for every reader below)."""
    messages, fixups = [], Counter() if fixups is None else fixups
    for i, turn in enumerate(_turn_list(fields, key)):
        where = f"{key}[{i}]"
        _note(origins, Origin(where, f"{where}.content", f"{where}.role"))
        role = OPENAI_ROLES[_role(turn, where, "role", OPENAI_ROLES)]
        calls = _tool_calls(turn["tool_calls"], f"{where}.tool_calls") if turn.get("tool_calls") else None
        if role != "assistant" and calls is not None:
            raise RowProblem("malformed_tool_call", f"{where}.tool_calls", f"{where} is a {role} turn with "
                             "tool_calls; only assistant turns call tools")
        if turn.get("content") is None and calls is None:
            raise _missing(turn, "content", where)
        content = "" if turn.get("content") is None else _content(turn["content"], f"{where}.content", fixups)
        messages.append(Message(role, content, calls, _optional_str(turn, "tool_call_id", where),
                                _optional_str(turn, "name", where)))
    return messages


def _note(origins: list[Origin] | None, origin: Origin) -> None:
    if origins is not None:
        origins.append(origin)


def _sharegpt_call(value: str, where: str) -> list:
    """A function_call turn's value (JSON: one {name, arguments} object or a list of them) as OpenAI tool_calls."""
    try:
        parsed = json.loads(value)
    except ValueError:
        raise RowProblem("malformed_tool_call", where, f"{where} is {short(value)}, not the JSON of a tool call "
                         "({'name': ..., 'arguments': ...})") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        raise RowProblem("malformed_tool_call", where, f"{where} is {short(value)}, expected a tool call with a "
                         "'name' (and 'arguments')")
    return [{"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}} for c in calls]


def sharegpt_turns(fields: dict[str, Any], key: str, fixups: Counter | None = None,
                   origins: list[Origin] | None = None) -> list[Message]:
    """ShareGPT turns (from/value); function_call becomes an assistant turn with tool_calls, observation a tool turn.

    Turns that all use OpenAI's role/content keys (a common export) are read as OpenAI messages, a counted fix-up.
    A top-level `system` comes first."""
    system = text_field(fields, "system", required=False)
    if system:
        _note(origins, Origin("system", "system", "system"))
    turns = _turn_list(fields, key)
    if _role_content_style(turns):
        if fixups is not None:
            fixups["role_content_conversations"] += 1
        messages = openai_turns(fields, key, fixups, origins)
    else:
        messages = _from_value_turns(turns, key, origins)
    return [Message("system", system), *messages] if system else messages


def _role_content_style(turns: list) -> bool:
    return bool(turns) and all(isinstance(t, dict) and "role" in t and "from" not in t for t in turns)


def _from_value_turns(turns: list, key: str, origins: list[Origin] | None) -> list[Message]:
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        _note(origins, Origin(where, f"{where}.value", f"{where}.from"))
        role = _role(turn, where, "from", SHAREGPT_ROLES)
        if turn.get("value") is None:
            raise _missing(turn, "value", where)
        content = as_string(turn["value"], f"{where}.value", f"{where}.value")
        if role == "function_call":
            messages.append(Message("assistant", "", _sharegpt_call(content, f"{where}.value")))
        else:
            messages.append(Message(SHAREGPT_ROLES[role], content))
    return messages
