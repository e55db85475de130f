"""Render conversations with a tokenizer's chat template and locate the trainable (assistant) characters.

Shared by curation's token statistics, training's loss masks and evaluation's response perplexity, so all
three count the same tokens.
A template is rendered once per role sequence with sentinel contents; each row is then assembled by
string joins, which is exact for templates that insert contents verbatim (checked on the first row of
each role sequence; otherwise that sequence falls back to rendering every row).
Data text never becomes a special token: a row whose contents hold a special token's text is encoded piece by
piece, its contents with special-token matching off, so only the template's own markers are special.
Rows with tools (a `tools` list, assistant `tool_calls`, `tool` turns) take a slower path of their own: the
template renders them (`tools=`) when it knows tools, else the calls and results are written into the turns as JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label value the loss skips (transformers' convention)
_SENTINEL = "\ue000{}\ue001"


Span = tuple[int, int]


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def end_of_turn(tokenizer) -> str:
    """The text that closes an assistant turn and must be trained, so the model learns to stop."""
    return tokenizer.eos_token or ""


def _frame(tokenizer, roles: tuple[str, ...]) -> list[str] | None:
    """Template pieces around the contents for this role sequence, or None if contents are not verbatim."""
    text = _render(tokenizer, [{"role": r, "content": _SENTINEL.format(i)} for i, r in enumerate(roles)])
    pieces, rest = [], text
    for i in range(len(roles)):
        head, sep, rest = rest.partition(_SENTINEL.format(i))
        if not sep:
            return None
        pieces.append(head)
    pieces.append(rest)
    return pieces


def frame_for(tokenizer, conversation: Sequence[tuple[str, str]]) -> list[str] | None:
    """Template pieces for this conversation's role sequence, if they reproduce its real rendering."""
    roles = tuple(r for r, _ in conversation)
    pieces = _frame(tokenizer, roles)
    if pieces is None:
        return None
    real = _render(tokenizer, [{"role": r, "content": c} for r, c in conversation])
    joined = _spans_from_pieces(pieces, roles, [c for _, c in conversation], end_of_turn(tokenizer))[0]
    return pieces if joined == real else None


def _spans_from_pieces(pieces: list[str], roles, contents, eot: str) -> tuple[str, list[Span], list[Span]]:
    """The joined text, the trained spans (assistant content + end of turn) and every content's span."""
    parts, spans, where, pos = [], [], [], 0
    for i, (role, content) in enumerate(zip(roles, contents)):
        parts.append(pieces[i])
        pos += len(pieces[i])
        start = pos
        parts.append(content)
        pos += len(content)
        where.append((start, pos))
        if role == "assistant":
            after = pieces[i + 1]
            cut = after.find(eot) if eot else -1
            spans.append((start, pos + (cut + len(eot) if cut >= 0 else 0)))
    parts.append(pieces[-1])
    return "".join(parts), spans, where


def _spans_by_search(text: str, roles, contents, eot: str) -> tuple[list[Span], list[Span]]:
    spans, where, cursor = [], [], 0
    for role, content in zip(roles, contents):
        start = text.find(content, cursor)
        if start < 0:
            continue
        end = start + len(content)
        cursor = end
        where.append((start, end))
        if role == "assistant":
            cut = text.find(eot, end) if eot else -1
            spans.append((start, cut + len(eot) if cut >= 0 and text[end:cut].strip() == "" else end))
    return spans, where


def _render_rows(tokenizer, conversations: Sequence[Sequence[tuple[str, str]]]):
    """Rendered texts, their trained spans and their content spans."""
    eot = end_of_turn(tokenizer)
    frames: dict[tuple[str, ...], list[str] | None] = {}
    texts, spans, contents_at = [], [], []
    for conversation in conversations:
        roles = tuple(r for r, _ in conversation)
        contents = [c for _, c in conversation]
        if roles not in frames:
            frames[roles] = frame_for(tokenizer, conversation)
        pieces = frames[roles]
        if pieces is not None:
            text, row_spans, where = _spans_from_pieces(pieces, roles, contents, eot)
        else:
            text = _render(tokenizer, [{"role": r, "content": c} for r, c in conversation])
            row_spans, where = _spans_by_search(text, roles, contents, eot)
        texts.append(text)
        spans.append(row_spans)
        contents_at.append(where)
    return texts, spans, contents_at


def render_with_spans(
    tokenizer, conversations: Sequence[Sequence[tuple[str, str]]]
) -> tuple[list[str], list[list[Span]]]:
    """Rendered texts and, per text, the character spans of assistant turns (content + end of turn)."""
    texts, spans, _ = _render_rows(tokenizer, conversations)
    return texts, spans


