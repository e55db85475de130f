"""The `token_stats` stage: token lengths with the target model's chat template, truncation and trainable tokens.

Trainable tokens are the assistant tokens (content plus end of turn) left after masking the prompt and
truncating at `max_seq_len`. A row with none teaches nothing, and a row whose last answer's end-of-turn token
falls beyond `max_seq_len` never teaches the model to stop (train's pre-flight check refuses it); both are
rejected by default. Preference rows are counted twice: prompt + chosen answer and prompt + rejected answer.

A row stage: each batch is counted on its own (the chunked fast path works per batch), each kept row carries its
trainable tokens (`Example.trainable_tokens`, which `split` sums per split), and the findings come from a
`TokenTally` of Counters that merges across batches and workers.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, StageFindings, register_stage
from tunesmith.curate.token_count import Counts, FastCounter, chunk_token_counts, exact_counts, tool_row_counts
from tunesmith.curate.token_tally import TokenTally, histogram, summary

log = logging.getLogger(__name__)

# texts the chunk rule must count exactly before any row is counted from chunks: prose, numbers, code with
# indentation and blank lines, runs of spaces and tabs, accents, CJK, emoji, URLs (a SentencePiece-style
# tokenizer already fails on the first)
PROBE_TEXTS = (
    "Extract the order, please: 12 lamps to Lyon,  now!", " Leading space, trailing ones  ",
    "def total(order):\n    if order:\n        return  sum(order)  # two spaces\n\n    return 0",
    "tab\tseparated\t\tcolumns\n  indented line\n\n\nDone.", "Café déjà vu, naïve façade — «quoted» text.",
    "请解释一下植物的光合作用是如何进行的？", "Emoji 🙂 and symbols: 3.14 × 2 ≥ 6 % ok", "See https://example.com/a?b=1 c",
    '{"item": "lamp", "quantity": 12}', "a b c d e f g", "x  y   z    w",
)


class CountingFindings(StageFindings):
    method: str
    chunked_rows: int
    full_rows: int | None = None
    verified_rows: int | None = None
    reason: str | None = None


class RejectedAnswersFindings(StageFindings):
    rows: int
    length: dict[str, float]
    truncated_rows: int
    cut_answer_rows: int
    trainable_tokens: dict[str, float]


class TokenStatsFindings(StageFindings):
    counting: CountingFindings
    tool_rows: int | None = None
    tokenizer: str
    max_seq_len: int
    length: dict[str, float]
    histogram: dict[str, list]
    truncated_rows: int
    truncated_example_ids: list[str]
    cut_answer_rows: int
    cut_answer_example_ids: list[str]
    trainable_tokens: dict[str, float]
    zero_trainable_rows: int
    zero_trainable_example_ids: list[str]
    rejected_answers: RejectedAnswersFindings | None = None
    warnings: list[str] | None = None


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
    version = "3"
    mode = "row"
    Findings = TokenStatsFindings

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
            "auto", description="auto: count each distinct chunk once (exact for byte-level BPE tokenizers) once "
            "fixed probe texts show the rule holds for the tokenizer (else every row is encoded in full), checking "
            "it on verify_rows rows of each source too; full: encode every row in full."
        )
        verify_rows: int = Field(
            256, ge=1, le=1_000_000, description="The first rows of each source (row number below this) are "
            "counted both ways, chunked and full encoding; they keep the full counts, and a difference is a warning "
            "(at most 1,000,000)."
        )

    # --- row stage ------------------------------------------------------------------------------------------
    def setup(self, ctx: StageContext) -> None:
        """Check the chunk rule on fixed probe texts, so a tokenizer it does not hold for (SentencePiece, say) is
        counted in full from the first row on, the same in every process."""
        self._probe_wrong = 0
        if self.config.counting == "auto":
            tokenizer = ctx.extra["tokenizer"]
            chunked = chunk_token_counts(tokenizer, list(PROBE_TEXTS))
            full = [len(e.ids) for e in tokenizer.backend_tokenizer.encode_batch(list(PROBE_TEXTS),
                                                                                add_special_tokens=False)]
            self._probe_wrong = int((chunked != np.asarray(full)).sum())
            if self._probe_wrong:
                log.info("token_stats: chunked counting disagrees with this tokenizer on %d of %d probe texts; "
                         "counting every row in full", self._probe_wrong, len(PROBE_TEXTS))

    def open(self, ctx: StageContext) -> TokenTally:
        return TokenTally()

    def merge(self, state: TokenTally, other: TokenTally) -> TokenTally:
        return state.merge(other)

    def process_batch(self, batch: list[Example], state: TokenTally, ctx: StageContext) -> list[Example]:
        tokenizer = ctx.extra["tokenizer"]
        conversations = [[(m.role, m.content) for m in ex.messages] for ex in batch]
        preference = np.array([i for i, ex in enumerate(batch) if ex.rejected], dtype=np.int64)
        conversations += [_rejected_conversation(batch[i]) for i in preference]
        owner = np.concatenate([np.arange(len(batch)), preference])  # the row of each conversation
        counts = self._count(tokenizer, conversations, [batch[i].row for i in owner], state)
        # tool definitions and calls are rendered by the template too: count those rows as training encodes them
        tools = np.array([i for i, ex in enumerate(batch) if _uses_tools(ex)], dtype=np.int64)
        if len(tools):
            counts.put(tools, tool_row_counts(tokenizer, [batch[i].to_json() for i in tools], self.config.max_seq_len))
            state.tool_rows += len(tools)
        chosen, other = counts.take(slice(0, len(batch))), counts.take(slice(len(batch), None))
        return self._judge(batch, chosen, preference, other, state, ctx)

    def _count(self, tokenizer, conversations, rows: list[int], state: TokenTally) -> Counts:
        """Chunked counts for the rows that can have them, full encoding for the rest. The first `verify_rows` rows
        of each source (by their row number, so the same rows in any batch or process) are counted both ways, and
        their full counts are used."""
        cfg = self.config
        if cfg.counting == "full" or self._probe_wrong:
            return exact_counts(tokenizer, conversations, cfg.max_seq_len, cfg.batch_size)
        counter = FastCounter(tokenizer, conversations)
        eligible = np.flatnonzero(counter.eligible)
        full = np.flatnonzero(~counter.eligible)
        verified = np.flatnonzero(counter.eligible & (np.asarray(rows, dtype=np.int64) < cfg.verify_rows))
        counts = Counts.zeros(len(conversations))
        counts.put(eligible, counter.counts(eligible, cfg.max_seq_len))
        exact = exact_counts(tokenizer, [conversations[i] for i in (*verified, *full)], cfg.max_seq_len,
                             cfg.batch_size)
        state.wrong += int(counts.take(verified).differs(exact.take(slice(0, len(verified)))).sum())
        counts.put(np.concatenate([verified, full]), exact)
        state.eligible += len(eligible)
        state.ineligible += len(full)
        state.verified += len(verified)
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

    def _judge(self, batch, chosen: Counts, preference: np.ndarray, other: Counts, state: TokenTally,
               ctx: StageContext) -> list[Example]:
        other_of = {int(i): j for j, i in enumerate(preference)}
        kept = []
        for i, example in enumerate(batch):
            verdict = self._reason(i, chosen, other_of, other)
            if verdict is None:
                # set in place: the row belongs to the stream, and `split` sums it per split
                example.trainable_tokens = int(chosen.trainable[i])
                kept.append(example)
            else:
                ctx.reject(example, *verdict)
        limit = self.config.max_seq_len
        cut = chosen.answer_end > limit
        cut[preference] |= other.answer_end > limit
        state.chosen.add(chosen, limit)
        state.rejected.add(other, limit)
        state.add_ids([ex.id for ex in batch], chosen.lengths > limit, cut, chosen.trainable == 0)
        return kept

    def close(self, state: TokenTally, ctx: StageContext) -> None:
        cfg, side = self.config, state.chosen
        ctx.finding("counting", self._counting(state))
        if state.tool_rows:
            ctx.finding("tool_rows", state.tool_rows)
        ctx.finding("tokenizer", ctx.extra.get("tokenizer_name", "?"))
        ctx.finding("max_seq_len", cfg.max_seq_len)
        ctx.finding("length", summary(side.lengths))
        ctx.finding("histogram", histogram(side.lengths, cfg.bins))
        ctx.finding("truncated_rows", side.truncated)
        ctx.finding("truncated_example_ids", state.truncated_ids)
        ctx.finding("cut_answer_rows", state.cut_rows)
        ctx.finding("cut_answer_example_ids", state.cut_ids)
        ctx.finding("trainable_tokens", {"total": side.trainable_total, **summary(side.trainable)})
        ctx.finding("zero_trainable_rows", state.zero_rows)
        ctx.finding("zero_trainable_example_ids", state.zero_ids)
        if state.rejected.rows:
            other = state.rejected
            ctx.finding("rejected_answers", {
                "rows": other.rows, "length": summary(other.lengths), "truncated_rows": other.truncated,
                "cut_answer_rows": other.cut,
                "trainable_tokens": {"total": other.trainable_total, **summary(other.trainable)}})
        self._warn(state, ctx)

    def _counting(self, state: TokenTally) -> dict:
        """How the rows were counted. A verified row whose two counts differ was counted in full (as every
        verified row is); the rows counted from chunks alone are then suspect, and `_warn` says so."""
        if self.config.counting == "full":
            return {"method": "full", "chunked_rows": 0}
        if self._probe_wrong:
            return {"method": "full", "chunked_rows": 0, "reason": f"chunked counts differed on {self._probe_wrong} "
                    f"of {len(PROBE_TEXTS)} probe texts"}
        if not state.wrong:
            return {"method": "chunked", "chunked_rows": state.eligible, "full_rows": state.ineligible,
                    "verified_rows": state.verified}
        reason = f"chunked counts differed on {state.wrong} of {state.verified} sampled rows"
        chunked = state.eligible - state.verified
        if not chunked:
            return {"method": "full", "chunked_rows": 0, "reason": reason}
        return {"method": "chunked", "chunked_rows": chunked, "full_rows": state.ineligible + state.verified,
                "verified_rows": state.verified, "reason": reason}

    def _warn(self, state: TokenTally, ctx: StageContext) -> None:
        """The shared "warnings" finding: rows whose answer max_seq_len cuts, and what was done about them; chunked
        counts that a verified row contradicts."""
        out, cut, limit = [], state.cut_rows, f"max_seq_len={self.config.max_seq_len}"
        if cut and self.config.reject_cut_answers:
            out.append(f"{cut} row(s) have an answer cut by {limit} (its end-of-turn token falls beyond it) and "
                       f"were rejected (reject_cut_answers); raise max_seq_len here and in the train config to keep "
                       "them (reject_truncated: true would also drop rows cut only after the answer)")
        elif cut:
            out.append(f"{cut} row(s) have an answer cut by {limit} (its end-of-turn token falls beyond it) and are "
                       f"kept: train at {limit} will refuse them; set reject_cut_answers: true (or reject_truncated: "
                       "true to drop every row longer than max_seq_len), or raise max_seq_len")
        if state.wrong and state.eligible > state.verified:
            out.append(f"token counts: chunked counting differed from full encoding on {state.wrong} of "
                       f"{state.verified} verified rows, so the {state.eligible - state.verified} rows counted from "
                       "chunks alone may be off; set counting: full to encode every row")
        if out:
            ctx.finding("warnings", out)
            for sentence in out:
                log.warning("%s: %s", self.name, sentence)

    def _exact_counts(self, tokenizer, conversations) -> tuple[np.ndarray, np.ndarray]:
        """(lengths, trainable tokens) from full encoding: the reference that tests compare training with."""
        counts = exact_counts(tokenizer, conversations, self.config.max_seq_len, self.config.batch_size)
        return counts.lengths, counts.trainable


def _uses_tools(example: Example) -> bool:
    """What `chat.has_tools` asks of a split row, asked of the record (no JSON built for every row)."""
    return bool(example.tools) or any(m.tool_calls or m.role == "tool" for m in example.messages)


register_stage(TokenStats)
