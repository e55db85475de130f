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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A randomly initialised 2-layer Llama with 32-dim embeddings over the tiny tokenizer, saved with it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_model")
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny model's ops are too small to split across threads; one thread keeps a busy machine fast."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
