"""The train config: which card, which base model, how to quantize, LoRA and optimisation settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tunesmith.config import StrictModel, home_path


class LoraSettings(StrictModel):
    r: int = Field(16, ge=1, le=4096, description="LoRA rank (at most 4,096).")
    alpha: int = Field(32, ge=1, le=65_536, description="LoRA scaling numerator (commonly 2*r; at most 65,536).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or all-linear for every linear layer but the head."
    )


class TrainConfig(StrictModel):
    card: str = Field(description="Path to the dataset card (card.json or its version folder).")
    model: str = Field("smollm2-135m-instruct", description="Embedded model name, local folder or hub id.")
    trust_remote_code: bool = Field(False, description="Allow the model's own Python code (off by default).")
    chat_template: str | None = Field(
        None, description="Prompt format: a shipped template name (alpaca) or a Jinja file; default: the model's own."
    )
    quantization: Literal["auto", "nf4", "int8", "none"] = Field(
        "auto", description="auto: NF4 (double quant, bf16 compute) on CUDA, none (plain LoRA) on CPU."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    output_dir: str = Field("runs", description="Runs go to <output_dir>/<run_id>/.")
    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Default: time + card.")
    max_seq_len: int = Field(512, ge=8, le=1_048_576, description="Rows are truncated to this many tokens (at most 1,048,576).")
    epochs: float = Field(
        1.0, gt=0, le=10_000, description="Passes over the training split (ignored when max_steps is set; at most 10,000)."
    )
    max_steps: int | None = Field(
        None, ge=1, le=100_000_000, description="Stop after this many optimizer steps (at most 100,000,000)."
    )
    batch_size: int = Field(8, ge=1, le=65_536, description="Rows per device batch (at most 65,536).")
    batching: Literal["padded", "padding_free"] = Field(
        "padded", description="padded: length-grouped rows padded to the longest in the batch; padding_free: "
        "the batch's rows laid end to end in one sequence, isolated by position ids (no pad tokens)."
    )
    grad_accumulation: int = Field(1, ge=1, le=65_536, description="Batches per optimizer step (at most 65,536).")
    learning_rate: float = Field(2e-4, gt=0, le=10, description="Peak learning rate (at most 10).")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, le=10, description="AdamW weight decay (at most 10).")
    max_grad_norm: float = Field(1.0, gt=0, le=1_000_000, description="Gradient clipping norm.")
    eval_steps: int | None = Field(
        None, ge=1, le=100_000_000, description="Validation loss every N steps (default: once per epoch)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, le=1_000_000, description="Stop when validation loss has not improved for this many evaluations."
    )
    restore_best: bool = Field(
        True, description="With early stopping, save the adapter from the evaluation with the lowest loss."
    )
    logging_steps: int = Field(1, ge=1, le=100_000_000, description="Write metrics.jsonl every N steps.")
    save_steps: int | None = Field(
        None, ge=1, le=100_000_000, description="Checkpoint every N steps, so --resume can continue."
    )
    keep_checkpoints: int = Field(
        2, ge=1, le=10_000, description="Complete checkpoints kept; older ones are deleted (at most 10,000)."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the LoRA initialisation, data order and dropout.")
    train_split: str = Field("train")
    eval_split: str | None = Field("validation", description="Split for eval loss; None to skip evaluation.")

    @field_validator("card", "output_dir")
    @classmethod
    def _expand_home(cls, value: str) -> str:
        return home_path(value)

    @model_validator(mode="after")
    def _early_stopping_needs_eval(self) -> TrainConfig:
        if self.early_stopping_patience and not self.eval_split:
            raise ValueError("early_stopping_patience needs an eval_split")
        return self
