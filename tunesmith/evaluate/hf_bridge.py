"""Base class of tunesmith's offline Hugging Face `evaluate` modules (folders under `hf_modules/`).

Each module is a two-line subclass naming its metrics; `_compute` calls `corpus_scores`, so
`evaluate.load(module_path("bleu"))` gives the numbers tunesmith reports, without the Hub.
"""

from __future__ import annotations

import datasets
import evaluate

from tunesmith.evaluate.metrics import DESCRIPTIONS, corpus_scores

INPUTS = """
Args:
    predictions: list of generated texts, one per example.
    references: list of reference lists (one or more references per example; counts may differ), or a list
        of strings for exactly one reference per example.
Returns:
    {metric name: score on a 0-100 scale, ..., "versions": {metric name: version or sacrebleu signature}}
"""

# one reference per example (a string) or several (a list of strings)
FEATURES = [
    datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
    ),
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
]


class TunesmithMetric(evaluate.Metric):
    """Scores exactly as `tunesmith.evaluate.metrics.corpus_scores` does for `metric_names`."""

    metric_names: tuple[str, ...] = ()

    def _info(self) -> evaluate.MetricInfo:
        description = "; ".join(DESCRIPTIONS[name] for name in self.metric_names)
        return evaluate.MetricInfo(
            description=f"tunesmith: {description}",
            citation="",
            inputs_description=INPUTS,
            features=FEATURES,
            homepage="",
            codebase_urls=[],
            reference_urls=[],
        )

    def _compute(self, predictions: list[str], references: list) -> dict:
        nested = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
        values = corpus_scores(list(predictions), nested, list(self.metric_names))
        return {**{name: v.value for name, v in values.items()}, "versions": {n: v.version for n, v in values.items()}}
