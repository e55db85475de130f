"""Preference rows (prompt, chosen, rejected) and KTO rows (prompt, completion, label) read into Examples.

The shapes are the documented ones: TRL's preference and unpaired-preference formats, plain or conversational,
with an explicit or an implicit prompt (https://huggingface.co/docs/trl/dataset_formats), Anthropic HH-RLHF
transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ..."), and LLaMA-Factory's ShareGPT ranking format. An implicit
prompt is the shared first turns of two conversations or, for plain strings, their shared leading words (as TRL's
`maybe_extract_prompt` does, cut at a word boundary). `validate`
calls `preference_example` for these formats; the row then carries the prompt plus the chosen answer in
`messages` and the rejected answer in `rejected`, grouped by its prompt so `split` keeps a prompt on one side.
Such a card records `task: preference` (or `kto`); training on it comes later, so `train` refuses it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from tunesmith.config import preview
from tunesmith.curate.formats import RowProblem, media_problem, openai_turns, sharegpt_turns, text_field
from tunesmith.curate.record import Example, Message
from tunesmith.errors import UsageError

if TYPE_CHECKING:
    from tunesmith.artifacts import SourceRecord

PREFERENCE_FORMATS = ("preference", "preference_sharegpt", "kto")
# the keys that identify each format, most specific first; sources.py checks these before the SFT formats
PREFERENCE_KEYS: list[tuple[str, set[str]]] = [
    ("preference_sharegpt", {"conversations", "chosen", "rejected"}),
    ("preference", {"prompt", "chosen", "rejected"}),
    ("preference", {"chosen", "rejected"}),  # implicit prompt: whole conversations sharing their prompt turns
    ("kto", {"prompt", "completion", "label"}),
]
TASKS = {"preference": "preference", "preference_sharegpt": "preference", "kto": "kto"}
# the roles an answer may hold: an assistant turn, and the tool calls and results of an agentic answer
ANSWER_ROLES = ("assistant", "tool")
# an HH-RLHF transcript: turns introduced by "\n\nHuman:" and "\n\nAssistant:" (the first may start the text)
_TRANSCRIPT_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
_LABEL_WORDS = {"true": True, "false": False}
_LABEL_NUMBERS = {"1": True, "0": False}  # 1/0 labels (JSON ints, CSV cells) as many KTO exports write them


def task_of(fmt: str) -> str:
    """The card task rows of this input format make: sft, preference or kto."""
    return TASKS.get(fmt, "sft")


def card_task(sources: list[SourceRecord]) -> str:
    """The one task of a card's rows, from its sources' formats; a mix of tasks is refused naming two sources."""
    first: dict[str, SourceRecord] = {}
    for source in sources:
        first.setdefault(task_of(source.format), source)
    if len(first) > 1:
        (task_a, a), (task_b, b) = list(first.items())[:2]
        raise UsageError(f"sources {a.path} ({task_a}, format {a.format}) and {b.path} ({task_b}, format "
                         f"{b.format}) hold different kinds of rows; a dataset card holds one task: curate them "
                         "as separate datasets")
    return next(iter(first), "sft")


def task_verdict(verdict: dict[str, Any], task: str) -> dict[str, Any]:
    """The fitness verdict of a preference or KTO card, saying that `train` cannot use such a card yet."""
    if task == "sft":
        return verdict
    training = "DPO" if task == "preference" else "KTO"
    note = (f" (This is a {task} card, for {training} training, which tunesmith does not do yet: `tunesmith train` "
            "refuses it.)")
    return verdict | {"task": task, "sentence": verdict.get("sentence", "") + note}


def preference_example(example: Example, fmt: str, fields: dict[str, Any], fixups: Counter) -> Example:
    """The row as prompt + chosen `messages`, `rejected` turns and KTO `label`, grouped by its prompt.

    Raises RowProblem(reason, field, detail) for a row that is not a usable preference pair.
    """
    media = media_problem(fields)
    if media is not None:
        raise media
    if fmt == "preference_sharegpt":  # sharegpt_turns puts the top-level `system` first itself
        prompt, chosen, rejected = _sharegpt_pair(fields)
        label = None
    elif fmt == "kto":
        prompt, chosen = _system(fields) + _prompt(fields, fixups), _answer(fields, "completion", fixups)
        rejected, label = [], _label(fields.get("label"), fixups)
    else:
        prompt, chosen, rejected = _pair(fields, fixups)
        prompt, label = _system(fields) + prompt, None
    _check(prompt, chosen, rejected, fmt)
    if fmt == "preference" and fields.get("prompt") is None:  # counted once the row is known to be usable
        fixups["prompt_from_shared_text" if _plain_texts(fields) else "prompt_from_shared_turns"] += 1
    return example.replace(messages=tuple(prompt + chosen), rejected=tuple(rejected), label=label,
                           group=prompt_group(prompt))


def prompt_group(prompt: list[Message]) -> str:
    """A stable key of the prompt turns (role and stripped text): rows sharing a prompt share a split."""
    text = "\x1f".join(f"{m.role}\x1e{m.content.strip()}" for m in prompt)
    return "prompt:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _pair(fields: dict[str, Any], fixups: Counter) -> tuple[list[Message], list[Message], list[Message]]:
    """TRL preference rows: an explicit prompt, or whole conversations (or texts) whose shared start is the prompt."""
    if _plain_texts(fields):
        return _split_text(fields["chosen"], fields["rejected"])
    chosen, rejected = _answer(fields, "chosen", fixups), _answer(fields, "rejected", fixups)
    if fields.get("prompt") is None:
        return _split_shared(chosen, rejected)
    prompt = _prompt(fields, fixups)
    if not _is_whole_conversation(chosen):
        return prompt, chosen, rejected
    # chosen and rejected repeat the prompt (UltraFeedback-binarized style): their shared turns must be it
    shared, chosen, rejected = _split_shared(chosen, rejected)
    if _last_user(shared) != _last_user(prompt):
        raise RowProblem("prompt_mismatch", "prompt", f"field 'prompt' ({preview(_last_user(prompt), 60)}) is not "
                         f"the last user turn that chosen and rejected share ({preview(_last_user(shared), 60)})")
    return shared, chosen, rejected


def _plain_texts(fields: dict[str, Any]) -> bool:
    """No prompt, and chosen and rejected are plain strings that are not HH transcripts: TRL's implicit text prompt."""
    chosen, rejected = fields.get("chosen"), fields.get("rejected")
    return (fields.get("prompt") is None and isinstance(chosen, str) and isinstance(rejected, str)
            and _transcript(chosen) is None)


