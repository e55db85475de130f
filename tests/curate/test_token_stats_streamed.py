"""token_stats as a row stage: the streaming engine (small batches, forked workers) gives the same survivors,
rejected rows and findings as one pass over the list, the summaries from Counters equal numpy's over the array,
and every kept row carries its trainable tokens. Uses the tiny ChatML tokenizer.

Run: .venv/bin/python -m pytest tests/curate/test_token_stats_streamed.py -q
"""

from collections import Counter

import numpy as np
import pytest

from tests.curate.engine_helpers import comparable, run_streamed, run_whole
from tunesmith.curate import token_stats
from tunesmith.curate.record import Example, Message
from tunesmith.curate.token_count import FastCounter, exact_counts
from tunesmith.curate.token_stats import TokenStats
from tunesmith.curate.token_tally import histogram, summary
from tunesmith.models import load_tokenizer

WORDS = "the order ships lamps to Lyon".split()
CONFIG = {"max_seq_len": 48, "verify_rows": 5, "bins": 7}


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return load_tokenizer(str(tiny_tokenizer_dir))


def words(n: int) -> str:
    return " ".join(WORDS[k % len(WORDS)] for k in range(n))


def rows() -> list[Example]:
    """Short rows, rows cut at 48 tokens (answer cut, or prompt so long nothing is trainable), preference rows
    (one with a rejected answer that is cut), multi-turn rows; row numbers past verify_rows are counted from chunks."""
    out = []
    for i in range(16):
        turns = [Message("user", f"Extract the order {i}: {words(3 + i % 4)}"), Message("assistant", words(2 + i))]
        if i % 5 == 0:
            turns = [Message("system", "Answer in JSON."), *turns, Message("user", "Again?"), Message("assistant", "ok")]
        if i == 6:
            turns = [Message("user", words(80)), Message("assistant", "ok")]  # zero trainable within 48
        rejected = (Message("assistant", words(60 if i == 9 else 4)),) if i in (3, 9, 12) else ()
        out.append(Example(id=f"t:{i}", source="t.jsonl", row=i, line=i + 1, messages=tuple(turns), rejected=rejected))
    return out


def extra(tokenizer) -> dict:
    return {"tokenizer": tokenizer, "tokenizer_name": "tiny"}


def runs(tokenizer, examples, tmp_path, **config):
    """(survivors as JSON plus trainable tokens, rejected lines, comparable record) of the three ways to run."""
    out = []
    for name, run in (("whole", lambda s, f: run_whole(s, examples, f, extra=extra(tokenizer))),
                      ("batch3", lambda s, f: run_streamed(s, examples, f, 3, 1, extra=extra(tokenizer))),
                      ("batch2x2", lambda s, f: run_streamed(s, examples, f, 2, 2, extra=extra(tokenizer)))):
        kept, record, lines = run(TokenStats(TokenStats.Config(**config)), tmp_path / name)
        out.append(([(ex.to_json(), ex.trainable_tokens) for ex in kept], lines, comparable(record)))
    return out


def test_streamed_runs_equal_the_whole_run(tokenizer, tmp_path):
    """Batches of 3 in one process and batches of 2 over two workers keep the same rows with the same trainable
    tokens, reject the same rows (zero trainable, answer cut) and write the same findings, warning included."""
    whole, *streamed = runs(tokenizer, rows(), tmp_path, **CONFIG)
    for other in streamed:
        assert other == whole
    _, lines, record = whole
    findings = record["findings"]
    assert findings["rejected_by_reason"] == {"answer_cut": 2, "zero_trainable_tokens": 1}
    assert {line["id"] for line in lines} == {"t:6", "t:9", "t:15"}
    assert findings["counting"] == {"method": "chunked", "chunked_rows": 19, "full_rows": 0, "verified_rows": 6}
    assert findings["rejected_answers"]["rows"] == 3 and findings["rejected_answers"]["cut_answer_rows"] == 1
    assert findings["warnings"][0].startswith("3 row(s) have an answer cut by max_seq_len=48")
    assert sum(findings["histogram"]["counts"]) == 16 and len(findings["histogram"]["edges"]) == 8


