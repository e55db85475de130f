"""Batched greedy generation equals one prompt at a time, plain greedy decoding, and stops at the end of turn.

Run: .venv/bin/python -m pytest tests/evaluate/test_generation.py -q
"""

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.evaluate.generation import GenerationSettings, encode_prompts, generate_answers, stop_token_ids

WORDS = "Extract the order as JSON . Ana Silva wants 1 lamp sent to Lyon because the building has a narrow".split()
PROMPTS = [[{"role": "user", "content": " ".join(WORDS[: 2 + 2 * i])}] for i in range(7)]
PROMPTS[3] = [{"role": "system", "content": "Ben Okafor"}, *PROMPTS[3]]
NEW = 12


@pytest.fixture(scope="module")
def one_at_a_time(tiny):
    settings = GenerationSettings(max_new_tokens=NEW, batch_size=1)
    return [generate_answers(*tiny, [prompt], settings) for prompt in PROMPTS]


def greedy_ids(model, ids: list[int], steps: int) -> list[int]:
    """Plain argmax decoding without a cache: the definition `generate` must match."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            out.append(int(model(input_ids=torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids) :]


def test_settings_record_greedy_and_the_stop_rule():
    settings = GenerationSettings()
    assert (settings.do_sample, settings.stop, settings.max_new_tokens, settings.batch_size) == (
        False, "end_of_turn", 128, 16)  # fmt: skip
    with pytest.raises(ValueError):
        GenerationSettings(do_sample=True)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batched_answers_equal_one_prompt_at_a_time(tiny, one_at_a_time, batch_size):
    got = generate_answers(*tiny, PROMPTS, GenerationSettings(max_new_tokens=NEW, batch_size=batch_size))
    assert got.texts == [g.texts[0] for g in one_at_a_time]
    assert got.new_tokens == [g.new_tokens[0] for g in one_at_a_time]
    assert got.total_tokens == sum(got.new_tokens) and got.seconds > 0


def test_answers_are_plain_greedy_decoding(tiny, one_at_a_time):
    model, tokenizer = tiny
    for ids, generated in zip(encode_prompts(tokenizer, PROMPTS[:3]), one_at_a_time):
        expected = greedy_ids(model, ids, NEW)
        assert generated.new_tokens[0] == NEW  # a random model does not stop by itself
        assert generated.texts[0] == tokenizer.decode(expected, skip_special_tokens=True).strip()


def test_generation_stops_at_the_end_of_turn(tiny_model_dir, tiny, one_at_a_time):
    """Swap the output rows of <|im_end|> and the k-th greedy token: the answer must end right there."""
    tokenizer = tiny[1]
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(tokenizer) == [eot]
    expected = greedy_ids(tiny[0], encode_prompts(tokenizer, PROMPTS[:1])[0], NEW)
    k = 3
    token = expected[k]
    k = expected.index(token)  # its first appearance is where the swapped model stops
    assert k > 0
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[[eot, token]] = head[[token, eot]].clone()
    got = generate_answers(model, tokenizer, PROMPTS[:1], GenerationSettings(max_new_tokens=NEW, batch_size=1))
    assert got.new_tokens == [k + 1]  # the stop token counts as generated
    assert got.texts == [tokenizer.decode(expected[:k], skip_special_tokens=True).strip()]
    assert "<|im_end|>" not in got.texts[0]
