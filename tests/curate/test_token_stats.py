"""token_stats: chunked counting equals full encoding; truncation and zero-trainable rows; findings.

Run: .venv/bin/python -m pytest tests/curate/test_token_stats.py -q
"""

import numpy as np
import pytest

from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext
from tunesmith.curate.token_stats import TokenStats
from tunesmith.models import load_tokenizer


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


@pytest.fixture(params=["tiny", "embedded"])
def tokenizer(request, tiny_tokenizer_dir):
    return load_tokenizer(str(tiny_tokenizer_dir) if request.param == "tiny" else "smollm2-135m-instruct")


@pytest.mark.parametrize("max_seq_len", [40, 200])
def test_chunked_counts_equal_full_encoding(tokenizer, max_seq_len):
    stage = TokenStats(TokenStats.Config(max_seq_len=max_seq_len))  # 40 truncates inside some rows
    conversations = [[(m.role, m.content) for m in ex.messages] for ex in rows(60)]
    fast_len, fast_trainable, fast = stage._fast_counts(tokenizer, conversations)
    exact_len, exact_trainable = stage._exact_counts(tokenizer, conversations)
    assert fast.all()
    assert np.array_equal(fast_len, exact_len) and np.array_equal(fast_trainable, exact_trainable)
    assert (exact_trainable > 0).all() or max_seq_len == 40


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
