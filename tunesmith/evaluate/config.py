"""The eval config: which run, which split, how to generate, which metrics, how to bootstrap."""

from __future__ import annotations

from pydantic import Field, field_validator

from tunesmith.config import StrictModel
from tunesmith.evaluate.generation import GenerationSettings
from tunesmith.evaluate.metrics import parse_metric_names


class BootstrapSettings(StrictModel):
    resamples: int = Field(1000, ge=100, description="Paired bootstrap resamples of the examples.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Coverage of the percentile interval of each delta.")
    seed: int = Field(0, description="Seed of the resampling, so intervals are reproducible.")


class EvalConfig(StrictModel):
    run: str = Field(description="A finished run: runs/<id>/run.json or its folder. The card comes from the run.")
    split: str = Field("test", description="The card's held-out split to score both models on.")
    max_examples: int | None = Field(
        None, ge=1, description="Score only the first N examples of the split (in file order); None for all."
    )
    max_seq_len: int = Field(512, ge=8, description="Rows are truncated to this many tokens for perplexity.")
    batch_size: int = Field(8, ge=1, description="Rows per forward pass for perplexity (length-bucketed).")
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    metrics: list[str] = Field(
        default_factory=lambda: ["bleu", "chrf", "rouge", "exact_match"],
        validate_default=True,  # expanded like a written list, so both give the same eval id
        description="Text metrics on generated answers: bleu, chrf, rouge (1, 2, L, Lsum), exact_match.",
    )
    general_text: str | None = Field(
        "builtin", description="Forgetting check: builtin (prose shipped with tunesmith), a text file with "
        "blank-line separated paragraphs, or null to skip."
    )
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)
    headline: str = Field("rougeL", description="The metric the report's verdict is stated in.")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        return parse_metric_names(names)
