"""tunesmith's bleu as an offline Hugging Face `evaluate` module: `evaluate.load(module_path("bleu"))`."""

from tunesmith.evaluate import hf_bridge


class TunesmithBleu(hf_bridge.TunesmithMetric):
    metric_names = ("bleu",)
