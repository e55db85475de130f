"""The `token_stats` stage: token lengths with the target model's chat template, truncation and trainable tokens.

Trainable tokens are the assistant tokens (content plus end of turn) left after masking the prompt and
truncating at `max_seq_len`; a row with none teaches nothing and is rejected by default.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from tunesmith.chat import render_with_spans
from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage

log = logging.getLogger(__name__)


def _tokens_in(encoding, lo: int, hi: int, limit: int) -> int:
    """Tokens of `encoding` covering characters [lo, hi) among its first `limit` tokens (no offsets list)."""
    first = last = None
    for pos in range(lo, hi):
        first = encoding.char_to_token(pos)
        if first is not None:
            break
    for pos in range(hi - 1, lo - 1, -1):
        last = encoding.char_to_token(pos)
        if last is not None:
            break
    if first is None or last is None or first >= limit:
        return 0
    return min(last, limit - 1) - first + 1


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    pct = np.percentile(values, [50, 90, 99])
    return {"min": int(values.min()), "mean": round(float(values.mean()), 1), "p50": float(pct[0]),
            "p90": float(pct[1]), "p99": float(pct[2]), "max": int(values.max())}


class TokenStats(Stage):
    name = "token_stats"
    version = "1"

    class Config(StrictModel):
        max_seq_len: int = Field(1024, ge=8, description="Training sequence length; longer rows get truncated.")
        reject_zero_trainable: bool = Field(True, description="Reject rows with no trainable tokens after truncation.")
        reject_truncated: bool = Field(False, description="Also reject rows longer than max_seq_len.")
        bins: int = Field(30, ge=2, description="Histogram bins for the length distribution.")
        batch_size: int = Field(2048, ge=1, description="Rows tokenized per batch.")

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        tokenizer = ctx.extra["tokenizer"]
        lengths = np.zeros(len(examples), dtype=np.int64)
        trainable = np.zeros(len(examples), dtype=np.int64)
        step = self.config.batch_size
        for start in range(0, len(examples), step):
            batch = examples[start : start + step]
            texts, spans = render_with_spans(tokenizer, [[(m.role, m.content) for m in ex.messages] for ex in batch])
            encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
            for j, (encoding, row_spans) in enumerate(zip(encodings, spans)):
                lengths[start + j] = len(encoding.ids)
                trainable[start + j] = sum(_tokens_in(encoding, lo, hi, self.config.max_seq_len) for lo, hi in row_spans)
        return self._judge(examples, lengths, trainable, ctx)

    def _judge(self, examples, lengths, trainable, ctx: StageContext) -> list[Example]:
        cfg = self.config
        truncated = lengths > cfg.max_seq_len
        kept = []
        for i, example in enumerate(examples):
            if cfg.reject_zero_trainable and trainable[i] == 0:
                ctx.reject(example, "zero_trainable_tokens",
                           f"{lengths[i]} tokens, none trainable within max_seq_len={cfg.max_seq_len}")
            elif cfg.reject_truncated and truncated[i]:
                ctx.reject(example, "truncated", f"{lengths[i]} tokens > max_seq_len={cfg.max_seq_len}")
            else:
                kept.append(example)
        counts, edges = np.histogram(lengths, bins=cfg.bins) if len(lengths) else (np.zeros(0), np.zeros(1))
        ctx.finding("tokenizer", ctx.extra.get("tokenizer_name", "?"))
        ctx.finding("max_seq_len", cfg.max_seq_len)
        ctx.finding("length", _summary(lengths))
        ctx.finding("histogram", {"edges": [round(float(e), 1) for e in edges], "counts": counts.astype(int).tolist()})
        ctx.finding("truncated_rows", int(truncated.sum()))
        ctx.finding("truncated_example_ids", [examples[i].id for i in np.flatnonzero(truncated)[:20]])
        ctx.finding("trainable_tokens", {"total": int(trainable.sum()), **_summary(trainable)})
        ctx.finding("zero_trainable_rows", int((trainable == 0).sum()))
        ctx.finding("zero_trainable_example_ids", [examples[i].id for i in np.flatnonzero(trainable == 0)[:20]])
        return kept


register_stage(TokenStats)
