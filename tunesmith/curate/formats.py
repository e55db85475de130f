"""How a row of each input format becomes chat turns, for the `validate` stage.

alpaca (with `history` and `system`; `input` or Dolly's `context`, `output` or `response`), prompt/completion,
OpenAI messages (content parts, `tool` turns, assistant `tool_calls`), ShareGPT (top-level `system`,
`function_call`/`observation` turns) and plain `text`. `COLUMNS` names what each format reads, so validate can list
every other column as ignored. `preference.py` reuses `RowProblem` and the turn readers; this module imports no
other stage, so both can import it without a cycle.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from tunesmith.config import preview
from tunesmith.curate.readers import NOT_UTF8
from tunesmith.curate.record import Message

OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
# LLaMA-Factory's sharegpt: function_call is an assistant turn that calls a tool, observation is the tool's result
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}
COLUMNS = {
    "messages": {"messages", "tools"},
    "sharegpt": {"conversations", "system", "tools"},
    "alpaca": {"instruction", "input", "context", "output", "response", "system", "history"},
    "prompt_completion": {"prompt", "completion", "response", "system"},
    "text": {"text"},
}
MEDIA_COLUMNS = ("images", "image", "audios", "audio", "videos", "video")
MEDIA_TOKEN = re.compile(r"<(image|audio|video)>")
PLAIN_TEXT = ("plain text rows (a `text` column) are language-modelling data, not chat SFT data: tunesmith trains "
              "on user/assistant turns; convert them to prompt/completion or messages (if the text holds a chat in a "
              "markup such as '### Human:', split it into turns)")


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
    return _string(fields[key], f"field {key!r}", key)


def _string(value: Any, what: str, field: str) -> str:
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
                         f"{where} has no {role_key!r} key (its keys: {keys_of(turn)}); is `format:` right?")
    role = turn[role_key]
    if not isinstance(role, str) or role.lower() not in role_map:
        close = difflib.get_close_matches(str(role).lower()[:40], list(role_map), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (expected one of {sorted(role_map)})"
        raise RowProblem("unknown_role", f"{where}.{role_key}", f"{where}.{role_key} is {short(role)}{hint}")
    return role.lower()


def _missing(turn: dict, key: str, where: str) -> RowProblem:
    kind = "null" if key in turn else f"missing (its keys: {keys_of(turn)})"
    return RowProblem("missing_field", f"{where}.{key}", f"{where}.{key} is {kind}")


def _content(value: Any, where: str, fixups: Counter) -> str:
    """OpenAI content: a string, or a list of parts whose text parts are joined; any other part is multimodal."""
    if not isinstance(value, list):
        return _string(value, where, where)
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
        texts.append(_string(part.get("text"), f"{at}.text", f"{at}.text"))
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
    return None if value is None else _string(value, f"{where}.{key}", f"{where}.{key}")


def openai_turns(fields: dict[str, Any], key: str, fixups: Counter | None = None) -> list[Message]:
    """OpenAI chat messages: content as text or parts; assistant tool_calls (content may be null); tool turns."""
    messages, fixups = [], Counter() if fixups is None else fixups
    for i, turn in enumerate(_turn_list(fields, key)):
        where = f"{key}[{i}]"
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


def sharegpt_turns(fields: dict[str, Any], key: str) -> list[Message]:
    """ShareGPT turns (from/value); function_call becomes an assistant turn with tool_calls, observation a tool turn."""
    messages = []
    for i, turn in enumerate(_turn_list(fields, key)):
        where = f"{key}[{i}]"
        role = _role(turn, where, "from", SHAREGPT_ROLES)
        if turn.get("value") is None:
            raise _missing(turn, "value", where)
        content = _string(turn["value"], f"{where}.value", f"{where}.value")
        if role == "function_call":
            messages.append(Message("assistant", "", _sharegpt_call(content, f"{where}.value")))
        else:
            messages.append(Message(SHAREGPT_ROLES[role], content))
    system = text_field(fields, "system", required=False)
    return [Message("system", system), *messages] if system else messages


def row_tools(fields: dict[str, Any]) -> Any:
    """A row's tool definitions as a JSON list (LLaMA-Factory stores them as a JSON string), or None."""
    value = fields.get("tools")
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            raise RowProblem("wrong_type", "tools", f"field 'tools' is {short(value)}, not a JSON list of tool "
                             "definitions") from None
    if value in (None, "", []):
        return None
    if not isinstance(value, list):
        raise RowProblem("wrong_type", "tools", f"field 'tools' is {type(value).__name__}, expected a list of "
                         "tool definitions")
    return value


