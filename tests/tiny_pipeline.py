"""The `tunesmith run` config the end-to-end tests share: fixture data, the tiny tokenizer and model, a few steps.

Usage: write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir, stages=[...]) -> path of the YAML.
"""

from __future__ import annotations

from pathlib import Path

import yaml

FIXTURE = Path(__file__).parent / "fixtures" / "sft_tiny.jsonl"
DEFAULT_STAGES = [{"stage": "validate"}, {"stage": "exact_dedup"},
                  {"stage": "split", "ratios": {"train": 0.6, "validation": 0.1, "test": 0.3}}]


def write_pipeline_config(tmp_path: Path, tokenizer: Path, model: Path, stages: list[dict] | None = None) -> Path:
    config = {
        "curate": {"name": "tiny", "output_dir": str(tmp_path / "data"), "tokenizer": str(tokenizer),
                   "sources": [{"path": str(FIXTURE)}], "gates": {"min_rows": 5},
                   "stages": stages or DEFAULT_STAGES},
        "train": {"model": str(model), "output_dir": str(tmp_path / "runs"), "max_steps": 3, "batch_size": 4,
                  "learning_rate": 5e-3, "max_seq_len": 256, "lora": {"r": 4, "alpha": 8}},
        "eval": {"generation": {"max_new_tokens": 6}, "bootstrap": {"resamples": 200}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