def special_token_pattern(tokenizer) -> re.Pattern | None:
    """Matches the text of any added or special token (the strings the tokenizer turns into one id on sight)."""
    strings = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.content}
    strings.update(t for t in getattr(tokenizer, "all_special_tokens", []) if t)
    return re.compile("|".join(re.escape(s) for s in sorted(strings, key=len, reverse=True))) if strings else None


def _segments(length: int, contents: list[Span]) -> list[tuple[int, int, bool]]:
    """(start, end, is_content) pieces covering [0, length) in order."""
    segments, pos = [], 0
    for lo, hi in sorted(contents):
        lo = max(lo, pos)
        if lo > pos:
            segments.append((pos, lo, False))
        if hi > lo:
            segments.append((lo, hi, True))
        pos = max(pos, hi)
    if pos < length:
        segments.append((pos, length, False))
    return segments


def _encode_guarded(backend, text: str, contents: list[Span]) -> tuple[list[int], list[int]]:
    """Ids and token start offsets with special-token matching off inside the contents and on elsewhere."""
    ids, starts = [], []
    previous = backend.encode_special_tokens
    try:
        for lo, hi, literal in _segments(len(text), contents):
            backend.encode_special_tokens = literal
            encoding = backend.encode(text[lo:hi], add_special_tokens=False)
            ids.extend(encoding.ids)
            starts.extend(lo + start for start, _ in encoding.offsets)
    finally:
        backend.encode_special_tokens = previous
    return ids, starts


def encode_texts(tokenizer, texts: Sequence[str], contents: Sequence[list[Span]]) -> list[tuple[list[int], list[int]]]:
    """Ids and token start offsets of rendered texts; the data spans in `contents` never yield a special token."""
    backend = tokenizer.backend_tokenizer
    special = special_token_pattern(tokenizer)
    encoded = []
    for text, where, encoding in zip(texts, contents, backend.encode_batch(list(texts), add_special_tokens=False)):
        if special is not None and any(special.search(text, lo, hi) for lo, hi in where):
            encoded.append(_encode_guarded(backend, text, where))
        else:
            encoded.append((encoding.ids, [start for start, _ in encoding.offsets]))
    return encoded


def _encode_with_masks(tokenizer, texts, contents, spans) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encode rendered rows; a token is trained when it starts inside one of its row's assistant spans."""
    encoded = []
    for (ids, starts), row_spans in zip(encode_texts(tokenizer, texts, contents), spans):
        starts_at = np.asarray(starts, dtype=np.int64)
        trained = np.zeros(len(ids), dtype=bool)
        for lo, hi in row_spans:
            trained |= (starts_at >= lo) & (starts_at < hi)
        encoded.append((np.asarray(ids, dtype=np.int64), trained))
    return encoded


def encode_conversations(tokenizer, conversations: Sequence[Sequence[tuple[str, str]]]):
    """Per conversation: all its token ids and the mask of trained (assistant) tokens, untruncated.

    Training, evaluation and curation's token statistics all count through this, so they agree.
    """
    texts, spans, contents = _render_rows(tokenizer, conversations)
    return _encode_with_masks(tokenizer, texts, contents, spans)


def encode_prompts(tokenizer, conversations: Sequence[Sequence[dict]]) -> list[list[int]]:
    """Token ids of each conversation rendered with the generation prompt (only the template holds specials)."""
    texts, contents = [], []
    for conversation in conversations:
        messages = list(conversation)
        text = _render(tokenizer, messages, generation_prompt=True)
        texts.append(text)
        contents.append(_spans_by_search(text, [m["role"] for m in messages], [m["content"] for m in messages], "")[1])
    return [list(ids) for ids, _ in encode_texts(tokenizer, texts, contents)]


def encode_rows(tokenizer, rows: list[dict], max_seq_len: int) -> list[dict]:
    """input_ids and labels per row, truncated at max_seq_len; labels are IGNORE_INDEX outside assistant turns."""
    tool_rows = [i for i, row in enumerate(rows) if has_tools(row)]
    plain = sorted(set(range(len(rows))) - set(tool_rows)) if tool_rows else range(len(rows))
    conversations = [[(m["role"], m["content"]) for m in rows[i]["messages"]] for i in plain]
    pairs: list = [None] * len(rows)
    for i, pair in zip(plain, encode_conversations(tokenizer, conversations)):
        pairs[i] = pair
    for i, pair in zip(tool_rows, encode_tool_rows(tokenizer, [rows[i] for i in tool_rows])):
        pairs[i] = pair
    encoded = []
    for row, (ids, trained) in zip(rows, pairs):
        ids, trained = ids[:max_seq_len], trained[:max_seq_len]
        labels = np.where(trained, ids, IGNORE_INDEX)
        encoded.append({"id": row["id"], "input_ids": ids.tolist(), "labels": labels.tolist()})
    return encoded


# --- rows with tools -----------------------------------------------------------------------------------------

