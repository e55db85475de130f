"""Text metrics for generated answers: BLEU, chrF, ROUGE and exact match, all on a 0-100 scale.

BLEU and chrF are corpus-level scores from sacrebleu (sum n-gram statistics over the corpus, then divide
once), not means of sentence scores; ROUGE and exact match are means of per-example scores. Each value
carries the version string that reproduces it. `example_scores` gives the per-example view used for
win/tie/loss counts and for sorting a report by gain.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.errors import UsageError
from tunesmith.evaluate.corpus_stats import example_stats, reference_streams, sacrebleu_metric, sentence_scores

ROUGE_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
CORPUS_METRICS = ("bleu", "chrf")  # scored from corpus-summed statistics; the rest are means of example scores
METRICS = ("bleu", "chrf", *ROUGE_METRICS, "exact_match")
GROUPS = {"rouge": ROUGE_METRICS, "all": METRICS}
HF_MODULES = ("bleu", "chrf", "rouge", "exact_match")
_HF_MODULE_DIR = Path(__file__).parent / "hf_modules"

DESCRIPTIONS = {
    "bleu": "corpus BLEU (sacrebleu, 13a tokens, exp smoothing)",
    "chrf": "corpus chrF2 (sacrebleu, character 6-grams)",
    "rouge1": "ROUGE-1 F1 (unigram overlap), mean over examples",
    "rouge2": "ROUGE-2 F1 (bigram overlap), mean over examples",
    "rougeL": "ROUGE-L F1 (longest common subsequence), mean over examples",
    "rougeLsum": "ROUGE-Lsum F1 (summary-level LCS over newline-split sentences), mean over examples",
    "exact_match": "share of answers equal to a reference after stripping outer whitespace",
}


class MetricValue(StrictModel):
    """One corpus-level metric value and what it takes to reproduce it."""

    name: str
    value: float = Field(description="Score on a 0-100 scale (sacrebleu's convention), unrounded.")
    higher_is_better: bool = True
    version: str = Field(description="sacrebleu signature, or the library, options and aggregation used.")
    description: str = ""


def parse_metric_names(names: str | Sequence[str] | None) -> list[str]:
    """Canonical metric names from "bleu,chrf,rouge" or a list; groups expand ("rouge", "all"); None = all.

    Matching ignores case; the result keeps first-seen order without duplicates.
    """
    if names is None:
        return list(METRICS)
    parts = names.split(",") if isinstance(names, str) else [p for item in names for p in str(item).split(",")]
    lookup = {name.lower(): (name,) for name in METRICS} | {group: members for group, members in GROUPS.items()}
    chosen: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part.lower() not in lookup:
            raise UsageError(_unknown_message("metric", part, [*METRICS, *GROUPS]))
        chosen += [name for name in lookup[part.lower()] if name not in chosen]
    if not chosen:
        raise UsageError(f"no metric named in {names!r}; choose from {', '.join([*METRICS, *GROUPS])}")
    return chosen


def _unknown_message(kind: str, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
    by_lower = {k.lower(): k for k in known}
    hint = f"; did you mean {by_lower[close[0]]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})"


def module_path(name: str) -> str:
    """Folder of the offline Hugging Face `evaluate` module for `name`: pass it to `evaluate.load(...)`.

    Names: bleu, chrf, rouge (all four ROUGE variants), exact_match; a `tunesmith_` prefix is accepted.
    """
    short = name.removeprefix("tunesmith_")
    if short not in HF_MODULES:
        raise UsageError(_unknown_message("evaluate module", name, HF_MODULES))
    return str(_HF_MODULE_DIR / f"tunesmith_{short}")


def check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """Raise ValueError unless there is one non-empty list of reference strings per prediction."""
    if len(predictions) != len(references):
        raise UsageError(f"{len(predictions)} predictions but {len(references)} reference lists; they must match")
    if not predictions:
        raise UsageError("no examples to score")
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise UsageError(f"prediction {i} is {type(pred).__name__}, not a string")
        if isinstance(refs, str) or not refs:
            raise UsageError(f"example {i}: references must be a non-empty list of strings, got {refs!r:.80}")
        if not all(isinstance(r, str) for r in refs):
            raise UsageError(f"example {i}: every reference must be a string")


def rouge_version(name: str) -> str:
    """What reproduces a ROUGE value: library version, stemmer, sentence splitting, reference and corpus rules."""
    sentences = "|sentences:split on newline" if name == "rougeLsum" else ""
    return (
        f"rouge_score {package_version('rouge-score')}|stemmer:porter|tokenizer:default{sentences}"
        "|refs:max F1 over refs per example|aggregate:mean of per-example F1"
    )


EXACT_MATCH_VERSION = "exact_match|strip|max over refs"


def corpus_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], metrics: str | Sequence[str] | None = None
) -> dict[str, MetricValue]:
    """Corpus-level scores, keyed by metric name in the requested order.

    Args:
        predictions: one generated text per example.
        references: references[i] lists the reference texts of example i (one or more; counts may differ).
        metrics: names or groups as `parse_metric_names` takes them; None means all.
    """
    names = parse_metric_names(metrics)
    check_inputs(predictions, references)
    averaged = [n for n in names if n not in CORPUS_METRICS]
    per_example = example_scores(predictions, references, averaged) if averaged else {}
    values: dict[str, MetricValue] = {}
    for name in names:
        if name in CORPUS_METRICS:
            metric = sacrebleu_metric(name)
            score = metric.corpus_score(list(predictions), reference_streams(references)).score
            version = metric.get_signature().format()
        else:
            score = mean_score(per_example[name])
            version = EXACT_MATCH_VERSION if name == "exact_match" else rouge_version(name)
        values[name] = MetricValue(name=name, value=float(score), version=version, description=DESCRIPTIONS[name])
    return values


def mean_score(scores: Sequence[float] | np.ndarray) -> float:
    """The corpus value of a per-example metric (ROUGE, exact match): a plain mean."""
    return float(np.mean(np.asarray(scores, dtype=np.float64)))


def example_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], metrics: str | Sequence[str] | None = None
) -> dict[str, list[float]]:
    """Per-example scores on the 0-100 scale: sentence BLEU (effective order), sentence chrF, ROUGE F1, 0/100 match."""
    names = parse_metric_names(metrics)
    check_inputs(predictions, references)
    scores: dict[str, list[float]] = {}
    rouge_names = [n for n in names if n in ROUGE_METRICS]
    rouge = _rouge_f1(predictions, references, rouge_names) if rouge_names else {}
    for name in names:
        if name in CORPUS_METRICS:
            scores[name] = sentence_scores(name, example_stats(name, predictions, references))
        elif name == "exact_match":
            scores[name] = [
                100.0 if any(p.strip() == r.strip() for r in refs) else 0.0 for p, refs in zip(predictions, references)
            ]
        else:
            scores[name] = rouge[name]
    return scores


def _rouge_f1(
    predictions: Sequence[str], references: Sequence[Sequence[str]], names: Sequence[str]
) -> dict[str, list[float]]:
    """ROUGE F1 x 100 per example; with several references, the best F1 per type (rouge_score's score_multi)."""
    from rouge_score.rouge_scorer import RougeScorer
    from rouge_score.tokenizers import DefaultTokenizer

    # the same tokenizer RougeScorer builds itself, passed in only to skip its INFO log line on every call
    scorer = RougeScorer(list(names), tokenizer=DefaultTokenizer(use_stemmer=True))
    out: dict[str, list[float]] = {name: [] for name in names}
    for pred, refs in zip(predictions, references):
        best = scorer.score_multi(list(refs), pred)
        for name in names:
            out[name].append(100.0 * float(best[name].fmeasure))
    return out
