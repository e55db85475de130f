"""Benchmark: peak memory and tokens/s of NF4 QLoRA vs 16-bit LoRA on a ~1B Llama-shaped model, in one run.

The model is randomly initialised from a TinyLlama-1.1B-shaped config (fine for memory and speed), saved once
to a temporary folder, then trained for a few steps through tunesmith's own loader (`load_model_for_training`)
with quantization=nf4 and with quantization=none, each in a fresh process so peaks do not mix.
On CUDA it prints peak GPU memory (torch.cuda.max_memory_allocated) and the ratio QLoRA / LoRA (target <= 0.40).
Without CUDA it runs a tiny shape to check the code path and prints peak RSS instead (not the target figure).

    .venv/bin/python bench/qlora_memory_bench.py [--size 1b|tiny] [--steps 4] [--batch 4] [--seq 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32000},
    "tiny": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 8,
             "num_key_value_heads": 4, "vocab_size": 32000},
}


def build_model(size: str, folder: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(**SHAPES[size], max_position_embeddings=2048)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    vocab = {f"t{i}": i for i in range(SHAPES[size]["vocab_size"])}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
                                        unk_token="t0", pad_token="t1", eos_token="t2")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}t2{% endfor %}"
    tokenizer.save_pretrained(folder)


def measure(folder: Path, quantization: str, steps: int, batch: int, seq: int) -> dict:
    """Train `steps` LoRA steps (r=16, all-linear) through tunesmith's loader; peak memory and tokens/s."""
    from tunesmith.train.config import TrainConfig
    from tunesmith.train.model import load_model_for_training

    config = TrainConfig(card="(unused)", model=str(folder), quantization=quantization)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model, _, used, device, _ = load_model_for_training(config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    elapsed = 0.0
    for step in range(steps + 1):
        ids = torch.randint(3, model.config.vocab_size, (batch, seq), generator=generator).to(device)
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step > 0:  # the first step warms up kernels and allocators
            elapsed += time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"quantization": used, "device": device, "peak_mb": peak, "tokens_per_s": steps * batch * seq / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SHAPES), default="1b" if torch.cuda.is_available() else "tiny")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one mode in this process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(Path(args.folder), args.one, args.steps, args.batch, args.seq)))
        return
    with tempfile.TemporaryDirectory(prefix="qlora-bench-") as folder:
        build_model(args.size, Path(folder))
        results = {}
        for mode in ("nf4", "none"):
            command = [sys.executable, __file__, "--one", mode, "--folder", folder, "--steps", str(args.steps),
                       "--batch", str(args.batch), "--seq", str(args.seq)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    nf4, lora = results["nf4"], results["none"]
    unit = "GPU MiB (max_memory_allocated)" if nf4["device"] == "cuda" else "MiB peak RSS (CPU: code-path check)"
    print(f"model                     Llama {args.size} ({SHAPES[args.size]['num_hidden_layers']} layers, "
          f"hidden {SHAPES[args.size]['hidden_size']}), LoRA r=16 all-linear, batch {args.batch} x {args.seq}")
    print(f"QLoRA nf4   peak {nf4['peak_mb']:,.0f} {unit}   {nf4['tokens_per_s']:,.0f} tok/s")
    print(f"LoRA 16-bit peak {lora['peak_mb']:,.0f} {unit}   {lora['tokens_per_s']:,.0f} tok/s")
    print(f"ratio QLoRA / LoRA memory = {nf4['peak_mb'] / lora['peak_mb']:.2f}  (target <= 0.40 on CUDA)")
    print(f"ratio QLoRA / LoRA tokens/s = {nf4['tokens_per_s'] / lora['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
