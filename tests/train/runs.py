"""Helpers for training tests: a small train config over the tiny model, and a run's LoRA tensors."""

from pathlib import Path

import torch

from tunesmith.train.config import TrainConfig


def config_for(card, model_dir, tmp_path, **extra) -> TrainConfig:
    settings = {"card": str(card), "model": str(model_dir), "output_dir": str(tmp_path / "runs"), "run_id": "r1",
                "max_steps": 4, "batch_size": 4, "learning_rate": 5e-3, "warmup_ratio": 0.0, "max_seq_len": 256,
                "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    return TrainConfig(**{**settings, **extra})


def lora_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(path / "adapter" / "adapter_model.safetensors").items() if "lora_" in k}


def assert_same_adapter(a_run: Path, b_run: Path, atol: float = 1e-6) -> None:
    """Two runs ended with the same LoRA weights (e.g. a killed-and-resumed run and an uninterrupted one)."""
    a, b = lora_tensors(a_run), lora_tensors(b_run)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol) for k in a)
