"""The `card` fixture: the tiny SFT fixture curated into a dataset card with train and validation splits.

The validation split has an exact size (4 rows), so the losses the training tests expect do not depend on
sampling noise in a ratio split.
"""

from pathlib import Path

import pytest

from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate

FIXTURE = Path(__file__).parent.parent / "fixtures" / "sft_tiny.jsonl"


@pytest.fixture
def card(tmp_path, tiny_tokenizer_dir) -> Path:
    config = CurateConfig(name="tiny", output_dir=str(tmp_path / "data"), tokenizer=str(tiny_tokenizer_dir),
                          sources=[{"path": str(FIXTURE)}], gates={"min_rows": 5},
                          stages=[{"stage": "validate", "max_chars": 5000}, {"stage": "exact_dedup"},
                                  {"stage": "token_stats", "max_seq_len": 256},
                                  {"stage": "split", "sizes": {"validation": 4}, "ratios": {"train": 1.0}}])
    return run_curate(config).directory / "card.json"
