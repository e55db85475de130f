"""Perplexity: batched, length-bucketed NLL equals a one-at-a-time reference; token counts; the general text.

Run: .venv/bin/python -m pytest tests/evaluate/test_perplexity.py -q
"""

import math

import pytest
import torch

from tunesmith.chat import IGNORE_INDEX, encode_rows
from tunesmith.evaluate.batching import length_buckets
from tunesmith.evaluate.perplexity import (
    ExampleNll,
    PerplexityResult,
    example_nll,
    general_text_nll,
    load_general_text,
    perplexity,
)

WORDS = (
    "Extract the order as JSON . Ana Silva wants 1 lamp sent to Lyon . The customer asked for careful packing "
    "and a call before delivery , because the building has a narrow staircase and no lift at all"
).split()


def conversation(i: int) -> list[dict]:
    """Rows of different lengths; every third has a system turn and two assistant turns."""
    user = " ".join(WORDS[: 3 + 3 * i])
    answer = " ".join(WORDS[i % 5 : i % 5 + 2 + i % 4])
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    if i % 3 == 0:
        messages = [
            {"role": "system", "content": "Ana Silva"},
            *messages,
            {"role": "user", "content": "sent to Lyon"},
            {"role": "assistant", "content": "lamp"},
        ]
    return messages


@pytest.fixture(scope="module")
def encoded(tiny):
    rows = [{"id": f"r{i}", "messages": conversation(i)} for i in range(10)]
    return encode_rows(tiny[1], rows, max_seq_len=256)


def reference(model, row: dict) -> tuple[float, int, float, int]:
    """One row, no padding, transformers' own shifted loss (a mean) times the number of tokens it covers."""
    ids = torch.tensor([row["input_ids"]])
    labels = torch.tensor([row["labels"]])
    with torch.no_grad():
        n_response = int((labels[0, 1:] != IGNORE_INDEX).sum())
        response = float(model(input_ids=ids, labels=labels).loss) * n_response
        sequence = float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
    return response, n_response, sequence, ids.shape[1] - 1


@pytest.fixture(scope="module")
def references(tiny, encoded) -> list[tuple[float, int, float, int]]:
    return [reference(tiny[0], row) for row in encoded]


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batched_nll_equals_the_one_at_a_time_reference(tiny, encoded, references, batch_size, padding_side):
    got = example_nll(tiny[0], encoded, batch_size=batch_size, padding_side=padding_side)
    assert [n.id for n in got] == [row["id"] for row in encoded]  # input order restored
    for nll, (response, n_response, sequence, n_sequence) in zip(got, references):
        assert (nll.response_tokens, nll.sequence_tokens) == (n_response, n_sequence)
        assert nll.response_nll == pytest.approx(response, rel=1e-5)
        assert nll.sequence_nll == pytest.approx(sequence, rel=1e-5)
    total, tokens = sum(r[0] for r in references), sum(r[1] for r in references)
    assert perplexity(got) == pytest.approx(math.exp(total / tokens), rel=1e-5)


def test_the_batches_really_mix_lengths(encoded):
    lengths = [len(row["input_ids"]) for row in encoded]
    assert len(set(lengths)) >= 8
    assert any(len({lengths[i] for i in bucket}) > 1 for bucket in length_buckets(lengths, 3))


def test_response_tokens_are_the_assistant_turns_and_their_end_of_turn(tiny, encoded):
    tokenizer = tiny[1]
    got = example_nll(tiny[0], encoded, batch_size=4)
    for i, (nll, row) in enumerate(zip(got, encoded)):
        answers = [m["content"] for m in conversation(i) if m["role"] == "assistant"]
        expected = sum(len(tokenizer.encode(a, add_special_tokens=False)) + 1 for a in answers)  # + <|im_end|>
        assert nll.response_tokens == expected
        assert nll.sequence_tokens == len(row["input_ids"]) - 1
        assert nll.response_tokens < nll.sequence_tokens


def test_max_tokens_per_batch_caps_padded_tokens_without_changing_results(tiny, encoded):
    lengths = [len(row["input_ids"]) for row in encoded]
    for bucket in length_buckets(lengths, 8, max_tokens=100):
        assert len(bucket) == 1 or len(bucket) * max(lengths[i] for i in bucket) <= 100
    capped = example_nll(tiny[0], encoded, batch_size=8, max_tokens_per_batch=100)
    plain = example_nll(tiny[0], encoded, batch_size=1)
    assert [n.sequence_nll for n in capped] == pytest.approx([n.sequence_nll for n in plain], rel=1e-5)


def test_perplexity_sums_first_and_divides_once():
    nlls = [ExampleNll("a", 2.0, 1, 3.0, 2), ExampleNll("b", 6.0, 3, 6.0, 4)]
    assert perplexity(nlls) == pytest.approx(math.exp(8.0 / 4))  # not the mean of exp(2) and exp(2)
    result = PerplexityResult.from_nlls(nlls, "sequence")
    assert (result.nll_sum, result.tokens, result.n_examples) == (9.0, 6, 2)
    assert result.value == pytest.approx(math.exp(1.5))
    with pytest.raises(ValueError, match="no response tokens"):
        perplexity([ExampleNll("c", 0.0, 0, 0.0, 0)])


def test_general_text_is_scored_as_plain_sequences(tiny):
    model, tokenizer = tiny
    paragraphs = load_general_text()
    assert len(paragraphs) >= 30 and all(len(p.split()) > 20 for p in paragraphs)
    got = general_text_nll(model, tokenizer, paragraphs[:4], batch_size=3)
    for nll, text in zip(got, paragraphs[:4]):
        ids = tokenizer(text)["input_ids"]
        assert nll.sequence_tokens == nll.response_tokens == len(ids) - 1
        with torch.no_grad():
            loss = float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss)
        assert nll.sequence_nll == pytest.approx(loss * (len(ids) - 1), rel=1e-5)
