"""After training: merge a run's adapter into full weights, or answer one prompt with the tuned model."""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.chat import encode_prompts
from tunesmith.models import load_tuned_model


def merge_run(run_dir: Path, out_dir: Path | None = None) -> Path:
    """Write base + adapter as one full-precision safetensors model (QLoRA runs are merged dequantized)."""
    model, tokenizer = load_tuned_model(run_dir)
    out = Path(out_dir) if out_dir else Path(run_dir) / "merged"
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def answer(run_dir: Path, prompt: str, max_new_tokens: int = 128, system: str | None = None) -> str:
    """Greedy answer of the tuned model to one user prompt, through its chat template."""
    model, tokenizer = load_tuned_model(run_dir)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    ids = torch.tensor([encode_prompts(tokenizer, [messages])[0]], device=model.device)  # the prompt stays text
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()
