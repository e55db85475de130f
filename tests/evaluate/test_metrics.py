"""Text metrics equal direct sacrebleu / rouge_score calls; the offline `evaluate` modules give the same numbers.

Hand-made pairs cover one reference, several references and unequal numbers of references. Offline, a few
seconds (most of it importing `evaluate`):
    pytest tests/evaluate/test_metrics.py -q
"""

from __future__ import annotations

import pytest
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU, CHRF

from tunesmith.evaluate.metrics import (
    METRICS,
    MetricValue,
    corpus_scores,
    example_scores,
    module_path,
    parse_metric_names,
)

PREDICTIONS = [
    "The cat sat on the mat.",
    "It is raining heavily in Paris today.",
    "Water boils at 100 degrees.",
    "first line\nsecond line here",
]
ONE_REF = [
    ["The cat is sitting on the mat."],
    ["Today it rains heavily in Paris."],
    ["Water boils at 100 degrees."],
    ["first line\nthe second line"],
]
# unequal numbers of references: 2, 1, 3, 1
VARIED_REFS = [
    ["The cat is sitting on the mat.", "A cat sat on the mat."],
    ["Today it rains heavily in Paris."],
    [
        "Water boils at 100 degrees Celsius.",
        "At sea level water boils at 100 degrees.",
        "  Water boils at 100 degrees. ",
    ],
    ["first line\nthe second line"],
]


def _streams(refs: list[list[str]]) -> list[list[str | None]]:
    width = max(map(len, refs))
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


