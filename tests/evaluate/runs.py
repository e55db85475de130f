"""One tiny trained run for the eval tests: the fixture data curated into train/validation/test, a few LoRA steps.

Usage: trained_run(root, tokenizer_dir, model_dir, max_steps=3) -> the run folder.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.train.config import TrainConfig
from tunesmith.train.trainer import train

FIXTURE = Path(__file__).parent.parent / "fixtures" / "sft_tiny.jsonl"


def trained_run(root: Path, tokenizer_dir: Path, model_dir: Path, max_steps: int = 3) -> Path:
    card = run_curate(CurateConfig(
        name="tiny", output_dir=str(root / "data"), tokenizer=str(tokenizer_dir), sources=[{"path": str(FIXTURE)}],
        gates={"min_rows": 5}, stages=[{"stage": "validate"}, {"stage": "exact_dedup"},
                                       {"stage": "split", "ratios": {"train": 0.6, "validation": 0.1, "test": 0.3}}],
    )).directory / "card.json"
    return train(TrainConfig(card=str(card), model=str(model_dir), output_dir=str(root / "runs"), run_id="r",
                             max_steps=max_steps, batch_size=4, learning_rate=5e-3, max_seq_len=256, eval_split=None,
                             lora={"r": 4, "alpha": 8, "dropout": 0.0}))
