"""Benchmark: the eval engines (length-bucketed perplexity, batched greedy generation) vs one row at a time.

Perplexity: a plain reference (one row per forward, transformers' own loss x token count) vs `example_nll` at
several batch sizes; values must agree to relative 1e-4. Generation: tokens/s of `generate_answers` at several
batch sizes vs batch 1 (run on the first --batch1-prompts only: it is the slow one), and whether the greedy answers
are identical to batch 1 and to the first batched run. Embedded SmolLM2-135M-Instruct
on the demo eval prompts (tunesmith/assets/demo/orders_eval.jsonl), CPU or CUDA, whatever is present.

    .venv/bin/python bench/eval_bench.py [--quick] [--prompts 32] [--new-tokens 64] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from importlib.resources import files

import torch

from tunesmith.chat import IGNORE_INDEX, encode_rows
from tunesmith.evaluate.generation import GenerationSettings, generate_answers
from tunesmith.evaluate.perplexity import example_nll, perplexity
from tunesmith.models import load_base_model, load_tokenizer

MODEL = "smollm2-135m-instruct"


def demo_rows() -> list[dict]:
    path = files("tunesmith") / "assets" / "demo" / "orders_eval.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{"id": f"eval-{i}", "messages": json.loads(line)["messages"]} for i, line in enumerate(lines)]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reference_nll(model, encoded: list[dict]) -> tuple[float, list[float]]:
    """Seconds and per-row response NLL sums: one unpadded row per forward, the model's mean loss x count."""
    device = next(model.parameters()).device
    sums = []
    start = time.perf_counter()
    with torch.inference_mode():
        for row in encoded:
            ids = torch.tensor([row["input_ids"]], device=device)
            labels = torch.tensor([row["labels"]], device=device)
            count = int((labels[0, 1:] != IGNORE_INDEX).sum())
            sums.append(float(model(input_ids=ids, labels=labels, use_cache=False).loss) * count)
    sync()
    return time.perf_counter() - start, sums


def bench_perplexity(model, tokenizer, rows: list[dict], batch_sizes: list[int]) -> None:
    encoded = encode_rows(tokenizer, rows, max_seq_len=1024)
    example_nll(model, encoded[:2], batch_size=2)  # warm-up
    ref_s, ref = reference_nll(model, encoded)
    tokens = sum(len(r["input_ids"]) for r in encoded)
    scored = sum(sum(label != IGNORE_INDEX for label in r["labels"][1:]) for r in encoded)
    ref_ppl = math.exp(sum(ref) / scored)
    print(f"perplexity: {len(encoded)} rows, {tokens} tokens, {scored} response tokens")
    print(f"  reference (1 row/forward)   ppl {ref_ppl:.6f}  {ref_s:6.2f} s  {tokens / ref_s:8,.0f} tok/s")
    for batch_size in batch_sizes:
        start = time.perf_counter()
        nlls = example_nll(model, encoded, batch_size=batch_size)
        sync()
        seconds = time.perf_counter() - start
        worst = max(abs(n.response_nll - r) / abs(r) for n, r in zip(nlls, ref))
        ppl = perplexity(nlls)
        print(
            f"  bucketed batch {batch_size:<3}          ppl {ppl:.6f}  {seconds:6.2f} s  {tokens / seconds:8,.0f} tok/s"
            f"  speed x{ref_s / seconds:.2f}  max rel diff per row {worst:.1e}, corpus {abs(ppl / ref_ppl - 1):.1e}"
        )
    print("  (target: equal to rel 1e-4, speed >= 1.2x on CPU)")


def bench_generation(model, tokenizer, rows: list[dict], batch_sizes: list[int], new_tokens: int, subset: int) -> None:
    """Batch 1 runs on the first `subset` prompts only (it is the slow one); the batched runs on all of them."""
    prompts = [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows]
    generate_answers(model, tokenizer, prompts[:2], GenerationSettings(max_new_tokens=4, batch_size=2))  # warm-up
    subset = subset or len(prompts)
    print(f"generation: {len(prompts)} prompts ({subset} at batch 1), greedy, max_new_tokens {new_tokens}")
    single = generate_answers(
        model, tokenizer, prompts[:subset], GenerationSettings(max_new_tokens=new_tokens, batch_size=1)
    )
    base_rate = single.total_tokens / single.seconds
    print(f"  batch 1   {single.total_tokens:6} tokens {single.seconds:7.2f} s  {base_rate:7.1f} tok/s")
    first = None
    for batch_size in batch_sizes:
        settings = GenerationSettings(max_new_tokens=new_tokens, batch_size=batch_size)
        out = generate_answers(model, tokenizer, prompts, settings)
        first = first or out
        rate = out.total_tokens / out.seconds
        same_single = sum(a == b for a, b in zip(out.texts, single.texts))
        same_first = sum(a == b for a, b in zip(out.texts, first.texts))
        print(
            f"  batch {batch_size:<3} {out.total_tokens:6} tokens {out.seconds:7.2f} s  {rate:7.1f} tok/s  "
            f"x{rate / base_rate:.2f} vs batch 1  identical answers: to batch 1 {same_single}/{subset}, "
            f"to batch {batch_sizes[0]} {same_first}/{len(prompts)}"
        )
    print(f"  (target: >= 4x at some batch size on CPU with identical answers)\n  sample answer: {single.texts[0]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 prompts, 32 new tokens, fewer batch sizes")
    parser.add_argument("--prompts", type=int, default=32, help="generation prompts (the 40 demo rows, repeated)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch1-prompts", type=int, default=8, help="prompts run at batch 1 (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    prompts, new_tokens = (16, 32) if args.quick else (args.prompts, args.new_tokens)
    ppl_batches = [4, 8] if args.quick else [4, 8, 16]
    gen_batches = [8, 16] if args.quick else [8, 16, 32]

    tokenizer = load_tokenizer(MODEL)
    model = load_base_model(MODEL)
    device = next(model.parameters()).device
    print(
        f"model {MODEL}, {device}, {next(model.parameters()).dtype}, attention "
        f"{model.config._attn_implementation}, torch threads {torch.get_num_threads()}"
    )
    rows = demo_rows()
    start = time.perf_counter()
    bench_perplexity(model, tokenizer, rows, ppl_batches)
    bench_generation(model, tokenizer, (rows * 2)[:prompts], gen_batches, new_tokens, args.batch1_prompts)
    print(f"bench wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
