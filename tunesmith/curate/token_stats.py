"""The `token_stats` stage: token lengths with the target model's chat template, truncation and trainable tokens.

Trainable tokens are the assistant tokens (content plus end of turn) left after masking the prompt and
truncating at `max_seq_len`. A row with none teaches nothing, and a row whose last answer's end-of-turn token
falls beyond `max_seq_len` never teaches the model to stop (train's pre-flight check refuses it); both are
rejected by default. Preference rows are counted twice: prompt + chosen answer and prompt + rejected answer.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage
from tunesmith.curate.token_count import Counts, FastCounter, exact_counts, tool_row_counts

log = logging.getLogger(__name__)


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    pct = np.percentile(values, [50, 90, 99])
    return {"min": int(values.min()), "mean": round(float(values.mean()), 1), "p50": float(pct[0]),
            "p90": float(pct[1]), "p99": float(pct[2]), "max": int(values.max())}


def _rejected_conversation(example: Example) -> list[tuple[str, str]]:
    """The prompt turns (messages without the chosen answer's trailing assistant turns) plus the rejected answer."""
    turns = list(example.messages)
    while turns and turns[-1].role == "assistant":
        turns.pop()
    return [(m.role, m.content) for m in (*turns, *example.rejected)]


class TokenStats(Stage):
    """Token lengths with the chat template, truncation at max_seq_len, trainable tokens; reject rows with none
    and rows whose answer is cut."""

    name = "token_stats"
    version = "2"

    class Config(StrictModel):
        max_seq_len: int = Field(
            1024, ge=8, le=1_048_576, description="Training sequence length; longer rows get truncated (at most "
            "1,048,576). Curate at the max_seq_len you train with."
        )
        reject_zero_trainable: bool = Field(True, description="Reject rows with no trainable tokens after truncation.")
        reject_cut_answers: bool = Field(
            True, description="Reject rows whose last answer's end-of-turn token falls beyond max_seq_len (for "
            "preference rows: either answer's); training would cut the answer and never learn to stop, and train's "
            "pre-flight check refuses such rows."
        )
        reject_truncated: bool = Field(
            False, description="Also reject every row longer than max_seq_len, even when only template tokens "
            "after the answer are cut."
        )
        bins: int = Field(30, ge=2, le=1000, description="Histogram bins for the length distribution (at most 1,000).")
        batch_size: int = Field(2048, ge=1, le=1_000_000, description="Rows tokenized per batch (at most 1,000,000).")
        counting: Literal["auto", "full"] = Field(
            "auto", description="auto: count each distinct chunk once (exact for byte-level BPE tokenizers), after "
            "checking that on verify_rows rows against full encoding, which counts every row on any difference; "
            "full: encode every row in full."
        )
        verify_rows: int = Field(
            256, ge=1, le=1_000_000, description="Rows counted both ways (chunked and full encoding) before the "
            "chunked counting is used (at most 1,000,000)."
        )

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        tokenizer = ctx.extra["tokenizer"]
        conversations = [[(m.role, m.content) for m in ex.messages] for ex in examples]
        preference = np.array([i for i, ex in enumerate(examples) if ex.rejected], dtype=np.int64)
        conversations += [_rejected_conversation(examples[i]) for i in preference]
        counts = self._count(tokenizer, conversations, ctx)
        # tool definitions and calls are rendered by the template too: count those rows as training encodes them
        tools = np.array([i for i, ex in enumerate(examples) if _uses_tools(ex)], dtype=np.int64)
        if len(tools):
            rows = [examples[i].to_json() for i in tools]
            counts.put(tools, tool_row_counts(tokenizer, rows, self.config.max_seq_len))
            ctx.finding("tool_rows", int(len(tools)))
        chosen, other = counts.take(slice(0, len(examples))), counts.take(slice(len(examples), None))
        return self._judge(examples, chosen, preference, other, ctx)

    def _count(self, tokenizer, conversations, ctx: StageContext) -> Counts:
        """Chunked counts where a sample proves them equal to full encoding, else full encoding of every row."""
        cfg = self.config
        if cfg.counting == "full":
            ctx.finding("counting", {"method": "full", "chunked_rows": 0})
            return exact_counts(tokenizer, conversations, cfg.max_seq_len, cfg.batch_size)
        counter = FastCounter(tokenizer, conversations)
        chunked = np.flatnonzero(counter.eligible)
        sample = np.array(sorted(ctx.rng.sample(chunked.tolist(), min(len(chunked), cfg.verify_rows))), dtype=np.int64)
        # checked before counting everything, so a tokenizer that fails it costs one full encoding, not two passes
        expected = exact_counts(tokenizer, [conversations[i] for i in sample], cfg.max_seq_len, cfg.batch_size)
        wrong = int(counter.counts(sample, cfg.max_seq_len).differs(expected).sum())
        if wrong:
            log.info("token_stats: chunked counting disagrees with this tokenizer on %d of %d sampled rows; "
                     "counting every row in full", wrong, len(sample))
            ctx.finding("counting", {"method": "full", "chunked_rows": 0,
                                     "reason": f"chunked counts differed on {wrong} of {len(sample)} sampled rows"})
            return exact_counts(tokenizer, conversations, cfg.max_seq_len, cfg.batch_size)
        counts = Counts.zeros(len(conversations))
        counts.put(chunked, counter.counts(chunked, cfg.max_seq_len))
        full = np.flatnonzero(~counter.eligible)
        counts.put(full, exact_counts(tokenizer, [conversations[i] for i in full], cfg.max_seq_len, cfg.batch_size))
        ctx.finding("counting", {"method": "chunked", "chunked_rows": int(len(chunked)), "full_rows": int(len(full)),
                                 "verified_rows": int(len(sample))})
        return counts

    def _reason(self, i: int, chosen: Counts, other_of: dict[int, int], other: Counts) -> tuple[str, str] | None:
        """Why row i is rejected (reason, detail), or None to keep it."""
        cfg, limit = self.config, self.config.max_seq_len
        sides = [("the answer", chosen.lengths[i], chosen.trainable[i], chosen.answer_end[i])]
        if i in other_of:
            j = other_of[i]
            sides = [("the chosen answer", *sides[0][1:]),
                     ("the rejected answer", other.lengths[j], other.trainable[j], other.answer_end[j])]
        for what, length, trainable, _ in sides:
            if cfg.reject_zero_trainable and trainable == 0:
                return "zero_trainable_tokens", f"{what}: {length} tokens, none trainable within max_seq_len={limit}"
        for what, length, _, end in sides:
            if cfg.reject_cut_answers and end > limit:
                return "answer_cut", (f"{what} ends at token {end} of {length} > max_seq_len={limit}: training "
                                      "would never see its end-of-turn token")
        for what, length, _, _ in sides:
            if cfg.reject_truncated and length > limit:
                return "truncated", f"{what}: {length} tokens > max_seq_len={limit}"
        return None

    def _judge(self, examples, chosen: Counts, preference: np.ndarray, other: Counts, ctx: StageContext):
        other_of = {int(i): j for j, i in enumerate(preference)}
        kept = []
        for i, example in enumerate(examples):
            verdict = self._reason(i, chosen, other_of, other)
            if verdict is None:
                kept.append(example)
            else:
                ctx.reject(example, *verdict)
        cut = chosen.answer_end > self.config.max_seq_len
        cut[preference] |= other.answer_end > self.config.max_seq_len
        self._findings(examples, chosen, cut, ctx)
        if len(preference):
            ctx.finding("rejected_answers", {
                "rows": int(len(preference)), "length": _summary(other.lengths),
                "truncated_rows": int((other.lengths > self.config.max_seq_len).sum()),
                "cut_answer_rows": int((other.answer_end > self.config.max_seq_len).sum()),
                "trainable_tokens": {"total": int(other.trainable.sum()), **_summary(other.trainable)}})
        self._warn(int(cut.sum()), ctx)
        return kept

    def _findings(self, examples, counts: Counts, cut: np.ndarray, ctx: StageContext) -> None:
        cfg, lengths, trainable = self.config, counts.lengths, counts.trainable
        truncated = lengths > cfg.max_seq_len
        hist, edges = np.histogram(lengths, bins=cfg.bins) if len(lengths) else (np.zeros(0), np.zeros(1))
        ctx.finding("tokenizer", ctx.extra.get("tokenizer_name", "?"))
        ctx.finding("max_seq_len", cfg.max_seq_len)
        ctx.finding("length", _summary(lengths))
        ctx.finding("histogram", {"edges": [round(float(e), 1) for e in edges], "counts": hist.astype(int).tolist()})
        ctx.finding("truncated_rows", int(truncated.sum()))
        ctx.finding("truncated_example_ids", [examples[i].id for i in np.flatnonzero(truncated)[:20]])
        ctx.finding("cut_answer_rows", int(cut.sum()))
        ctx.finding("cut_answer_example_ids", [examples[i].id for i in np.flatnonzero(cut)[:20]])
        ctx.finding("trainable_tokens", {"total": int(trainable.sum()), **_summary(trainable)})
        # per row, for `split` to sum per split: the min_trainable_tokens gate measures train only
        ctx.extra["trainable_tokens_by_id"] = dict(zip((ex.id for ex in examples), trainable.tolist()))
        ctx.finding("zero_trainable_rows", int((trainable == 0).sum()))
        ctx.finding("zero_trainable_example_ids", [examples[i].id for i in np.flatnonzero(trainable == 0)[:20]])

    def _warn(self, cut: int, ctx: StageContext) -> None:
        """The shared "warnings" finding: rows whose answer max_seq_len cuts, and what was done about them."""
        if not cut:
            return
        limit = f"max_seq_len={self.config.max_seq_len}"
        if self.config.reject_cut_answers:
            sentence = (f"{cut} row(s) have an answer cut by {limit} (its end-of-turn token falls beyond it) and "
                        f"were rejected (reject_cut_answers); raise max_seq_len here and in the train config to keep "
                        "them (reject_truncated: true would also drop rows cut only after the answer)")
        else:
            sentence = (f"{cut} row(s) have an answer cut by {limit} (its end-of-turn token falls beyond it) and are "
                        f"kept: train at {limit} will refuse them; set reject_cut_answers: true (or reject_truncated: "
                        "true to drop every row longer than max_seq_len), or raise max_seq_len")
        ctx.finding("warnings", [sentence])
        log.warning("%s: %s", self.name, sentence)

    def _exact_counts(self, tokenizer, conversations) -> tuple[np.ndarray, np.ndarray]:
        """(lengths, trainable tokens) from full encoding: the reference that tests compare training with."""
        counts = exact_counts(tokenizer, conversations, self.config.max_seq_len, self.config.batch_size)
        return counts.lengths, counts.trainable


def _uses_tools(example: Example) -> bool:
    """What `chat.has_tools` asks of a split row, asked of the record (no JSON built for every row)."""
    return bool(example.tools) or any(m.tool_calls or m.role == "tool" for m in example.messages)


register_stage(TokenStats)
