"""Fixtures for the fault tests: one thread, one tiny card and one uninterrupted run per module, the CLI worker."""

import pytest

from tests.train.conftest import FIXTURE
from tests.train.runs import config_for
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.train.trainer import train

from .cli_worker import CliWorker

# checkpoints at steps 2, 4, 6, 8 (the two newest kept); no eval split, so a step costs milliseconds. The card's 18
# training rows make 5 steps an epoch, so runs cross into a second epoch and can be resumed there.
RESUMABLE = {"quantization": "none", "max_steps": 8, "save_steps": 2, "eval_split": None}


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """One thread, which also matches the CLI worker."""
    yield


@pytest.fixture(scope="module", autouse=True)
def worker():
    """Started with the module, so its imports overlap the in-process tests (which therefore come first)."""
    cli = CliWorker()
    yield cli
    cli.close()


@pytest.fixture(scope="module")
def card(tmp_path_factory, tiny_tokenizer_dir):
    """The tiny SFT fixture as a card with train and validation splits (as tests/train/conftest.py builds it)."""
    config = CurateConfig(name="tiny", output_dir=str(tmp_path_factory.mktemp("data")), tokenizer=str(tiny_tokenizer_dir),
                          sources=[{"path": str(FIXTURE)}], gates={"min_rows": 5},
                          stages=[{"stage": "validate", "max_chars": 5000}, {"stage": "exact_dedup"},
                                  {"stage": "token_stats", "max_seq_len": 256},
                                  {"stage": "split", "ratios": {"train": 0.8, "validation": 0.2}}])
    return run_curate(config).directory / "card.json"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def straight(card, tiny_model_dir, runs_root):
    """The uninterrupted run every interrupted one must reproduce."""
    return train(config_for(card, tiny_model_dir, runs_root, run_id="straight", **RESUMABLE))
