"""token_stats counting: chunked counts equal full encoding (also for code and multi-line text); findings.

Run: .venv/bin/python -m pytest tests/curate/test_token_stats.py -q
"""

import numpy as np
import pytest

from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext
from tunesmith.curate.token_count import FastCounter, exact_counts
from tunesmith.curate.token_stats import TokenStats
from tunesmith.models import load_tokenizer

CODE = "```python\ndef total(order):\n    if order:\n        return  sum(order)  # two spaces\n\n    return 0\n```"
MULTILINE = ["Steps:\n\n- pack the lamps\n- ship to Lyon\n\n\nDone.  Thanks!", " Leading space, trailing ones  ",
             f"Here is the code:\n{CODE}\n", "tab\tseparated\t\tcolumns\n  indented line\n"]


def rows(n: int) -> list[Example]:
    out = []
    for i in range(n):
        turns = [Message("user", f"Extract the order, please: {i} lamps to Lyon,  now!"),
                 Message("assistant", f'{{"item":"lamp","quantity":{i}}}')]
        if i % 3 == 0:
            turns = [Message("system", "You answer with JSON only."), *turns,
                     Message("user", "And again?"), Message("assistant", "Same again.")]
        out.append(Example(id=f"r:{i}", source="r.jsonl", row=i, line=i + 1, messages=tuple(turns)))
    return out


def code_rows(n: int) -> list[Example]:
    """Rows like real code/instruction data: fenced code, indentation, blank lines, runs of spaces and tabs."""
    return [Example(id=f"c:{i}", source="c.jsonl", row=i, line=i + 1,
                    messages=(Message("user", f"Fix this {i}:\n{CODE if i % 2 else MULTILINE[i % 4]}"),
                              Message("assistant", MULTILINE[i % 4] + f"\n{i}")))
            for i in range(n)]


@pytest.fixture(params=["tiny", "embedded"])
def tokenizer(request, tiny_tokenizer_dir):
    return load_tokenizer(str(tiny_tokenizer_dir) if request.param == "tiny" else "smollm2-135m-instruct")


def conversations_of(examples):
    return [[(m.role, m.content) for m in ex.messages] for ex in examples]


@pytest.mark.parametrize("max_seq_len", [40, 200])
def test_chunked_counts_equal_full_encoding(tokenizer, max_seq_len):
    """Lengths, trainable tokens and answer ends from chunks equal full encoding, for chat rows and for code and
    multi-line rows (the rows that used to send all counting to the slow path), with and without truncation."""
    conversations = conversations_of(rows(60) + code_rows(40))
    counter = FastCounter(tokenizer, conversations)
    assert counter.eligible.all()
    fast = counter.counts(np.arange(len(conversations)), max_seq_len)
    exact = exact_counts(tokenizer, conversations, max_seq_len, batch_size=16)
    assert not fast.differs(exact).any()
    assert (exact.trainable > 0).all() or max_seq_len == 40


def test_contents_that_could_merge_with_the_template_are_counted_in_full(tmp_path):
    """An answer opening with blank lines meets the template's "\\n" in one whitespace run: that row alone is
    counted by full encoding, the rest stay chunked, and every count is still exact."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    odd = Example(id="odd:0", source="o.jsonl", row=0, line=1,
                  messages=(Message("user", "Say it"), Message("assistant", "\n\n  indented answer")))
    examples = [*code_rows(10), odd]
    counter = FastCounter(tokenizer, conversations_of(examples))
    assert counter.eligible.tolist() == [True] * 10 + [False]
    ctx = StageContext("token_stats", tmp_path / "rejected", extra={"tokenizer": tokenizer})
    _, record = TokenStats(TokenStats.Config(max_seq_len=512)).run(examples, ctx)
    assert record.findings["counting"] == {"method": "chunked", "chunked_rows": 10, "full_rows": 1,
                                           "verified_rows": 10}
    exact = exact_counts(tokenizer, conversations_of(examples), 512, 64)
    assert record.findings["length"]["max"] == exact.lengths.max()
    assert record.findings["trainable_tokens"]["total"] == exact.trainable.sum()


def test_a_disagreeing_sample_counts_every_row_in_full(tmp_path, tiny_tokenizer_dir, monkeypatch):
    """When the verification sample differs (a tokenizer the chunk rule does not hold for), the stage counts
    every row by full encoding and says why; the findings equal those of `counting: full`."""
    tokenizer = load_tokenizer(str(tiny_tokenizer_dir))
    real = FastCounter.counts
    monkeypatch.setattr(FastCounter, "counts", lambda self, r, limit: real(self, r, limit)._replace(
        lengths=real(self, r, limit).lengths + 1))
    findings = []
    for counting in ("auto", "full"):
        ctx = StageContext("token_stats", None, extra={"tokenizer": tokenizer})
        _, record = TokenStats(TokenStats.Config(max_seq_len=40, counting=counting)).run(code_rows(12), ctx)
        findings.append(record.findings)
    assert findings[0].pop("counting") == {"method": "full", "chunked_rows": 0,
                                           "reason": "chunked counts differed on 12 of 12 sampled rows"}
    assert findings[1].pop("counting") == {"method": "full", "chunked_rows": 0}
    assert findings[0] == findings[1]


def test_truncated_rows_and_zero_trainable_rows(tmp_path, tokenizer):
    long_prompt = Example(id="long:0", source="l.jsonl", row=0, line=1,
                          messages=(Message("user", "word " * 400), Message("assistant", "ok")))
    stage = TokenStats(TokenStats.Config(max_seq_len=120))
    ctx = StageContext("token_stats", tmp_path / "rejected", extra={"tokenizer": tokenizer, "tokenizer_name": "t"})
    kept, record = stage.run([*rows(5), long_prompt], ctx)
    assert [ex.id for ex in kept] == [f"r:{i}" for i in range(5)]
    assert record.findings["rejected_by_reason"] == {"zero_trainable_tokens": 1}
    assert record.findings["truncated_rows"] == 1 and record.findings["truncated_example_ids"] == ["long:0"]
    assert record.findings["zero_trainable_rows"] == 1
    assert record.findings["counting"]["method"] == "chunked"
    assert sum(record.findings["histogram"]["counts"]) == 6
    assert record.findings["length"]["max"] > 400