def _history(fields: dict[str, Any]) -> list[Message]:
    """Alpaca `history`: [prompt, answer] pairs of earlier turns, which come before the instruction."""
    pairs = fields.get("history")
    if pairs in (None, ""):
        return []
    if not isinstance(pairs, list):
        raise RowProblem("wrong_type", "history", f"field 'history' is {type(pairs).__name__}, expected a list of "
                         "[prompt, answer] pairs")
    turns = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list) or len(pair) != 2:
            raise RowProblem("wrong_type", f"history[{i}]", f"history[{i}] is {short(pair)}, expected a "
                             "[prompt, answer] pair")
        turns.append(Message("user", _string(pair[0], f"history[{i}][0]", f"history[{i}][0]")))
        turns.append(Message("assistant", _string(pair[1], f"history[{i}][1]", f"history[{i}][1]")))
    return turns


def alpaca_turns(fields: dict[str, Any], alpaca_input: Callable[[str | None], str | None]) -> list[Message]:
    """instruction + input (or Dolly's context) -> output (or response), after `history` and `system`."""
    prompt = text_field(fields, "instruction")
    extras = [alpaca_input(text_field(fields, key, required=False)) for key in ("input", "context")]
    prompt = "\n\n".join([prompt, *(extra for extra in extras if extra)])
    answer = text_field(fields, "output" if "output" in fields or "response" not in fields else "response")
    return [*_history(fields), Message("user", prompt), Message("assistant", answer)]


def row_messages(fmt: str, fields: dict[str, Any], fixups: Counter,
                 alpaca_input: Callable[[str | None], str | None]) -> list[Message]:
    """The turns of one SFT row in format `fmt` (a RowProblem when they cannot be read)."""
    if fmt == "messages":
        return openai_turns(fields, "messages", fixups)
    if fmt == "sharegpt":
        return sharegpt_turns(fields, "conversations")
    if fmt == "text":
        text_field(fields, "text")
        raise RowProblem("plain_text_unsupported", "text", PLAIN_TEXT)
    if fmt == "alpaca":
        turns = alpaca_turns(fields, alpaca_input)
    else:
        prompt = text_field(fields, "prompt")
        answer = text_field(fields, "response" if "response" in fields and "completion" not in fields else "completion")
        turns = [Message("user", prompt), Message("assistant", answer)]
    system = text_field(fields, "system", required=False)
    return [Message("system", system), *turns] if system else turns


def media_problem(fields: dict[str, Any]) -> RowProblem | None:
    """A row carrying images, audio or video: unsupported, since its text refers to inputs the model never sees."""
    for column in MEDIA_COLUMNS:
        if fields.get(column) not in (None, "", []):
            return RowProblem("multimodal_unsupported", column, f"the row holds {column!r} "
                              f"({short(fields[column])}); tunesmith trains on text only, and the text alone would "
                              "refer to media the model never sees", kind=f"{column} column")
    return None


def media_token_problem(messages: list[Message]) -> RowProblem | None:
    """An `<image>`-style placeholder in the text (LLaMA-Factory's multimodal rows) with no image to fill it."""
    for i, message in enumerate(messages):
        found = MEDIA_TOKEN.search(message.content)
        if found:
            field = f"messages[{i}].content"
            return RowProblem("multimodal_unsupported", field, f"{field} holds the placeholder {found.group()!r} for "
                              f"an {found.group(1)} input; tunesmith trains on text only",
                              kind=f"{found.group()} token")
    return None
