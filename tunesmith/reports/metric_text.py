"""Metric comparisons in words and fixed-width numbers: labels, signed deltas, intervals and the verdict sentence.

Shared by the run and compare reports. Everything here formats numbers eval.json already holds; nothing is
recomputed beyond the relative change quoted in a sentence.
"""

from __future__ import annotations

import math
from typing import Literal

from tunesmith.artifacts import MetricComparison

Status = Literal["improved", "regressed", "flat"]
MINUS = "\u2212"  # a real minus sign: the same width as "+", so signed columns line up

LABELS = {
    "bleu": "BLEU",
    "chrf": "chrF",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum",
    "exact_match": "exact match",
    "response_perplexity": "response perplexity",
    "sequence_perplexity": "sequence perplexity",
    "general_text_perplexity": "general-text perplexity",
}
STATUS_TEXT = {"improved": "✓ better", "regressed": "✗ worse", "flat": "≈ no significant change"}


def label(name: str) -> str:
    return LABELS.get(name, name)


def places(metric: MetricComparison) -> int:
    """Decimals for one metric's numbers: 1 on the 0-100 scale, more for small values such as perplexities."""
    magnitude = max(abs(metric.base), abs(metric.tuned))
    return 1 if magnitude >= 10 else 2 if magnitude >= 1 else 3


def number(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    if not math.isfinite(value):
        return str(value)
    text = f"{value:+,.{digits}f}" if signed else f"{value:,.{digits}f}"
    if float(text.replace(",", "")) == 0:  # no "-0.0" or "+0.0"
        text = text.lstrip("+-")
    return text.replace("-", MINUS)


def interval(metric: MetricComparison) -> str:
    digits = places(metric)
    return f"[{number(metric.ci_low, digits)}, {number(metric.ci_high, digits)}]"


def delta(metric: MetricComparison) -> str:
    return number(metric.delta, places(metric), signed=True)


def confidence(value: float) -> str:
    return f"{value * 100:g}%"


def status(metric: MetricComparison) -> Status:
    """improved / regressed when the interval excludes zero, on the metric's good or bad side; else flat."""
    if not metric.excludes_zero:
        return "flat"
    return "improved" if metric.improved else "regressed"


def verdict(metric: MetricComparison) -> str:
    """The headline sentence, e.g. "tuned beats base on ROUGE-L by +12.3 [9.8, 14.9] (95% paired bootstrap, n=130)"."""
    name = label(metric.name) + ("" if metric.higher_is_better else " (lower is better)")
    evidence = f"{delta(metric)} {interval(metric)} ({confidence(metric.confidence)} paired bootstrap, n={metric.n})"
    return {
        "improved": f"tuned beats base on {name} by {evidence}",
        "regressed": f"tuned is worse than base on {name} by {evidence}",
        "flat": f"no significant difference between tuned and base on {name}: {evidence}",
    }[status(metric)]


def relative(metric: MetricComparison) -> str:
    """The change as a share of the base value, e.g. "−12%"; empty when the base is zero."""
    if not metric.base:
        return ""
    return number((metric.tuned - metric.base) / abs(metric.base) * 100, 0, signed=True) + "%"


PERPLEXITY_TEXT = {
    "response_perplexity": {
        "improved": "The tuned model finds the reference answers more likely",
        "regressed": "The tuned model finds the reference answers less likely than the base model did",
        "flat": "Perplexity of the reference answers did not change significantly",
    },
    "sequence_perplexity": {
        "improved": "Whole conversations (prompt and answer) became more predictable",
        "regressed": "Whole conversations (prompt and answer) became less predictable",
        "flat": "Perplexity of whole conversations did not change significantly",
    },
    "general_text_perplexity": {
        "improved": "Plain prose got easier for the tuned model: no sign of forgetting",
        "regressed": "Plain prose got harder for the tuned model: a sign of forgetting. Fewer steps, a lower "
        "learning rate or a smaller LoRA rank usually help",
        "flat": "Perplexity on plain prose did not move significantly: no sign of forgetting",
    },
}


def perplexity_sentence(metric: MetricComparison) -> str:
    """One sentence interpreting a perplexity comparison (the general-text one is the forgetting check)."""
    texts = PERPLEXITY_TEXT.get(metric.name, PERPLEXITY_TEXT["sequence_perplexity"])
    digits = places(metric)
    change = f"{number(metric.base, digits)} → {number(metric.tuned, digits)}"
    share = relative(metric)
    return f"{texts[status(metric)]} ({change}{', ' + share if share else ''}; interval {interval(metric)})."
