"""Paired bootstrap: vectorised corpus BLEU/chrF equal sacrebleu on resamples; intervals behave as they should.

Synthetic systems over a small vocabulary: a base that garbles 60% of words and a tuned one that garbles 20%.
Offline, a couple of seconds:
    pytest tests/evaluate/test_compare.py -q
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU, CHRF

from tunesmith.evaluate import corpus_stats
from tunesmith.evaluate.compare import PairedComparison, paired_bootstrap
from tunesmith.evaluate.metrics import corpus_scores

WORDS = "the a cat dog sat ran on under mat rug quickly slowly big small red blue".split()


def _system(refs: list[str], garble: float, rng: random.Random) -> list[str]:
    return [" ".join(w if rng.random() > garble else rng.choice(WORDS) for w in ref.split()) for ref in refs]


@pytest.fixture(scope="module")
def data() -> dict:
    rng = random.Random(0)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) for _ in range(200)]
    second = [_system([r], 0.3, rng)[0] for r in refs[:120]]  # 120 examples get a second reference
    references = [[r, s] if i < 120 else [r] for i, (r, s) in enumerate(zip(refs, second + [""] * 80))]
    return {"refs": references, "base": _system(refs, 0.6, rng), "tuned": _system(refs, 0.2, rng)}


def _sacrebleu_score(name: str, hyps: list[str], refs: list[list[str]]) -> float:
    width = max(map(len, refs))
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(width)]
    return (BLEU() if name == "bleu" else CHRF()).corpus_score(hyps, streams).score


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_vectorised_corpus_scores_equal_sacrebleu(data, name):
    hyps, refs = data["tuned"], data["refs"]
    stats = np.asarray(corpus_stats.example_stats(name, hyps, refs), dtype=np.float64)
    identity = corpus_stats.score_from_sums(name, stats.sum(axis=0))[0]
    assert identity == pytest.approx(_sacrebleu_score(name, hyps, refs), rel=1e-12, abs=1e-12)
    weights = corpus_stats.resample_weights(len(hyps), 5, seed=7)
    vectorised = corpus_stats.score_from_sums(name, weights @ stats)
    for row, value in zip(weights, vectorised):
        picked = np.repeat(np.arange(len(hyps)), row.astype(int))
        expected = _sacrebleu_score(name, [hyps[i] for i in picked], [refs[i] for i in picked])
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_vectorised_bleu_handles_degenerate_corpora():
    hyps, refs = ["x y", "z", ""], [["a b c d"], ["a"], ["b"]]  # no matches at all; an empty hypothesis
    stats = np.asarray(corpus_stats.example_stats("bleu", hyps, refs), dtype=np.float64)
    assert (
        corpus_stats.score_from_sums("bleu", stats.sum(axis=0))[0]
        == BLEU().corpus_score(hyps, [[r[0] for r in refs]]).score
    )
    hyps = ["a b", "c"]  # matches but no 3- or 4-grams: sacrebleu stops at the first empty order
    stats = np.asarray(corpus_stats.example_stats("bleu", hyps, [["a b c"], ["c"]]), dtype=np.float64)
    expected = BLEU().corpus_score(hyps, [["a b c", "c"]]).score
    assert corpus_stats.score_from_sums("bleu", stats.sum(axis=0))[0] == pytest.approx(expected, abs=1e-12)


def test_identical_systems_give_zero_delta_and_interval(data):
    result = paired_bootstrap(data["base"], list(data["base"]), data["refs"], resamples=200)
    for comparison in result.values():
        assert comparison.delta == 0.0 and comparison.ci_low == 0.0 and comparison.ci_high == 0.0
        assert not comparison.excludes_zero and comparison.wins == comparison.losses == 0
        assert comparison.ties == comparison.n == 200


def test_clearly_better_system_wins_with_an_interval_above_zero(data):
    started = time.perf_counter()
    result = paired_bootstrap(data["base"], data["tuned"], data["refs"], resamples=1000, seed=3)
    assert time.perf_counter() - started < 10  # about half a second on one core; generous for busy CI machines
    corpus = corpus_scores(data["base"], data["refs"])
    for name, comparison in result.items():
        assert isinstance(comparison, PairedComparison)
        assert comparison.base == corpus[name].value  # the point values are the plain corpus scores
        assert comparison.delta == pytest.approx(comparison.tuned - comparison.base)
        assert comparison.ci_low <= comparison.delta <= comparison.ci_high
        assert comparison.excludes_zero and comparison.ci_low > 0
        assert comparison.wins > comparison.losses
        assert comparison.wins + comparison.ties + comparison.losses == comparison.n == 200
    reverse = paired_bootstrap(data["tuned"], data["base"], data["refs"], ["bleu"], resamples=300)["bleu"]
    assert reverse.ci_high < 0 and reverse.excludes_zero and reverse.losses > reverse.wins


def test_bootstrap_is_deterministic_for_a_seed(data):
    args = (data["base"][:50], data["tuned"][:50], data["refs"][:50], "bleu,rougeL")
    first, again = paired_bootstrap(*args, resamples=100, seed=1), paired_bootstrap(*args, resamples=100, seed=1)
    assert first == again
    other = paired_bootstrap(*args, resamples=100, seed=2)
    assert other["bleu"].ci_low != first["bleu"].ci_low
    assert other["bleu"].delta == first["bleu"].delta


def test_bad_arguments_raise_value_errors(data):
    with pytest.raises(ValueError, match="3 base predictions but 2 tuned"):
        paired_bootstrap(["a", "b", "c"], ["a", "b"], [["a"], ["b"], ["c"]])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(["a"], ["a"], [["a"]], confidence=1.5)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(["a"], ["a"], [["a"]], resamples=0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(["a", "b", "c", "d."]), max_size=6).map(" ".join),
            st.lists(
                st.lists(st.sampled_from(["a", "b", "c", "d."]), max_size=6).map(" ".join), min_size=1, max_size=3
            ),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_vectorised_scores_equal_sacrebleu_on_tiny_corpora(corpus):
    """Short, empty and unmatched texts reach every branch: empty orders, zero matches, brevity penalty."""
    hyps, refs = [h for h, _ in corpus], [r for _, r in corpus]
    for name in ("bleu", "chrf"):
        stats = np.asarray(corpus_stats.example_stats(name, hyps, refs), dtype=np.float64)
        value = corpus_stats.score_from_sums(name, stats.sum(axis=0))[0]
        assert value == pytest.approx(_sacrebleu_score(name, hyps, refs), rel=1e-12, abs=1e-12)