@pytest.mark.parametrize("refs", [ONE_REF, VARIED_REFS], ids=["one-ref", "varied-refs"])
def test_bleu_and_chrf_equal_sacrebleu_corpus_scores(refs):
    values = corpus_scores(PREDICTIONS, refs, "bleu,chrf")
    bleu, chrf = BLEU(), CHRF()
    expected_bleu = bleu.corpus_score(PREDICTIONS, _streams(refs))
    expected_chrf = chrf.corpus_score(PREDICTIONS, _streams(refs))
    assert values["bleu"].value == expected_bleu.score
    assert values["chrf"].value == expected_chrf.score
    assert values["bleu"].version == bleu.get_signature().format()
    assert values["chrf"].version == chrf.get_signature().format()
    nrefs = "nrefs:1" if refs is ONE_REF else "nrefs:var"
    assert values["bleu"].version.startswith(f"{nrefs}|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_corpus_bleu_is_not_a_mean_of_sentence_bleu():
    corpus = corpus_scores(PREDICTIONS, ONE_REF, ["bleu"])["bleu"].value
    sentences = example_scores(PREDICTIONS, ONE_REF, ["bleu"])["bleu"]
    assert corpus != pytest.approx(sum(sentences) / len(sentences))


@pytest.mark.parametrize("refs", [ONE_REF, VARIED_REFS], ids=["one-ref", "varied-refs"])
def test_rouge_equals_rouge_score_mean_of_best_f1(refs):
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    values = corpus_scores(PREDICTIONS, refs, "rouge")
    examples = example_scores(PREDICTIONS, refs, "rouge")
    scorer = RougeScorer(types, use_stemmer=True)
    for name in types:
        best = [max(scorer.score(r, p)[name].fmeasure for r in rs) for p, rs in zip(PREDICTIONS, refs)]
        assert examples[name] == pytest.approx([100 * f for f in best], abs=1e-9)
        assert values[name].value == pytest.approx(100 * sum(best) / len(best), abs=1e-9)
        assert "max F1 over refs" in values[name].version and "porter" in values[name].version


def test_rouge_lsum_splits_sentences_on_newlines():
    pred, ref = ["b c\na b"], [["a b\nb c"]]
    scores = example_scores(pred, ref, ["rougeL", "rougeLsum"])
    assert scores["rougeLsum"] == [100.0]  # sentence-level LCS matches both lines, whatever their order
    assert scores["rougeL"][0] < 100.0


def test_sentence_scores_equal_sacrebleu_sentence_score():
    examples = example_scores(PREDICTIONS, VARIED_REFS, ["bleu", "chrf"])
    bleu, chrf = BLEU(effective_order=True), CHRF()
    assert examples["bleu"] == [bleu.sentence_score(p, r).score for p, r in zip(PREDICTIONS, VARIED_REFS)]
    assert examples["chrf"] == [chrf.sentence_score(p, r).score for p, r in zip(PREDICTIONS, VARIED_REFS)]


def test_exact_match_strips_and_takes_any_reference():
    examples = example_scores(PREDICTIONS, VARIED_REFS, ["exact_match"])
    assert examples["exact_match"] == [0.0, 0.0, 100.0, 0.0]
    value = corpus_scores(PREDICTIONS, VARIED_REFS, ["exact_match"])["exact_match"]
    assert value.value == 25.0 and value.version == "exact_match|strip|max over refs" and value.higher_is_better


def test_all_metrics_by_default_on_a_0_100_scale():
    values = corpus_scores(PREDICTIONS, VARIED_REFS)
    assert list(values) == list(METRICS)
    assert all(isinstance(v, MetricValue) and 0 <= v.value <= 100 and v.higher_is_better for v in values.values())
    perfect = corpus_scores(["a b c d e"], [["a b c d e"]])
    assert all(v.value == pytest.approx(100) for v in perfect.values())


def test_parse_metric_names_expands_groups_and_suggests():
    assert parse_metric_names("bleu, ROUGE,chrf,rouge1") == ["bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "chrf"]
    assert parse_metric_names(["exact_match", "rougel"]) == ["exact_match", "rougeL"]
    assert parse_metric_names(None) == list(METRICS)
    with pytest.raises(ValueError, match="did you mean 'bleu'"):
        parse_metric_names("blue")
    with pytest.raises(ValueError, match="no metric"):
        parse_metric_names(" , ")


def test_bad_inputs_raise_value_errors_naming_the_problem():
    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        corpus_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="example 1: references must be a non-empty list"):
        corpus_scores(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="no examples"):
        corpus_scores([], [])


@pytest.fixture(scope="module")
def hf_evaluate(tmp_path_factory):
    """`evaluate`, copying module scripts into a temporary folder rather than ~/.cache/huggingface/modules.

    evaluate imports the copies as the package `evaluate_modules` from a folder it appends to sys.path; both
    are undone afterwards so a later `evaluate.load` in this session uses its default folder again.
    """
    import sys

    import evaluate

    if "evaluate_modules" in sys.modules:  # already imported from elsewhere: its package path is fixed
        yield evaluate
        return
    cache = tmp_path_factory.mktemp("hf_modules")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate.config, "HF_MODULES_CACHE", cache)
        yield evaluate
    for name in [m for m in sys.modules if m.split(".")[0] == "evaluate_modules"]:
        del sys.modules[name]
    if str(cache) in sys.path:
        sys.path.remove(str(cache))


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("bleu", ["bleu"]),
        ("chrf", ["chrf"]),
        ("rouge", ["rouge1", "rouge2", "rougeL", "rougeLsum"]),
        ("exact_match", ["exact_match"]),
    ],
)
def test_evaluate_modules_load_offline_and_agree(hf_evaluate, module, names):
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    metric = hf_evaluate.load(module_path(module), keep_in_memory=True)
    result = metric.compute(predictions=PREDICTIONS, references=VARIED_REFS)
    expected = corpus_scores(PREDICTIONS, VARIED_REFS, names)
    assert {n: result[n] for n in names} == {n: v.value for n, v in expected.items()}
    assert result["versions"] == {n: v.version for n, v in expected.items()}
    single = metric.compute(predictions=PREDICTIONS, references=[refs[0] for refs in ONE_REF])  # plain strings
    assert {n: single[n] for n in names} == {n: v.value for n, v in corpus_scores(PREDICTIONS, ONE_REF, names).items()}
    if module == "bleu":
        assert result["bleu"] == BLEU().corpus_score(PREDICTIONS, _streams(VARIED_REFS)).score


def test_module_path_names_a_folder_with_its_script():
    from pathlib import Path

    path = Path(module_path("tunesmith_rouge"))
    assert (path / "tunesmith_rouge.py").is_file()
    with pytest.raises(ValueError, match="did you mean 'chrf'"):
        module_path("chrff")