def _split_text(chosen: str, rejected: str) -> tuple[list[Message], list[Message], list[Message]]:
    """(prompt, chosen, rejected) from two texts: their longest shared start, cut where no word is split, is the
    user prompt; the rests (with their leading space, as in TRL's " blue.") are the answers."""
    if chosen.strip() == rejected.strip():
        raise RowProblem("chosen_equals_rejected", "rejected", "chosen and rejected are the same text, so the pair "
                         f"prefers nothing: {preview(chosen, 80)}")
    cut = len(os.path.commonprefix([chosen, rejected]))
    while cut > 0 and not (_boundary(chosen, cut) and _boundary(rejected, cut)):
        cut -= 1
    prompt = chosen[:cut].rstrip()
    if not prompt.strip():
        raise RowProblem("no_shared_prompt", "rejected", "the row has no 'prompt' and chosen and rejected share no "
                         f"leading words ({preview(chosen, 40)} vs {preview(rejected, 40)}), so the prompt is unknown; "
                         "give a 'prompt' column (or map one with `columns:`)")
    for key, text in (("chosen", chosen), ("rejected", rejected)):
        if not text[len(prompt):].strip():
            raise RowProblem("empty_answer", key, f"the row has no 'prompt', and all of {key} ({preview(text, 60)}) is "
                             "text it shares with the other answer, so taking the shared text as the prompt leaves "
                             f"{key} empty; give a 'prompt' column")
    return [Message("user", prompt)], [Message("assistant", chosen[len(prompt):])], [
        Message("assistant", rejected[len(prompt):])]


def _boundary(text: str, i: int) -> bool:
    """Whether a cut before text[i] splits no word (letters or digits on both sides would be one word cut in two)."""
    return i == 0 or i >= len(text) or not (text[i - 1].isalnum() and text[i].isalnum())


def _sharegpt_pair(fields: dict[str, Any]) -> tuple[list[Message], list[Message], list[Message]]:
    """LLaMA-Factory ranking rows: `conversations` are the prompt turns, chosen and rejected one turn each."""
    prompt = sharegpt_turns(fields, "conversations")
    answers = []
    for key in ("chosen", "rejected"):
        value = fields.get(key)
        # one turn object, as LLaMA-Factory documents it; a list of turns is read the same way
        turns = sharegpt_turns({key: [value] if isinstance(value, dict) else value}, key)
        answers.append(turns)
    return prompt, answers[0], answers[1]


def _prompt(fields: dict[str, Any], fixups: Counter) -> list[Message]:
    """`prompt` as turns: a plain string is one user turn, a list holds conversational messages."""
    if isinstance(fields.get("prompt"), list):
        return openai_turns(fields, "prompt", fixups)
    return [Message("user", text_field(fields, "prompt"))]


def _answer(fields: dict[str, Any], key: str, fixups: Counter) -> list[Message]:
    """An answer as turns: a plain string is one assistant turn (or an HH transcript), a list holds messages."""
    if isinstance(fields.get(key), list):
        return openai_turns(fields, key, fixups)
    text = text_field(fields, key)
    if fields.get("prompt") is None:  # no prompt column: the text may be a whole Human/Assistant transcript
        turns = _transcript(text)
        if turns is not None:
            return turns
    return [Message("assistant", text)]


