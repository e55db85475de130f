"""tunesmith's rouge as an offline Hugging Face `evaluate` module: `evaluate.load(module_path("rouge"))`."""

from tunesmith.evaluate import hf_bridge


class TunesmithRouge(hf_bridge.TunesmithMetric):
    metric_names = ("rouge1", "rouge2", "rougeL", "rougeLsum")
