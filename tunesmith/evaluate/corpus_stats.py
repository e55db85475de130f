"""sacrebleu's per-example sufficient statistics, and corpus BLEU/chrF vectorised over bootstrap resamples.

sacrebleu's private `_extract_corpus_statistics` / `_compute_score_from_stats` are used in one place, here
(they are what its own significance tests use); the tests pin them to the public API. A corpus score is a function of statistics summed over examples (n-gram matches, totals, lengths), so
a resample is a weight vector over examples: `weights @ stats` gives every resample's sums at once and
the functions below turn those sums into scores with sacrebleu's exact arithmetic (default settings:
BLEU 13a/exp smoothing/4-grams, chrF2 with 6 character orders and no word orders).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_LOG_ZERO = -9999999999.0  # sacrebleu's my_log(0): a zero precision drives the geometric mean to 0


def sacrebleu_metric(name: str, sentence: bool = False):
    """The sacrebleu metric object behind `name` ("bleu" or "chrf"); sentence BLEU uses effective order."""
    from sacrebleu.metrics import BLEU, CHRF

    if name == "bleu":
        return BLEU(effective_order=sentence)
    if name == "chrf":
        return CHRF()
    raise ValueError(f"{name!r} is not a sacrebleu metric; only bleu and chrf are")


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-example reference lists -> sacrebleu's equal-length reference streams.

    sacrebleu wants one stream per reference position, each as long as the predictions. An example with
    fewer references is padded with None, which sacrebleu drops for that example (an empty string would
    count as a real, empty reference); the signature then says `nrefs:var`.
    """
    width = max(len(refs) for refs in references)
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]


def example_stats(name: str, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[int]]:
    """Per-example sufficient statistics, exactly as sacrebleu extracts them inside `corpus_score`.

    BLEU rows are [hyp_len, ref_len, 4 matches, 4 totals]; chrF rows are [hyp, ref, match] per order,
    taken from the reference with the best sentence chrF.
    """
    metric = sacrebleu_metric(name)
    return metric._extract_corpus_statistics(list(predictions), reference_streams(references))


def sentence_scores(name: str, stats: list[list[int]]) -> list[float]:
    """Sentence BLEU (effective order) or sentence chrF per row: what `sentence_score` computes from the same row."""
    metric = sacrebleu_metric(name, sentence=True)
    return [float(metric._compute_score_from_stats(list(row)).score) for row in stats]


def corpus_score(name: str, stats: list[list[int]]) -> float:
    """The corpus score from per-example rows, through sacrebleu's own aggregation (as `corpus_score` does)."""
    return float(sacrebleu_metric(name)._aggregate_and_compute([list(row) for row in stats]).score)


def score_from_sums(name: str, sums: np.ndarray) -> np.ndarray:
    """Corpus scores for each row of summed statistics (r, k) -> (r,)."""
    sums = np.atleast_2d(np.asarray(sums, dtype=np.float64))
    if name == "bleu":
        return bleu_from_sums(sums)
    if name == "chrf":
        return chrf_from_sums(sums)
    raise ValueError(f"{name!r} has no corpus statistics; only bleu and chrf do")


def bleu_from_sums(sums: np.ndarray, max_order: int = 4) -> np.ndarray:
    """sacrebleu's `BLEU.compute_bleu` with exp smoothing and no effective order, one row per corpus."""
    sys_len, ref_len = sums[:, 0], sums[:, 1]
    correct, total = sums[:, 2 : 2 + max_order], sums[:, 2 + max_order : 2 + 2 * max_order]
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0), 1.0)
        # sacrebleu stops at the first order with no hypothesis n-grams; later precisions stay 0
        active = np.cumprod(total > 0, axis=1).astype(bool)
        # exp smoothing: the k-th order with zero matches gets 100 / (2^k * total)
        halvings = np.cumsum(active & (correct == 0), axis=1)
        precision = np.where(correct > 0, 100.0 * correct / total, 100.0 / (2.0**halvings * total))
        log_p = np.where(active, np.log(np.where(active, precision, 1.0)), _LOG_ZERO)
    log_sum = log_p[:, 0].copy()
    for n in range(1, max_order):  # left-to-right, as Python's sum() adds them
        log_sum += log_p[:, n]
    score = bp * np.exp(log_sum / max_order)
    return np.where(correct.sum(axis=1) > 0, score, 0.0)


def chrf_from_sums(sums: np.ndarray, beta: float = 2.0) -> np.ndarray:
    """sacrebleu's `CHRF._compute_f_score` (effective-order averaging, no eps smoothing), one row per corpus."""
    n_hyp, n_ref, n_match = sums[:, 0::3], sums[:, 1::3], sums[:, 2::3]
    valid = (n_hyp > 0) & (n_ref > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(valid, n_match / n_hyp, 0.0)
        rec = np.where(valid, n_match / n_ref, 0.0)
    avg_prec, avg_rec = prec[:, 0].copy(), rec[:, 0].copy()
    for i in range(1, prec.shape[1]):  # same order of additions as sacrebleu
        avg_prec += prec[:, i]
        avg_rec += rec[:, i]
    orders = valid.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg_prec = np.where(orders > 0, avg_prec / orders, 0.0)
        avg_rec = np.where(orders > 0, avg_rec / orders, 0.0)
        factor = beta**2
        score = 100 * ((1 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec))
    return np.where(avg_prec + avg_rec > 0, score, 0.0)


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts of how often each example is drawn in each resample (drawn with replacement)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    flat = (picks + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)
