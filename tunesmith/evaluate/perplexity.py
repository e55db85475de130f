"""Token-weighted perplexity: sum the negative log-likelihood over all scored tokens, divide once, exponentiate.

`example_nll` scores rows from `tunesmith.chat.encode_rows` (response tokens = the labelled ones) in
length-bucketed batches; `general_text_nll` scores plain paragraphs (a forgetting check, no chat template).
Per-example sums are kept so comparisons can bootstrap over examples; the corpus value is never a mean of
per-example perplexities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from tunesmith.chat import IGNORE_INDEX
from tunesmith.config import StrictModel
from tunesmith.errors import UsageError
from tunesmith.evaluate.batching import PaddingSide, length_buckets, pad_batch, pad_offsets

Which = Literal["response", "sequence"]


@dataclass(frozen=True)
class ExampleNll:
    """One example's summed NLL (nats) and token counts; `sequence` covers every predicted token (1..n-1)."""

    id: str
    response_nll: float
    response_tokens: int
    sequence_nll: float
    sequence_tokens: int


class PerplexityResult(StrictModel):
    """A corpus perplexity with the sums it came from, so results can be re-aggregated exactly."""

    which: Which = Field("response", description="Tokens scored: assistant response tokens or the whole sequence.")
    value: float = Field(description="exp(nll_sum / tokens).")
    nll_sum: float = Field(description="Summed negative log-likelihood over the scored tokens, in nats.")
    tokens: int = Field(ge=0, description="Number of scored tokens.")
    n_examples: int = Field(ge=0, description="Number of examples the sums cover.")

    @classmethod
    def from_nlls(cls, nlls: Sequence[ExampleNll], which: Which = "response") -> PerplexityResult:
        nll_sum = math.fsum(getattr(n, f"{which}_nll") for n in nlls)
        tokens = sum(getattr(n, f"{which}_tokens") for n in nlls)
        if tokens == 0:
            raise UsageError(f"no {which} tokens to score in {len(nlls)} examples")
        mean = nll_sum / tokens
        return cls(
            which=which,
            value=math.exp(mean) if mean < 700 else math.inf,
            nll_sum=nll_sum,
            tokens=tokens,
            n_examples=len(nlls),
        )


def perplexity(nlls: Sequence[ExampleNll], which: Which = "response") -> float:
    """exp(total NLL / total tokens) over the whole set, for response or whole-sequence tokens."""
    return PerplexityResult.from_nlls(nlls, which).value


def _score_row(logits: torch.Tensor, input_ids: Sequence[int], labels: Sequence[int]) -> tuple[float, int, float, int]:
    """(response NLL, response tokens, sequence NLL, sequence tokens) from one row's unpadded logits."""
    targets = torch.as_tensor(input_ids[1:], dtype=torch.long, device=logits.device)
    # float32 log-softmax for one row at a time: never the whole batch's vocabulary in float32 at once
    token_nll = F.cross_entropy(logits[:-1].float(), targets, reduction="none").double()
    scored = torch.as_tensor(labels[1:], device=logits.device) != IGNORE_INDEX
    return float(token_nll[scored].sum()), int(scored.sum()), float(token_nll.sum()), len(targets)


def example_nll(
    model,
    encoded_rows: Sequence[dict],
    batch_size: int = 8,
    padding_side: PaddingSide = "right",
    max_tokens_per_batch: int | None = None,
) -> list[ExampleNll]:
    """Per-example NLL sums for rows of `{"id", "input_ids", "labels"}`, in input order.

    Args:
        batch_size: rows per forward pass; batches group rows of similar length.
        padding_side: where padding goes; results do not depend on it (position ids follow the mask).
        max_tokens_per_batch: also cap rows x padded width per batch (bounds memory on long rows).
    """
    model.eval()
    device = next(model.parameters()).device
    lengths = [len(row["input_ids"]) for row in encoded_rows]
    # a row of one token predicts nothing: it keeps its zero entry and stays out of the batches
    results = [ExampleNll(str(row["id"]), 0.0, 0, 0.0, 0) for row in encoded_rows]
    scorable = [i for i, n in enumerate(lengths) if n >= 2]
    buckets = length_buckets([lengths[i] for i in scorable], batch_size, max_tokens_per_batch)
    with torch.inference_mode():
        for bucket in buckets:
            rows = [encoded_rows[scorable[b]] for b in bucket]
            batch = pad_batch([r["input_ids"] for r in rows], pad_id=0, side=padding_side)
            logits = model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False).logits
            offsets = pad_offsets([len(r["input_ids"]) for r in rows], padding_side)
            for k, (row, start) in enumerate(zip(rows, offsets)):
                n = len(row["input_ids"])
                scores = _score_row(logits[k, start : start + n], row["input_ids"], row["labels"])
                results[scorable[bucket[k]]] = ExampleNll(str(row["id"]), *scores)
    return results


def load_general_text() -> list[str]:
    """The shipped general-prose paragraphs (tunesmith/assets/general_text.txt), one per blank-line block."""
    text = (files("tunesmith") / "assets" / "general_text.txt").read_text(encoding="utf-8")
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]


def general_text_nll(
    model, tokenizer, paragraphs: Sequence[str] | None = None, batch_size: int = 8, max_len: int = 512
) -> list[ExampleNll]:
    """Sequence NLL of plain paragraphs (the shipped general text by default): did tuning forget English?

    No chat template; the tokenizer's own special tokens (a BOS where it adds one) are kept, while text that spells
    a special token (`<|im_end|>` in a user's file) stays text.
    """
    paragraphs = load_general_text() if paragraphs is None else list(paragraphs)
    rows = []
    for i, text in enumerate(paragraphs):
        ids = tokenizer(text, split_special_tokens=True)["input_ids"][:max_len]
        rows.append({"id": f"general-{i}", "input_ids": ids, "labels": ids})
    return example_nll(model, rows, batch_size=batch_size)
