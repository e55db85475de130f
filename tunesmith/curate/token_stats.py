"""The `token_stats` stage: token lengths with the target model's chat template, truncation and trainable tokens.

Trainable tokens are the assistant tokens (content plus end of turn) left after masking the prompt and
truncating at `max_seq_len`; a row with none teaches nothing and is rejected by default.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from tunesmith.chat import encode_conversations, end_of_turn, frame_for, special_token_pattern
from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage
from tunesmith.curate.token_count import chunk_token_counts, row_counts

log = logging.getLogger(__name__)


def _frame_counts(tokenizer, conversation) -> tuple[list[str], list[int], list[int]] | None:
    """Template pieces of this role sequence with their token counts, and the end-of-turn tokens opening each."""
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
    return pieces, piece_counts, eot_counts


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    pct = np.percentile(values, [50, 90, 99])
    return {"min": int(values.min()), "mean": round(float(values.mean()), 1), "p50": float(pct[0]),
            "p90": float(pct[1]), "p99": float(pct[2]), "max": int(values.max())}


class TokenStats(Stage):
    """Token lengths with the chat template, truncation at max_seq_len, trainable tokens; reject rows with none."""

    name = "token_stats"
    version = "1"

    class Config(StrictModel):
        max_seq_len: int = Field(
            1024, ge=8, le=1_048_576, description="Training sequence length; longer rows get truncated (at most 1,048,576)."
        )
        reject_zero_trainable: bool = Field(True, description="Reject rows with no trainable tokens after truncation.")
        reject_truncated: bool = Field(False, description="Also reject rows longer than max_seq_len.")
        bins: int = Field(30, ge=2, le=1000, description="Histogram bins for the length distribution (at most 1,000).")
        batch_size: int = Field(2048, ge=1, le=1_000_000, description="Rows tokenized per batch (at most 1,000,000).")
        verify_rows: int = Field(
            256, ge=1, le=1_000_000, description="Rows counted both ways (chunked and full encoding); any difference "
            "switches to full (at most 1,000,000)."
        )

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        tokenizer = ctx.extra["tokenizer"]
        conversations = [[(m.role, m.content) for m in ex.messages] for ex in examples]
        lengths, trainable, fast = self._fast_counts(tokenizer, conversations)
        slow = np.flatnonzero(~fast)
        sample = np.array(sorted(ctx.rng.sample(list(np.flatnonzero(fast)), min(int(fast.sum()), self.config.verify_rows))),
                          dtype=np.int64)
        check = np.concatenate([slow, sample])
        exact_len, exact_trainable = self._exact_counts(tokenizer, [conversations[i] for i in check])
        mismatch = (exact_len[len(slow):] != lengths[sample]) | (exact_trainable[len(slow):] != trainable[sample])
        if mismatch.any():
            log.info("token_stats: chunked counting disagrees with this tokenizer; counting every row in full")
            lengths, trainable = self._exact_counts(tokenizer, conversations)
            ctx.finding("counting", {"method": "full", "chunked_rows": 0})
        else:
            lengths[slow], trainable[slow] = exact_len[: len(slow)], exact_trainable[: len(slow)]
            ctx.finding("counting", {"method": "chunked", "chunked_rows": int(len(examples) - len(slow)),
                                     "verified_rows": int(len(sample))})
        return self._judge(examples, lengths, trainable, ctx)

    def _fast_counts(self, tokenizer, conversations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts from distinct chunks for rows whose template frame is verbatim; `fast` marks those rows."""
        limit, frames = self.config.max_seq_len, {}
        special = special_token_pattern(tokenizer)
        fast = np.zeros(len(conversations), dtype=bool)
        row_roles = [tuple(r for r, _ in conversation) for conversation in conversations]
        for i, (conversation, roles) in enumerate(zip(conversations, row_roles)):
            if roles not in frames:
                frames[roles] = _frame_counts(tokenizer, conversation)
            fast[i] = frames[roles] is not None and not (special and any(special.search(c) for _, c in conversation))
        rows = np.flatnonzero(fast)
        content_counts = chunk_token_counts(tokenizer, [c for i in rows for _, c in conversations[i]]).tolist()
        lengths = np.zeros(len(conversations), dtype=np.int64)
        trainable = np.zeros(len(conversations), dtype=np.int64)
        cursor = 0
        for i in rows:
            roles = row_roles[i]
            pieces, piece_counts, eot_counts = frames[roles]
            counts = content_counts[cursor : cursor + len(roles)]
            cursor += len(roles)
            lengths[i], trainable[i] = row_counts(pieces, roles, counts, piece_counts, eot_counts, limit)
        return lengths, trainable, fast

    def _exact_counts(self, tokenizer, conversations) -> tuple[np.ndarray, np.ndarray]:
        """Counts from rendering and encoding every row in full, exactly as training does (the reference)."""
        lengths = np.zeros(len(conversations), dtype=np.int64)
        trainable = np.zeros(len(conversations), dtype=np.int64)
        step = self.config.batch_size
        for start in range(0, len(conversations), step):
            for j, (ids, trained) in enumerate(encode_conversations(tokenizer, conversations[start : start + step])):
                lengths[start + j] = len(ids)
                trainable[start + j] = int(trained[: self.config.max_seq_len].sum())
        return lengths, trainable

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
