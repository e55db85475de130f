"""Shared fixtures: offline mode, a tiny ChatML tokenizer built here, and small SFT fixture files.

Run the suite with `make test` (or `.venv/bin/python -m pytest -q`). Nothing here touches the network.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# one model cache per test session: the embedded model is converted at most once, never into ~/.cache
os.environ.setdefault("TUNESMITH_HOME", __import__("tempfile").mkdtemp(prefix="tunesmith-test-home-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SPECIALS = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]


def build_tiny_tokenizer(directory: Path) -> Path:
    """A word-level tokenizer over the fixture vocabulary, with a ChatML chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tunesmith.models import FALLBACK_CHAT_TEMPLATE

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    corpus = [p.read_text(encoding="utf-8", errors="replace") for p in FIXTURES.glob("*") if p.is_file()]
    corpus += ["system user assistant \n"]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<|im_end|>", bos_token="<|im_start|>")
    fast.chat_template = FALLBACK_CHAT_TEMPLATE
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer"))
