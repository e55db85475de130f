"""Fixtures for the model-side evaluation tests: the tiny model in float32, run on one thread."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every module here runs the tiny model on one thread."""
    yield


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)
