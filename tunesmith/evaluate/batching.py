"""Length-bucketed batches and padded tensors for inference (perplexity and generation share them).

Rows are sorted by length so each batch pads only to its own longest row; callers restore the original order.
Position ids come from the attention mask, so a left-padded row sees the same positions as an unpadded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

PaddingSide = Literal["left", "right"]


def length_buckets(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (so running out of memory shows early).

    A batch holds at most `batch_size` rows and, when `max_tokens` is set, at most that many padded tokens
    (a row longer than `max_tokens` still gets a batch of its own).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep their input order
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        # sorted longest first, so the first row of a batch sets its padded width
        fits = current is not None and len(current) < batch_size
        if fits and max_tokens is not None:
            fits = (len(current) + 1) * lengths[current[0]] <= max_tokens
        if fits:
            current.append(i)
        else:
            batches.append([i])
    return batches


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, side: PaddingSide) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and position_ids for rows padded to the longest one on `side`."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        start = width - len(seq) if side == "left" else 0
        input_ids[row, start : start + len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, start : start + len(seq)] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def pad_offsets(lengths: Sequence[int], side: PaddingSide) -> list[int]:
    """Where each row's first real token sits in the padded batch."""
    width = max(lengths)
    return [width - n if side == "left" else 0 for n in lengths]
