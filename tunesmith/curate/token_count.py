"""Token counts of chat rows for `token_stats`: fast (distinct chunks counted once) and exact (full encoding).

A byte-level BPE tokenizer with GPT-2-style pre-tokenization always splits at a single space between two
non-space characters ("a b" -> "a", " b"), and at the template's special tokens, so a row's token count is
the sum of its chunks' counts when chunks are cut only there. Runs of spaces or newlines (code indentation,
blank lines) are never cut: "x  y" or "\\n    return" pre-tokenize as whole runs. pyarrow cuts and
dictionary-encodes all chunks at once; only distinct chunks go through the tokenizer. A row whose contents
meet the template where the two could merge (e.g. a content opening with blank lines after the template's
"\\n") is counted in full instead. The caller checks the fast counts against full encoding on a sample first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tunesmith.chat import encode_conversations, end_of_turn, frame_for, special_token_pattern

_CUT = "\ue000"  # marks chunk boundaries; a text that holds it is counted whole
# RE2 has no lookaround and its \s is ASCII only: "not whitespace" spelled out (Unicode White_Space, and more)
_SOLID = r"[^\s\p{Z}\x{85}\x{0b}\x{1c}-\x{1f}\x{e000}]"
_SINGLE_SPACE = f"({_SOLID}) ({_SOLID})"


class Counts(NamedTuple):
    """Per row: all tokens, trainable tokens within the limit, and the position just after the last answer's end
    of turn (0 without an answer); the answer is cut when that position is beyond the limit."""

    lengths: np.ndarray
    trainable: np.ndarray
    answer_end: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> Counts:
        return cls(*(np.zeros(n, dtype=np.int64) for _ in range(3)))

    def put(self, rows: np.ndarray, other: Counts) -> None:
        for mine, theirs in zip(self, other):
            mine[rows] = theirs

    def take(self, rows) -> Counts:
        return Counts(*(mine[rows] for mine in self))

    def differs(self, other: Counts) -> np.ndarray:
        """Per row: whether any count differs from `other`'s (same rows, same order)."""
        return np.logical_or.reduce([mine != theirs for mine, theirs in zip(self, other)])


def chunk_token_counts(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Token count of each text (no special tokens added), via distinct chunks cut at single spaces."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    source = pa.array(list(texts), type=pa.large_string())
    marked = source
    for _ in range(2):  # matches consume both neighbours, so "a b c" needs a second pass for "b c"
        marked = pc.replace_substring_regex(marked, pattern=_SINGLE_SPACE, replacement="\\1" + _CUT + "\\2")
    lists = pc.split_pattern(marked, pattern=_CUT)
    chunks = pc.list_flatten(lists)
    row_of = pc.list_parent_indices(lists).to_numpy()
    offsets = lists.offsets.to_numpy()
    first = np.zeros(len(chunks), dtype=bool)
    first[offsets[:-1][np.diff(offsets) > 0]] = True  # a text's first chunk has no space before it
    encoded = pc.dictionary_encode(chunks)
    distinct = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy()
    backend = tokenizer.backend_tokenizer
    spaced = np.zeros(len(distinct), dtype=np.int64)
    bare = np.zeros(len(distinct), dtype=np.int64)
    for counts, needed, prefix in ((spaced, np.unique(indices[~first]), " "), (bare, np.unique(indices[first]), "")):
        if len(needed):
            counts[needed] = _counts(tokenizer, [prefix + distinct[i] for i in needed])
    per_chunk = np.where(first, bare[indices], spaced[indices])
    totals = np.bincount(row_of, weights=per_chunk, minlength=len(texts)).astype(np.int64)
    for i in np.flatnonzero(pc.match_substring(source, _CUT).to_numpy(zero_copy_only=False)):
        totals[i] = len(backend.encode(texts[i], add_special_tokens=False).ids)  # its own marks would cut it
    return totals


def _separator(tokenizer) -> tuple[str, int] | None:
    """A special token that splits text exactly where it stands (no stripping of its neighbours)."""
    for token_id, token in sorted(getattr(tokenizer, "added_tokens_decoder", {}).items()):
        if token.special and token.content and token_id != tokenizer.unk_token_id and not (
                token.lstrip or token.rstrip or token.single_word):
            return token.content, token_id
    return None


def _counts(tokenizer, texts: list[str], per_string: int = 512) -> list[int]:
    """Token count of each text. Short texts go to the tokenizer packed between special tokens, hundreds to a
    string, because per-string overhead, not the text, is most of the cost of encoding 10^5 short chunks."""
    backend, separator = tokenizer.backend_tokenizer, _separator(tokenizer)
    special = special_token_pattern(tokenizer)
    if separator is None or special is None or any(special.search(t) for t in texts):
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
    text, token_id = separator
    packed = [text.join(texts[i : i + per_string]) + text for i in range(0, len(texts), per_string)]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets: tokenizers >= 0.21
    ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encode(packed, add_special_tokens=False)])
    ends = np.flatnonzero(ids == token_id)
    if len(ends) != len(texts):  # the separator did not come back once per text: count one string at a time
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
    return (np.diff(ends, prepend=-1) - 1).tolist()


def _meets_cleanly(left: str, right: str) -> bool:
    """Whether GPT-2-style pre-tokenization of left+right splits exactly between them ("" = a special token or
    the text's edge, where encoding always splits). Conservative: False when unsure."""
    if not left or not right:
        return True
    a, b = left[-1], right[0]
    if not a.isspace():
        return b.isspace()  # a letter/digit/symbol run never continues into whitespace
    if a == " " or (len(left) > 1 and left[-2].isspace()):
        return False  # " x" joins; a run of whitespace splits differently when text follows it
    return not b.isspace() or (b == " " and len(right) > 1 and not right[1].isspace())