_TOOLS_AS_TEXT_SAID: set[str] = set()  # templates already named in the log (said once per template)


def has_tools(row: dict) -> bool:
    """Whether a split row uses tools: a `tools` list, an assistant turn's tool calls, or a tool turn."""
    return bool(row.get("tools")) or any(m.get("tool_calls") or m.get("role") == "tool" for m in row["messages"])


def template_supports_tools(tokenizer) -> bool:
    """Whether the chat template renders tool definitions and tool calls (it reads `tools` and `tool_calls`)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    text = " ".join(template.values()) if isinstance(template, dict) else str(template)
    return "tools" in text and "tool_calls" in text


def _template_message(message: dict) -> dict:
    """A turn for apply_chat_template: tool-call arguments as a dict (what HF templates expect), JSON text parsed."""
    out = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls", "tool_call_id", "name")}
    if message.get("tool_calls"):
        out["tool_calls"] = [_with_dict_arguments(call) for call in message["tool_calls"]]
    return out


def _with_dict_arguments(call: dict) -> dict:
    function = dict(call.get("function") or {})
    if isinstance(function.get("arguments"), str):
        try:
            parsed = json.loads(function["arguments"])
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            function["arguments"] = parsed
    return {**call, "function": function}


def tools_as_text(messages: list[dict], tools) -> list[dict]:
    """Plain turns for a template without tool support: tool definitions go into the system turn, tool calls
    into the assistant's text, and each run of tool results into one user turn, all as JSON (never dropped)."""
    out: list[dict] = []
    for message in messages:
        if message.get("role") == "tool":
            result = {"tool_result": message["content"], **({"name": message["name"]} if message.get("name") else {})}
            if out and out[-1].get("tool_results") is not None:
                out[-1]["tool_results"].append(result)
            else:
                out.append({"role": "user", "tool_results": [result]})
            continue
        content = message["content"]
        if message.get("tool_calls"):
            calls = json.dumps({"tool_calls": [c.get("function", c) for c in message["tool_calls"]]}, ensure_ascii=False)
            content = f"{content}\n{calls}" if content else calls
        out.append({"role": message["role"], "content": content})
    for turn in out:
        if "tool_results" in turn:
            turn["content"] = json.dumps(turn.pop("tool_results"), ensure_ascii=False)
    if tools:
        listed = "Available tools: " + json.dumps(tools, ensure_ascii=False)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{listed}"}
        else:
            out.insert(0, {"role": "system", "content": listed})
    return out


def _tool_conversation(tokenizer, row: dict) -> tuple[list[dict], list | None]:
    """The turns and tools to render: native when the template supports tools, else JSON text (said once)."""
    tools = row.get("tools") or None
    if template_supports_tools(tokenizer):
        return [_template_message(m) for m in row["messages"]], tools
    name = str(getattr(tokenizer, "name_or_path", "") or "the tokenizer")
    if name not in _TOOLS_AS_TEXT_SAID:
        _TOOLS_AS_TEXT_SAID.add(name)
        log.warning("the chat template of %s does not render tools; tool definitions, calls and results are written "
                    "into the turns as JSON text", name)
    return tools_as_text(row["messages"], tools), None


def _render_tools(tokenizer, messages: list[dict], tools, generation_prompt: bool = False) -> str:
    kwargs = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt, **kwargs)


def _tool_spans(tokenizer, messages: list[dict], tools) -> tuple[str, list[Span]]:
    """The rendered row and its trained spans: each assistant turn's text as the template writes it (content
    and tool calls, up to its end of turn), found by rendering the conversation up to and after that turn."""
    eot = end_of_turn(tokenizer)
    text = _render_tools(tokenizer, messages, tools)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render_tools(tokenizer, messages[:i], tools, generation_prompt=True) if i else ""
        upto = _render_tools(tokenizer, messages[: i + 1], tools)
        if not (upto.startswith(before) and text.startswith(upto)):  # a template that rewrites earlier turns
            found = _spans_by_search(text, ["assistant"], [message["content"]], eot)[0]
            spans.extend(found)
            continue
        cut = upto.find(eot, len(before)) if eot else -1
        spans.append((len(before), cut + len(eot) if cut >= 0 else len(upto)))
    return text, spans


def encode_tool_rows(tokenizer, rows: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row with tools: all its token ids and the mask of trained (assistant) tokens, untruncated."""
    texts, spans, contents = [], [], []
    for row in rows:
        messages, tools = _tool_conversation(tokenizer, row)
        text, row_spans = _tool_spans(tokenizer, messages, tools)
        texts.append(text)
        spans.append(row_spans)
        contents.append(_spans_by_search(text, [m["role"] for m in messages], [m["content"] for m in messages], "")[1])
    return _encode_with_masks(tokenizer, texts, contents, spans)
