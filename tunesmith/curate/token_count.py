"""Fast, exact token counts for chat rows: count each distinct space-separated chunk once, then add up.

A byte-level BPE tokenizer with GPT-2-style pre-tokenization never merges across the start of a
" word" chunk or across the template's special tokens, so a row's token count is the sum of its
chunks' counts. pyarrow splits and dictionary-encodes all chunks at once; only distinct chunks go through
the tokenizer. The caller checks the result against full encoding on a sample and falls back when a
tokenizer does not have this property.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def chunk_token_counts(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Token count of each text (no special tokens added), via distinct space-separated chunks."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    lists = pc.split_pattern(pa.array(list(texts), type=pa.large_string()), pattern=" ")
    chunks = pc.list_flatten(lists)
    row_of = pc.list_parent_indices(lists).to_numpy()
    offsets = lists.offsets.to_numpy()
    first = np.zeros(len(chunks), dtype=bool)
    first[offsets[:-1][np.diff(offsets) > 0]] = True  # a text's first chunk has no space before it
    encoded = pc.dictionary_encode(chunks)
    distinct = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy()
    backend = tokenizer.backend_tokenizer
    spaced = [len(e.ids) for e in backend.encode_batch([" " + c for c in distinct], add_special_tokens=False)]
    bare = np.zeros(len(distinct), dtype=np.int64)
    needed = np.unique(indices[first])
    if len(needed):
        bare[needed] = [len(e.ids) for e in backend.encode_batch([distinct[i] for i in needed],
                                                                  add_special_tokens=False)]
    per_chunk = np.where(first, bare[indices], np.asarray(spaced, dtype=np.int64)[indices])
    return np.bincount(row_of, weights=per_chunk, minlength=len(texts)).astype(np.int64)


def row_counts(pieces: list[str], roles: tuple[str, ...], content_counts: list[int], piece_counts: list[int],
               eot_counts: list[int], limit: int) -> tuple[int, int]:
    """(total tokens, trainable tokens within `limit`) of one row from its segment counts.

    `eot_counts[i]` is the number of tokens at the start of piece i that close the previous assistant turn.
    """
    position, trainable = 0, 0
    for i, role in enumerate(roles):
        position += piece_counts[i]
        length = content_counts[i] + (eot_counts[i + 1] if role == "assistant" else 0)
        if role == "assistant" and position < limit:
            trainable += min(position + length, limit) - position
        position += content_counts[i]
    return position + piece_counts[len(roles)], trainable