def row_counts(pieces: list[str], roles: tuple[str, ...], content_counts: list[int], piece_counts: list[int],
               eot_counts: list[int], limit: int) -> tuple[int, int, int]:
    """(total tokens, trainable tokens within `limit`, end of the last answer) of one row from its segment counts.

    `eot_counts[i]` is the number of tokens at the start of piece i that close the previous assistant turn.
    """
    position, trainable, answer_end = 0, 0, 0
    for i, role in enumerate(roles):
        position += piece_counts[i]
        if role == "assistant":
            length = content_counts[i] + eot_counts[i + 1]
            trainable += max(min(position + length, limit) - position, 0)
            answer_end = position + length
        position += content_counts[i]
    return position + piece_counts[len(roles)], trainable, answer_end


class _Frame(NamedTuple):
    pieces: list[str]
    piece_counts: list[int]
    eot_counts: list[int]
    edges: list[tuple[str, str]]  # per piece: text before its first special token, text after its last


def _frame(tokenizer, conversation, special) -> _Frame | None:
    """Template pieces of this role sequence, their token counts, and the end-of-turn tokens opening each."""
    pieces = frame_for(tokenizer, conversation)
    if pieces is None:
        return None
    encode = tokenizer.backend_tokenizer.encode
    eot = end_of_turn(tokenizer)
    piece_counts = [len(encode(p, add_special_tokens=False).ids) if p else 0 for p in pieces]
    eot_counts = [0] * len(pieces)
    for i in range(1, len(pieces)):
        cut = pieces[i].find(eot) if eot else -1
        if conversation[i - 1][0] == "assistant" and cut >= 0:
            eot_counts[i] = len(encode(pieces[i][: cut + len(eot)], add_special_tokens=False).ids)
    edges = []
    for i, piece in enumerate(pieces):
        parts = special.split(piece) if special else [piece]
        if 0 < i < len(pieces) - 1 and len(parts) == 1 and not piece:
            return None  # two contents touch: whether they merge depends on the row; count such rows in full
        edges.append((parts[0], parts[-1]))
    return _Frame(pieces, piece_counts, eot_counts, edges)


class FastCounter:
    """Which rows can be counted from chunks (template frame verbatim, no special-token text in the data, contents
    that meet the template cleanly), and their counts."""

    def __init__(self, tokenizer, conversations: Sequence[Sequence[tuple[str, str]]]):
        self.tokenizer, self.conversations = tokenizer, conversations
        special = special_token_pattern(tokenizer)
        self.frames: dict[tuple[str, ...], _Frame | None] = {}
        self.roles = [tuple(r for r, _ in conversation) for conversation in conversations]
        self.eligible = np.zeros(len(conversations), dtype=bool)
        for i, (conversation, roles) in enumerate(zip(conversations, self.roles)):
            if roles not in self.frames:
                self.frames[roles] = _frame(tokenizer, conversation, special)
            frame = self.frames[roles]
            self.eligible[i] = frame is not None and _contents_meet_cleanly(frame.edges, conversation) and not (
                special and any(special.search(c) for _, c in conversation))

    def counts(self, rows: np.ndarray, limit: int) -> Counts:
        """Counts of the given (eligible) rows, in their order."""
        contents = [c for i in rows for _, c in self.conversations[i]]
        content_counts = chunk_token_counts(self.tokenizer, contents).tolist()
        out, cursor = Counts.zeros(len(rows)), 0
        for j, i in enumerate(rows):
            roles, frame = self.roles[i], self.frames[self.roles[i]]
            row = content_counts[cursor : cursor + len(roles)]
            cursor += len(roles)
            out.lengths[j], out.trainable[j], out.answer_end[j] = row_counts(
                frame.pieces, roles, row, frame.piece_counts, frame.eot_counts, limit)
        return out


def _contents_meet_cleanly(edges: list[tuple[str, str]], conversation) -> bool:
    for i, (_, content) in enumerate(conversation):
        left, right = edges[i][1], edges[i + 1][0]
        if not (_meets_cleanly(left, content) and _meets_cleanly(content, right) if content
                else _meets_cleanly(left, right)):
            return False
    return True


def exact_counts(tokenizer, conversations, limit: int, batch_size: int) -> Counts:
    """Counts from rendering and encoding every row in full, exactly as training does (the reference)."""
    out = Counts.zeros(len(conversations))
    for start in range(0, len(conversations), batch_size):
        encoded = encode_conversations(tokenizer, conversations[start : start + batch_size])
        out.put(np.arange(start, start + len(encoded)), _counts_of(encoded, limit))
    return out


def tool_row_counts(tokenizer, rows: list[dict], limit: int) -> Counts:
    """Counts of rows with tool definitions, calls or results, encoded as training encodes them (`chat`)."""
    from tunesmith.chat import encode_tool_rows

    return _counts_of(encode_tool_rows(tokenizer, rows), limit)


def _counts_of(encoded, limit: int) -> Counts:
    """Counts of encoded rows, each (token ids, mask of trained tokens)."""
    out = Counts.zeros(len(encoded))
    for j, (ids, trained) in enumerate(encoded):
        out.lengths[j] = len(ids)
        out.trainable[j] = int(trained[:limit].sum())
        where = np.flatnonzero(trained)
        out.answer_end[j] = int(where[-1]) + 1 if len(where) else 0
    return out
