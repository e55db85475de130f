"""Paired comparison of a base and a tuned system on the same examples: delta, bootstrap interval, wins.

Both systems are resampled with the same example indices, so the interval reflects the difference on
these prompts rather than two independent noises. Corpus BLEU/chrF are recomputed at corpus level on
every resample from per-example statistics (`corpus_stats`); ROUGE and exact match are resampled means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.evaluate import corpus_stats
from tunesmith.evaluate.metrics import CORPUS_METRICS, check_inputs, example_scores, mean_score, parse_metric_names


class PairedComparison(StrictModel):
    """Base vs tuned on one metric, with a paired bootstrap interval for the difference."""

    metric: str
    base: float
    tuned: float
    delta: float = Field(description="tuned - base, on the metric's 0-100 scale.")
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int
    excludes_zero: bool = Field(description="True when the whole interval lies on one side of zero.")
    wins: int = Field(description="Examples where the tuned system's per-example score is higher.")
    ties: int
    losses: int
    n: int
    higher_is_better: bool = True


def paired_bootstrap(
    base_predictions: Sequence[str],
    tuned_predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    metrics: str | Sequence[str] | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, PairedComparison]:
    """Compare two systems' answers to the same prompts, one `PairedComparison` per metric.

    Args:
        references: references[i] lists the reference texts of example i.
        resamples: bootstrap resamples of the example indices (drawn with replacement, shared by both systems).
        confidence: coverage of the percentile interval of the delta, e.g. 0.95 -> 2.5th to 97.5th percentile.
    """
    _check_arguments(base_predictions, tuned_predictions, references, resamples, confidence)
    names = parse_metric_names(metrics)
    weights = corpus_stats.resample_weights(len(references), resamples, seed)
    averaged = [m for m in names if m not in CORPUS_METRICS]
    base_examples = example_scores(base_predictions, references, averaged) if averaged else {}
    tuned_examples = example_scores(tuned_predictions, references, averaged) if averaged else {}
    results: dict[str, PairedComparison] = {}
    for name in names:
        if name in CORPUS_METRICS:
            base = _corpus_metric(name, base_predictions, references, weights)
            tuned = _corpus_metric(name, tuned_predictions, references, weights)
        else:
            base, tuned = (
                _averaged_metric(base_examples[name], weights),
                _averaged_metric(tuned_examples[name], weights),
            )
        low, high = _percentile_interval(tuned.resampled - base.resampled, confidence)
        wins, ties, losses = _win_tie_loss(base.examples, tuned.examples)
        results[name] = PairedComparison(
            metric=name,
            base=base.value,
            tuned=tuned.value,
            delta=tuned.value - base.value,
            ci_low=low,
            ci_high=high,
            confidence=confidence,
            resamples=resamples,
            seed=seed,
            excludes_zero=low > 0 or high < 0,
            wins=wins,
            ties=ties,
            losses=losses,
            n=len(references),
        )
    return results


def _check_arguments(
    base: Sequence[str], tuned: Sequence[str], references: Sequence[Sequence[str]], resamples: int, confidence: float
) -> None:
    if len(base) != len(tuned):
        raise ValueError(
            f"{len(base)} base predictions but {len(tuned)} tuned ones; they must answer the same prompts"
        )
    check_inputs(base, references)
    check_inputs(tuned, references)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


class _System(NamedTuple):
    value: float  # the corpus value on all examples
    examples: np.ndarray  # per-example scores, for wins/ties/losses
    resampled: np.ndarray  # the corpus value on each bootstrap resample


def _corpus_metric(
    name: str, predictions: Sequence[str], references: Sequence[Sequence[str]], weights: np.ndarray
) -> _System:
    """BLEU or chrF from one pass of sacrebleu statistics: corpus value, sentence scores, resampled values."""
    stats = corpus_stats.example_stats(name, predictions, references)
    sentences = np.asarray(corpus_stats.sentence_scores(name, stats))
    resampled = corpus_stats.score_from_sums(name, weights @ np.asarray(stats, dtype=np.float64))
    return _System(corpus_stats.corpus_score(name, stats), sentences, resampled)


def _averaged_metric(example_values: Sequence[float], weights: np.ndarray) -> _System:
    """A mean of per-example scores (ROUGE, exact match); a resample's mean is its weighted sum over n."""
    examples = np.asarray(example_values, dtype=np.float64)
    return _System(mean_score(examples), examples, weights @ examples / len(examples))


def _percentile_interval(deltas: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return float(low), float(high)


def _win_tie_loss(base: np.ndarray, tuned: np.ndarray, tolerance: float = 1e-9) -> tuple[int, int, int]:
    """Per-example counts; differences within `tolerance` (float noise on a 0-100 scale) are ties."""
    diff = tuned - base
    wins, losses = int(np.sum(diff > tolerance)), int(np.sum(diff < -tolerance))
    return wins, len(diff) - wins - losses, losses
