"""The eval config: which run, which split, how to generate, which metrics, how to bootstrap."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from tunesmith.config import StrictModel, home_path
from tunesmith.evaluate.metrics import parse_metric_names


class GenerationSettings(StrictModel):
    """How answers are generated for evaluation; recorded with the results."""

    max_new_tokens: int = Field(
        128, ge=1, le=131_072, description="Most tokens generated per answer (the end of turn included; at most 131,072)."
    )
    batch_size: int = Field(
        16, ge=1, le=65_536, description="Prompts per generate call; prompts of similar length share one (at most 65,536)."
    )
    do_sample: Literal[False] = Field(
        False, description="Always greedy (no sampling), so answers are reproducible and comparable across models."
    )
    stop: Literal["end_of_turn"] = Field(
        "end_of_turn", description="An answer ends at the chat template's end-of-turn token (or the tokenizer's eos)."
    )


class BootstrapSettings(StrictModel):
    resamples: int = Field(
        1000, ge=100, le=100_000, description="Paired bootstrap resamples of the examples (at most 100,000)."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Coverage of the percentile interval of each delta.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the resampling, so intervals are reproducible.")


class EvalConfig(StrictModel):
    run: str = Field(description="A finished run: runs/<id>/run.json or its folder. The card comes from the run.")
    split: str = Field("test", description="The card's held-out split to score both models on.")
    max_examples: int | None = Field(
        None, ge=1, le=100_000_000, description="Score only the first N examples of the split (in file order); None for all."
    )
    max_seq_len: int = Field(
        512, ge=8, le=1_048_576, description="Rows are truncated to this many tokens for perplexity (at most 1,048,576)."
    )
    batch_size: int = Field(
        8, ge=1, le=65_536, description="Rows per forward pass for perplexity (length-bucketed; at most 65,536)."
    )
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
    allow_base_change: bool = Field(
        False, description="Score the run even when its base model (config, weights, tokenizer files) changed since training (recorded in eval.json)."
    )

    @field_validator("run", "general_text")
    @classmethod
    def _home_folder(cls, value: str | None) -> str | None:
        return home_path(value)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        return parse_metric_names(names)

    @field_validator("headline")
    @classmethod
    def _headline_is_scored(cls, headline: str, info: ValidationInfo) -> str:
        # checked here, not after both models were scored, so a typo costs nothing (and `run` refuses it up front)
        if "metrics" not in info.data or "general_text" not in info.data:
            return headline  # those fields failed already; their error is the one to read
        scored = scored_metric_names(info.data["metrics"], info.data["general_text"])
        if headline not in scored:
            raise ValueError(f"{headline!r} is not a metric these settings compute; choose one of {', '.join(scored)}")
        return headline


def scored_metric_names(metrics: list[str], general_text: str | None) -> list[str]:
    general = ["general_text_perplexity"] if general_text is not None else []
    return [*metrics, "response_perplexity", "sequence_perplexity", *general]
