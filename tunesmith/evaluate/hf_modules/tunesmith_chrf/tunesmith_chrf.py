"""tunesmith's chrf as an offline Hugging Face `evaluate` module: `evaluate.load(module_path("chrf"))`."""

from tunesmith.evaluate import hf_bridge


class TunesmithChrf(hf_bridge.TunesmithMetric):
    metric_names = ("chrf",)
