"""How a row of each input format becomes chat turns, for the `validate` stage.

alpaca (with `history` and `system`; `input` or Dolly's `context`, `output` or `response`), prompt/completion,
OpenAI messages (content parts, `tool` turns, assistant `tool_calls`), ShareGPT (top-level `system`,
`function_call`/`observation` turns, or OpenAI role/content turns) and plain `text`; the turn readers are in
`turns.py`. `read_columns` names what a row's format reads, so validate can list every other column as ignored.
`preference.py` reuses `RowProblem` and the turn readers; this module imports no other stage, so both can import
it without a cycle.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from tunesmith.curate.record import Message
from tunesmith.curate.turns import (
    Origin,
    RowProblem,
    as_string,
    openai_turns,
    sharegpt_turns,
    short,
    text_field,
)

__all__ = ["Origin", "RowProblem", "openai_turns", "sharegpt_turns", "short", "text_field"]  # for preference.py

COLUMNS = {
    "messages": {"messages", "tools"},
    "sharegpt": {"conversations", "system", "tools"},
    "alpaca": {"instruction", "input", "context", "output", "response", "system", "history"},
    "prompt_completion": {"prompt", "completion", "response", "system"},
    "text": {"text"},
}
MEDIA_COLUMNS = ("images", "image", "audios", "audio", "videos", "video")
# LLaMA-Factory's media placeholder: `<image>` opening a turn or a line ("<image>What is this?"), not `<video>` in
# a sentence about HTML or `std::vector<image>`. Without media in the row it is only ever a review item.
MEDIA_TOKEN = re.compile(r"^[ \t]*<(image|audio|video)>", re.MULTILINE)
_CLOSING_TAG = re.compile(r"</(?:image|audio|video)\s*>")
PLAIN_TEXT = ("plain text rows (a `text` column) are language-modelling data, not chat SFT data: tunesmith trains "
              "on user/assistant turns; convert them to prompt/completion or messages (if the text holds a chat in a "
              "markup such as '### Human:', split it into turns)")
# the keys of a turn the readers take; any other (OpenAI's `weight`, `reasoning_content`, ...) is listed as ignored
OPENAI_TURN_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name"})
SHAREGPT_TURN_KEYS = frozenset({"from", "value"})
# the turn lists of each format, and whether they are ShareGPT lists (from/value, or role/content read as OpenAI)
TURN_LISTS = {"messages": {"messages": False}, "sharegpt": {"conversations": True},
              "preference": {"prompt": False, "chosen": False, "rejected": False},
              "kto": {"prompt": False, "completion": False},
              "preference_sharegpt": {"conversations": True, "chosen": True, "rejected": True}}
WEIGHTED_FORMATS = ("messages", "sharegpt")  # SFT rows are trained; a preference card is not trained at all yet
_KEY_CAP = 20  # unread keys listed per row: a row of 100,000 odd keys must not fill the findings


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


def _history(fields: dict[str, Any], origins: list[Origin]) -> list[Message]:
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
        for j, role in enumerate(("user", "assistant")):
            at = f"history[{i}][{j}]"
            turns.append(Message(role, as_string(pair[j], at, at)))
            origins.append(Origin(at, at, at))
    return turns


def alpaca_turns(fields: dict[str, Any], alpaca_input: Callable[[str | None], str | None],
                 origins: list[Origin] | None = None) -> list[Message]:
    """instruction + input (or Dolly's context) -> output (or response), after `history` and `system`."""
    origins = [] if origins is None else origins
    prompt = text_field(fields, "instruction")
    extras = [alpaca_input(text_field(fields, key, required=False)) for key in ("input", "context")]
    prompt = "\n\n".join([prompt, *(extra for extra in extras if extra)])
    answer_key = _answer_key("alpaca", fields)
    answer = text_field(fields, answer_key)
    history = _history(fields, origins)
    origins += [Origin("instruction", "instruction", "instruction"), Origin(answer_key, answer_key, answer_key)]
    return [*history, Message("user", prompt), Message("assistant", answer)]


def _answer_key(fmt: str, fields: dict[str, Any]) -> str:
    """The one answer column a row reads: alpaca's `output` before `response`, prompt/completion's `completion`
    before `response`; the other one, when a row has both, is listed as ignored."""
    first = "output" if fmt == "alpaca" else "completion"
    return first if first in fields or "response" not in fields else "response"


def read_columns(fmt: str, fields: dict[str, Any]) -> set[str]:
    """The columns a row of this SFT format is read from (empty for other formats)."""
    used = COLUMNS.get(fmt, set())
    if fmt in ("alpaca", "prompt_completion"):
        unread = {"output", "completion", "response"} - {_answer_key(fmt, fields)}
        return used - unread
    return used


def row_messages(fmt: str, fields: dict[str, Any], fixups: Counter,
                 alpaca_input: Callable[[str | None], str | None],
                 origins: list[Origin] | None = None) -> list[Message]:
    """The turns of one SFT row in format `fmt` (a RowProblem when they cannot be read); `origins` gets
    where each turn came from."""
    origins = [] if origins is None else origins
    if fmt == "messages":
        return openai_turns(fields, "messages", fixups, origins)
    if fmt == "sharegpt":
        return sharegpt_turns(fields, "conversations", fixups, origins)
    if fmt == "text":
        text_field(fields, "text")
        raise RowProblem("plain_text_unsupported", "text", PLAIN_TEXT)
    system = text_field(fields, "system", required=False)
    if system:
        origins.append(Origin("system", "system", "system"))
    if fmt == "alpaca":
        turns = alpaca_turns(fields, alpaca_input, origins)
    else:
        answer_key = _answer_key(fmt, fields)
        turns = [Message("user", text_field(fields, "prompt")), Message("assistant", text_field(fields, answer_key))]
        origins += [Origin("prompt", "prompt", "prompt"), Origin(answer_key, answer_key, answer_key)]
    return [Message("system", system), *turns] if system else turns


def media_problem(fields: dict[str, Any]) -> RowProblem | None:
    """A row carrying images, audio or video: unsupported, since its text refers to inputs the model never sees."""
    for column in MEDIA_COLUMNS:
        if fields.get(column) not in (None, "", []):
            return RowProblem("multimodal_unsupported", column, f"the row holds {column!r} "
                              f"({short(fields[column])}); tunesmith trains on text only, and the text alone would "
                              "refer to media the model never sees", kind=f"{column} column")
    return None


def media_token(text: str) -> str | None:
    """The kind (image, audio, video) of an `<image>`-style placeholder opening a turn or a line of `text`, if any.

    Only a hint for a person: a row that really carries media is rejected by `media_problem` or its content parts,
    so a token with no media beside it is either text (HTML, C++) or media lost on export."""
    if "<" not in text or _CLOSING_TAG.search(text):  # `</audio>` in the text: it is HTML, not a placeholder
        return None
    found = MEDIA_TOKEN.search(text)
    return found.group(1) if found else None


def _dict_turns(fmt: str, fields: dict[str, Any]) -> Iterator[tuple[str, int | None, dict, bool]]:
    """(list key, index or None, turn, is a ShareGPT list) for every object turn of the row's turn lists."""
    for key, sharegpt in TURN_LISTS.get(fmt, {}).items():
        value = fields.get(key)
        if isinstance(value, dict):  # LLaMA-Factory's ranking rows hold chosen/rejected as one turn object
            yield key, None, value, sharegpt
        elif isinstance(value, list):
            for i, turn in enumerate(value):
                if isinstance(turn, dict):
                    yield key, i, turn, sharegpt


def unread_turn_keys(fmt: str, fields: dict[str, Any]) -> list[str]:
    """The per-turn keys no reader takes, as `messages[].weight`, in the order first seen (so the findings are the
    same on every run): listed as ignored, like unread columns."""
    found: dict[str, None] = {}
    for key, _, turn, sharegpt in _dict_turns(fmt, fields):
        known = SHAREGPT_TURN_KEYS if sharegpt and "from" in turn else OPENAI_TURN_KEYS
        for name in turn:
            if name not in known and len(found) < _KEY_CAP:
                found[f"{key}[].{str(name)[:60]}"] = None
    return list(found)


def turn_weight_problem(fmt: str, fields: dict[str, Any]) -> RowProblem | None:
    """A turn weighted other than 1 (OpenAI's and axolotl's `weight: 0`, "do not train on this turn").

    Training cannot honour turn weights yet, so keeping the row would silently train the turn it asked to skip."""
    if fmt not in WEIGHTED_FORMATS:
        return None
    for key, i, turn, _ in _dict_turns(fmt, fields):
        weight = turn.get("weight")
        if weight is None or (isinstance(weight, (int, float)) and weight == 1):
            continue
        at = f"{key}[{i}].weight"
        return RowProblem("turn_weight_unsupported", at, f"{at} is {short(weight)}: the row asks not to train on "
                          "that turn, and tunesmith's training cannot honour turn weights yet (it would learn the "
                          "turn); cut the conversation before that turn, or set its weight to 1 to train on it")
    return None
