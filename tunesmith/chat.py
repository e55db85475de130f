"""Render conversations with a tokenizer's chat template and locate the trainable (assistant) characters.

Shared by curation's token statistics, training's loss masks and evaluation's response perplexity, so all
three count the same tokens.
A template is rendered once per role sequence with sentinel contents; each row is then assembled by
string joins, which is exact for templates that insert contents verbatim (checked on the first row of
each role sequence; otherwise that sequence falls back to rendering every row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IGNORE_INDEX = -100  # the label value the loss skips (transformers' convention)
_SENTINEL = "\ue000{}\ue001"


def _render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False)


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


def _spans_from_pieces(pieces: list[str], roles, contents, eot: str) -> tuple[str, list[tuple[int, int]]]:
    parts, spans, pos = [], [], 0
    for i, (role, content) in enumerate(zip(roles, contents)):
        parts.append(pieces[i])
        pos += len(pieces[i])
        start = pos
        parts.append(content)
        pos += len(content)
        if role == "assistant":
            after = pieces[i + 1]
            cut = after.find(eot) if eot else -1
            spans.append((start, pos + (cut + len(eot) if cut >= 0 else 0)))
    parts.append(pieces[-1])
    return "".join(parts), spans


def _spans_by_search(text: str, roles, contents, eot: str) -> list[tuple[int, int]]:
    spans, cursor = [], 0
    for role, content in zip(roles, contents):
        start = text.find(content, cursor)
        if start < 0:
            continue
        end = start + len(content)
        cursor = end
        if role == "assistant":
            cut = text.find(eot, end) if eot else -1
            spans.append((start, cut + len(eot) if cut >= 0 and text[end:cut].strip() == "" else end))
    return spans


def render_with_spans(
    tokenizer, conversations: Sequence[Sequence[tuple[str, str]]]
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Rendered texts and, per text, the character spans of assistant turns (content + end of turn)."""
    eot = end_of_turn(tokenizer)
    frames: dict[tuple[str, ...], list[str] | None] = {}
    texts, spans = [], []
    for conversation in conversations:
        roles = tuple(r for r, _ in conversation)
        contents = [c for _, c in conversation]
        if roles not in frames:
            frames[roles] = frame_for(tokenizer, conversation)
        pieces = frames[roles]
        if pieces is not None:
            text, row_spans = _spans_from_pieces(pieces, roles, contents, eot)
        else:
            text = _render(tokenizer, [{"role": r, "content": c} for r, c in conversation])
            row_spans = _spans_by_search(text, roles, contents, eot)
        texts.append(text)
        spans.append(row_spans)
    return texts, spans


def encode_rows(tokenizer, rows: list[dict], max_seq_len: int) -> list[dict]:
    """input_ids and labels per row, truncated at max_seq_len; labels are IGNORE_INDEX outside assistant turns."""
    conversations = [[(m["role"], m["content"]) for m in row["messages"]] for row in rows]
    texts, spans = render_with_spans(tokenizer, conversations)
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    encoded = []
    for row, encoding, row_spans in zip(rows, encodings, spans):
        ids = np.asarray(encoding.ids[:max_seq_len], dtype=np.int64)
        starts = np.asarray([start for start, _ in encoding.offsets[:max_seq_len]], dtype=np.int64)
        trained = np.zeros(len(ids), dtype=bool)
        for lo, hi in row_spans:
            trained |= (starts >= lo) & (starts < hi)
        labels = np.where(trained, ids, IGNORE_INDEX)
        encoded.append({"id": row["id"], "input_ids": ids.tolist(), "labels": labels.tolist()})
    return encoded