def test_findings_equal_the_numpy_summaries_of_full_encoding(tokenizer, tmp_path):
    """Length and trainable summaries and the histogram equal numpy over the per-row arrays of full encoding,
    and each kept row's trainable_tokens is its full-encoding count."""
    examples = rows()
    (kept, _, record), *_ = runs(tokenizer, examples, tmp_path, **CONFIG)
    exact = exact_counts(tokenizer, [[(m.role, m.content) for m in ex.messages] for ex in examples], 48, 64)
    findings = record["findings"]
    pct = np.percentile(exact.lengths, [50, 90, 99])
    assert findings["length"] == {"min": int(exact.lengths.min()), "mean": round(float(exact.lengths.mean()), 1),
                                  "p50": float(pct[0]), "p90": float(pct[1]), "p99": float(pct[2]),
                                  "max": int(exact.lengths.max())}
    hist, edges = np.histogram(exact.lengths, bins=7)
    assert findings["histogram"] == {"edges": [round(float(e), 1) for e in edges], "counts": hist.tolist()}
    assert findings["trainable_tokens"]["total"] == int(exact.trainable.sum())
    by_id = dict(zip((ex.id for ex in examples), exact.trainable.tolist()))
    assert [tokens for _, tokens in kept] == [by_id[row["id"]] for row, _ in kept]


def test_summaries_from_counters_equal_numpy_on_the_array():
    """summary() and histogram() of a Counter equal numpy's percentile/mean/min/max/histogram of the array it
    counts, for 1 to 300 values spread over few or many distinct values (the percentile interpolation included)."""
    rng = np.random.default_rng(0)
    for trial in range(400):
        values = rng.integers(0, (3, 50, 5000, 10**6)[trial % 4], size=int(rng.integers(1, 300)))
        pct = np.percentile(values, [50, 90, 99])
        assert summary(Counter(values.tolist())) == {
            "min": int(values.min()), "mean": round(float(values.mean()), 1), "p50": float(pct[0]),
            "p90": float(pct[1]), "p99": float(pct[2]), "max": int(values.max())}
        bins = int(rng.integers(2, 40))
        hist, edges = np.histogram(values, bins=bins)
        assert histogram(Counter(values.tolist()), bins) == {"edges": [round(float(e), 1) for e in edges],
                                                             "counts": hist.tolist()}
    assert summary(Counter()) == {} and histogram(Counter(), 5) == {"edges": [0.0], "counts": []}


def test_a_verified_row_that_disagrees_is_counted_in_full_and_warned_about(tokenizer, tmp_path, monkeypatch):
    """When chunked counts are off, the verified rows (row number < verify_rows) keep their full counts, the
    findings say how many differed and warn about the rest, identically for every batching."""
    real = FastCounter.counts
    monkeypatch.setattr(FastCounter, "counts", lambda self, r, limit: real(self, r, limit)._replace(
        lengths=real(self, r, limit).lengths + 1))
    whole, *streamed = runs(tokenizer, rows(), tmp_path, **CONFIG)
    for other in streamed:
        assert other == whole
    findings = whole[2]["findings"]
    assert findings["counting"] == {"method": "chunked", "chunked_rows": 13, "full_rows": 6, "verified_rows": 6,
                                    "reason": "chunked counts differed on 6 of 6 sampled rows"}
    assert findings["warnings"][-1].startswith("token counts: chunked counting differed from full encoding on 6")


def test_a_tokenizer_that_fails_the_probe_is_counted_in_full(tokenizer, tmp_path, monkeypatch):
    """Chunk counts that differ on the fixed probe texts send every row to full encoding from the first batch
    on, in every process; the findings then equal those of counting: full but for the reason."""
    real = token_stats.chunk_token_counts
    monkeypatch.setattr(token_stats, "chunk_token_counts", lambda tok, texts: real(tok, texts) + 1)
    whole, *streamed = runs(tokenizer, rows(), tmp_path, **CONFIG)
    for other in streamed:
        assert other == whole
    full = runs(tokenizer, rows(), tmp_path / "full", **CONFIG, counting="full")[0]
    counting = whole[2]["findings"].pop("counting")
    assert counting == {"method": "full", "chunked_rows": 0,
                        "reason": f"chunked counts differed on {len(token_stats.PROBE_TEXTS)} of "
                                  f"{len(token_stats.PROBE_TEXTS)} probe texts"}
    assert full[2]["findings"].pop("counting") == {"method": "full", "chunked_rows": 0}
    assert whole[2]["findings"] == full[2]["findings"] and whole[0] == full[0]
