"""Batched greedy generation of assistant answers, identical to generating one prompt at a time.

Prompts are rendered with the tokenizer's chat template (plus the generation prompt), left-padded in
length-bucketed batches and decoded greedily until the end of turn. Used by the eval stage for both the
baseline and the tuned model, with the same settings.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from tunesmith.chat import encode_prompts, end_of_turn
from tunesmith.errors import UsageError
from tunesmith.evaluate.batching import length_buckets, pad_batch
from tunesmith.evaluate.config import GenerationSettings


@dataclass(frozen=True)
class Generations:
    """Answers in prompt order, the tokens generated for each (stop token included) and the wall time."""

    texts: list[str]
    new_tokens: list[int]
    seconds: float

    @property
    def total_tokens(self) -> int:
        return sum(self.new_tokens)


def stop_token_ids(tokenizer) -> list[int]:
    """The end-of-turn token id and the tokenizer's eos id (deduplicated), where each is a single token."""
    ids = []
    for text in (end_of_turn(tokenizer), tokenizer.eos_token):
        encoded = tokenizer.encode(text, add_special_tokens=False) if text else []
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    if not ids:
        raise UsageError("the tokenizer has no single-token end of turn or eos to stop generation at")
    return ids


@contextmanager
def _quiet_generation():
    """Silence transformers' per-call generation notices (flags the model's own config sets, cache notes)."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _generation_config(settings: GenerationSettings, stop_ids: list[int], pad_id: int):
    from transformers import GenerationConfig

    # explicit neutral values: the model's own generation_config must not change greedy decoding
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        min_new_tokens=0,
        eos_token_id=stop_ids,
        pad_token_id=pad_id,
    )


def _decode(tokenizer, new_ids: list[int], stop_ids: list[int]) -> tuple[str, int]:
    """(answer, tokens generated) for one row: cut at the first stop; specials, end of turn and outer spaces go."""
    cut = next((k for k, t in enumerate(new_ids) if t in stop_ids), None)
    answer_ids = new_ids if cut is None else new_ids[:cut]
    text = tokenizer.decode(answer_ids, skip_special_tokens=True)
    eot = end_of_turn(tokenizer)
    if eot and eot in text:
        text = text[: text.index(eot)]
    return text.strip(), len(new_ids) if cut is None else cut + 1


def generate_answers(
    model, tokenizer, conversations: Sequence[Sequence[dict]], settings: GenerationSettings | None = None
) -> Generations:
    """Greedy answers to prompt conversations (all messages before the final assistant turn), in input order."""
    settings = settings or GenerationSettings()
    if not conversations:
        return Generations(texts=[], new_tokens=[], seconds=0.0)
    model.eval()
    device = next(model.parameters()).device
    stop_ids = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    config = _generation_config(settings, stop_ids, pad_id)
    prompts = encode_prompts(tokenizer, conversations)
    texts, counts = [""] * len(prompts), [0] * len(prompts)
    start = time.perf_counter()
    with torch.inference_mode(), _quiet_generation():
        for bucket in length_buckets([len(p) for p in prompts], settings.batch_size):
            batch = pad_batch([prompts[i] for i in bucket], pad_id, side="left")
            # generate derives position ids from the mask itself (and extends them while decoding)
            inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
            output = model.generate(**inputs, generation_config=config)
            width = inputs["input_ids"].shape[1]
            for row, i in enumerate(bucket):
                texts[i], counts[i] = _decode(tokenizer, output[row, width:].tolist(), stop_ids)
    return Generations(texts=texts, new_tokens=counts, seconds=time.perf_counter() - start)