def _transcript(text: str) -> list[Message] | None:
    """The turns of an HH-RLHF style transcript, or None when the text is not one."""
    parts = _TRANSCRIPT_TURN.split(text)
    if len(parts) < 5 or parts[0].strip():  # text before the first marker, or fewer than two turns
        return None
    roles = ["user" if who == "Human" else "assistant" for who in parts[1::2]]
    return [Message(role, content) for role, content in zip(roles, parts[2::2])]


def _is_whole_conversation(turns: list[Message]) -> bool:
    return any(m.role not in ANSWER_ROLES for m in turns)


def _split_shared(chosen: list[Message], rejected: list[Message]) -> tuple[list[Message], ...]:
    """(prompt, chosen answer, rejected answer) from two conversations that share their first turns.

    The prompt ends at the last non-answer turn both share, so each answer starts with the assistant's reply.
    """
    if not _is_whole_conversation(chosen):
        raise RowProblem("no_prompt", "prompt", "the row has no 'prompt' and chosen holds only an answer "
                         f"({_roles(chosen)}); add a prompt column (or map one with `columns:`)")
    same = 0
    while same < min(len(chosen), len(rejected)) and _same(chosen[same], rejected[same]):
        same += 1
    cut = max((i + 1 for i in range(same) if chosen[i].role not in ANSWER_ROLES), default=0)
    if cut == 0:
        raise RowProblem("no_shared_prompt", "rejected", "chosen and rejected share no prompt turn (their first "
                         f"turns differ: {_shown(chosen[:1])} vs {_shown(rejected[:1])}), so the prompt is unknown; "
                         "give a 'prompt' column")
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _same(a: Message, b: Message) -> bool:
    return _plain(a) == _plain(b)


def _last_user(turns: list[Message]) -> str:
    return next((m.content.strip() for m in reversed(turns) if m.role == "user"), "")


def _system(fields: dict[str, Any]) -> list[Message]:
    """A top-level `system` string (ShareGPT, some DPO exports) as the first turn."""
    system = text_field(fields, "system", required=False)
    return [Message("system", system)] if system and system.strip() else []


def _label(value: Any, fixups: Counter) -> bool:
    """KTO's label: a JSON boolean; the words true/false and the numbers 1/0 (JSON ints or CSV cells) are read as
    one and counted as a fix-up."""
    if isinstance(value, bool):
        return value
    word = str(value) if type(value) is int else value.strip().lower() if isinstance(value, str) else None
    if word in _LABEL_WORDS:
        fixups["label_from_text"] += 1
        return _LABEL_WORDS[word]
    if word in _LABEL_NUMBERS:
        fixups["label_from_number"] += 1
        return _LABEL_NUMBERS[word]
    said = "missing" if value is None else f"{preview(value, 40)} ({type(value).__name__})"
    raise RowProblem("bad_label", "label", f"field 'label' is {said}; KTO labels are true (a desirable answer) "
                     "or false (an undesirable one), written as a JSON boolean, true/false or 1/0")


def _check(prompt: list[Message], chosen: list[Message], rejected: list[Message], fmt: str) -> None:
    """A usable pair: a prompt ending in a user turn, answers of assistant turns only, chosen != rejected."""
    answer_key = "completion" if fmt == "kto" else "chosen"
    if not any(m.content.strip() for m in prompt):
        raise RowProblem("empty_prompt", "prompt", "the prompt is empty")
    if prompt[-1].role not in ("user", "tool"):
        raise RowProblem("prompt_not_user", "prompt", f"the prompt ends with a {prompt[-1].role} turn; the answers "
                         "must reply to a user turn")
    named = [(answer_key, chosen)] + ([("rejected", rejected)] if fmt != "kto" else [])
    for key, turns in named:
        if not any(m.content.strip() or m.tool_calls for m in turns):
            raise RowProblem("empty_answer", key, f"the {key} answer is empty")
        bad = next((i for i, m in enumerate(turns) if m.role not in ANSWER_ROLES), None)
        if bad is not None or turns[0].role != "assistant":
            i = bad if bad is not None else 0
            raise RowProblem("answer_roles", f"{key}[{i}].role", f"{key}[{i}] is a {turns[i].role} turn; an "
                             f"answer is the assistant's reply ({_roles(turns)})")
    if fmt != "kto" and [_plain(m) for m in chosen] == [_plain(m) for m in rejected]:
        raise RowProblem("chosen_equals_rejected", "rejected", "chosen and rejected are the same answer, so the pair "
                         f"prefers nothing: {_shown(chosen)}")


def _plain(message: Message) -> tuple[str, str, str]:
    """What a turn says, for comparing two turns: role, stripped text and any tool calls."""
    return message.role, message.content.strip(), repr(message.tool_calls)


def _roles(turns: list[Message]) -> str:
    return "roles: " + (", ".join(m.role for m in turns[:6]) or "none")


def _shown(turns: list[Message]) -> str:
    return preview(" / ".join(f"{m.role}: {m.content}" for m in turns), 80) if turns else "nothing"
