"""tunesmith's exact_match as an offline Hugging Face `evaluate` module: `evaluate.load(module_path("exact_match"))`."""

from tunesmith.evaluate import hf_bridge


class TunesmithExactMatch(hf_bridge.TunesmithMetric):
    metric_names = ("exact_match",)
