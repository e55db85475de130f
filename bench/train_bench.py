"""Benchmark: tunesmith's batching vs the naive recipe, same data and model, in one run.

tunesmith: length-grouped batches padded to the longest row, loss on assistant tokens only
           (`batching: padded`, the default), and the same batches laid end to end (`padding_free`).
naive:     every row padded to 512 tokens, random order, loss on all tokens.
Prints useful (non-padding) tokens/s for both, their ratio, and peak memory. LoRA r=16 on all linear
layers of the embedded SmolLM2-135M-Instruct, CPU or CUDA, whatever is present.

    .venv/bin/python bench/train_bench.py [--card artifacts/datasets/demo-orders/v1] [--steps 4] [--batch 8]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from pathlib import Path

import torch

from tunesmith.artifacts import open_card
from tunesmith.chat import IGNORE_INDEX, encode_rows
from tunesmith.train.batching import PadCollator, PaddingFreeCollator
from tunesmith.train.config import TrainConfig
from tunesmith.train.model import load_model_for_training


def batches(rows: list[dict], batch: int, grouped: bool, seed: int) -> list[list[dict]]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if grouped:  # sort within windows of 50 batches by length, as a length-grouped sampler does
        window = batch * 50
        order = [i for s in range(0, len(order), window)
                 for i in sorted(order[s : s + window], key=lambda i: -len(rows[i]["input_ids"]))]
    return [[rows[i] for i in order[s : s + batch]] for s in range(0, len(order) - batch + 1, batch)]


def naive_batch(features: list[dict], pad_id: int, width: int = 512) -> dict[str, torch.Tensor]:
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = min(len(f["input_ids"]), width)
        ids[i, :n] = torch.tensor(f["input_ids"][:n])
        mask[i, :n] = 1
    labels = ids.clone()  # loss on all tokens, padding included, as the naive recipe does
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def measure(model, make_batch, plan, steps: int) -> tuple[float, int]:
    """Seconds for `steps` optimizer steps (after one warm-up step) and the useful tokens they saw."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    device = next(model.parameters()).device
    useful, elapsed = 0, 0.0
    for k, features in enumerate(plan[: steps + 1]):
        batch = {key: value.to(device) for key, value in make_batch(features).items()}
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k > 0:
            elapsed += time.perf_counter() - start
            useful += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    return elapsed, useful


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", default="artifacts/datasets/demo-orders/v1")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    if not Path(args.card).exists():
        raise SystemExit(f"{args.card}: no card; run `make demo` (or tunesmith curate) first")
    config = TrainConfig(card=args.card, quantization="none", max_seq_len=512)
    model, tokenizer, *_ = load_model_for_training(config)
    rows = encode_rows(tokenizer, open_card(Path(args.card)).rows["train"], 512)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ours_s, ours_tok = measure(model, PadCollator(pad), batches(rows, args.batch, True, 0), args.steps)
    flat_s, flat_tok = measure(model, PaddingFreeCollator(), batches(rows, args.batch, True, 0), args.steps)
    naive_s, naive_tok = measure(model, lambda f: naive_batch(f, pad), batches(rows, args.batch, False, 0), args.steps)
    trained = sum(sum(label != IGNORE_INDEX for label in r["labels"]) for r in rows)
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"device                    {'cuda' if torch.cuda.is_available() else 'cpu'}, batch {args.batch}, {args.steps} steps each")
    print(f"rows / trained tokens     {len(rows)} / {trained} (assistant tokens only)")
    print(f"tunesmith useful tok/s    {ours_tok / ours_s:,.0f}  ({ours_s / args.steps:.2f} s/step)")
    print(f"padding-free useful tok/s {flat_tok / flat_s:,.0f}  ({flat_s / args.steps:.2f} s/step)")
    print(f"naive     useful tok/s    {naive_tok / naive_s:,.0f}  ({naive_s / args.steps:.2f} s/step)")
    print(f"ratio tunesmith / naive = {(ours_tok / ours_s) / (naive_tok / naive_s):.2f}  (target >= 3 on CPU)")
    print(f"ratio padding-free / naive = {(flat_tok / flat_s) / (naive_tok / naive_s):.2f}")
    print(f"peak memory               {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
