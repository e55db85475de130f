"""Perplexity of the base and the tuned model on the same texts, with a paired bootstrap interval.

Each resample draws examples with replacement and recomputes both corpus perplexities from the drawn
examples' summed NLL and token counts (token-weighted, like the full-set value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tunesmith.artifacts import MetricComparison
from tunesmith.evaluate.corpus_stats import resample_weights
from tunesmith.evaluate.perplexity import ExampleNll, Which

VERSIONS = {
    "response": "exp(sum NLL / tokens) over assistant tokens of the chat-template rendering",
    "sequence": "exp(sum NLL / tokens) over every predicted token of the chat-template rendering",
    "general": "exp(sum NLL / tokens) over plain paragraphs, no chat template",
}


def _perplexities(nll: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return np.exp(np.minimum(nll / np.maximum(tokens, 1), 700))


def compare_perplexity(
    name: str, base: Sequence[ExampleNll], tuned: Sequence[ExampleNll], which: Which, version: str,
    resamples: int, confidence: float, seed: int,
) -> MetricComparison:
    """Base vs tuned perplexity on identical examples; lower is better, so an improvement has delta < 0."""
    if [b.id for b in base] != [t.id for t in tuned]:
        raise ValueError("base and tuned perplexities must cover the same examples in the same order")
    tokens = np.array([getattr(b, f"{which}_tokens") for b in base], dtype=np.float64)
    base_nll = np.array([getattr(b, f"{which}_nll") for b in base], dtype=np.float64)
    tuned_nll = np.array([getattr(t, f"{which}_nll") for t in tuned], dtype=np.float64)
    base_value = math.exp(min(math.fsum(base_nll) / max(tokens.sum(), 1), 700))
    tuned_value = math.exp(min(math.fsum(tuned_nll) / max(tokens.sum(), 1), 700))
    weights = resample_weights(len(base), resamples, seed)
    counted = weights @ tokens
    deltas = _perplexities(weights @ tuned_nll, counted) - _perplexities(weights @ base_nll, counted)
    tail = 100 * (1 - confidence) / 2
    low, high = (float(v) for v in np.percentile(deltas, [tail, 100 - tail]))
    return MetricComparison(
        name=name, group="perplexity", higher_is_better=False, version=version, base=base_value, tuned=tuned_value,
        delta=tuned_value - base_value, ci_low=low, ci_high=high, confidence=confidence,
        excludes_zero=low > 0 or high < 0, n=len(base),
    )
