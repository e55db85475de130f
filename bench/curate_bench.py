"""Benchmark: the full curate pipeline vs datasketch MinHashLSH alone, plus near-dup precision/recall; and
token_stats' chunked counting vs full encoding on code and multi-line rows.

Generates N rows (default 50,000) with planted near-duplicate groups whose true word 5-gram Jaccard is
measured, runs `tunesmith curate` with the default stages on them, then times datasketch (128 perm,
threshold 0.8, word 5-grams: MinHash + insert + query) on the same texts, and prints the ratio.
The `tokens` case runs the token_stats stage on M rows (default 28,000) with fenced code, indentation, blank
lines and runs of spaces, once as configured (`counting: auto`, the fast path) and once with `counting: full`
(what the fallback costs once the verification sample disagrees), and prints both and their ratio.

    .venv/bin/python bench/curate_bench.py [--case all|curate|tokens] [--rows 50000] [--token-rows 28000]
        [--tokenizer smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import tempfile
import time
from pathlib import Path

WORD = re.compile(r"\w+")


def word_list(tokenizer) -> list[str]:
    """Real words from the tokenizer's vocabulary (single tokens after a space), so token counts per word
    are like natural text rather than the worst case of random letters."""
    words = {t[1:] for t in tokenizer.get_vocab() if t.startswith("\u0120") and t[1:].isalpha() and t[1:].islower()}
    return sorted(w for w in words if len(w) >= 3)


def make_rows(n: int, seed: int, vocab: list[str], dup_share: float = 0.05) -> tuple[list[dict], dict[int, int]]:
    """Rows of random-word prompts/answers; `variant_of` maps planted near-duplicates to their original."""
    rng = random.Random(seed)

    def text(words: int) -> list[str]:
        return [rng.choice(vocab) for _ in range(words)]

    rows, variant_of = [], {}
    originals = []
    while len(rows) < n:
        if originals and rng.random() < dup_share:
            source = rng.choice(originals)
            prompt, answer = list(rows[source]["_p"]), list(rows[source]["_a"])
            target = answer if rng.random() < 0.5 else prompt
            target[rng.randrange(len(target))] = rng.choice(vocab)  # one word changed: Jaccard >= 0.9
            variant_of[len(rows)] = source
        else:
            prompt, answer = text(rng.randint(40, 60)), text(rng.randint(40, 60))
            originals.append(len(rows))
        rows.append({"_p": prompt, "_a": answer})
    return rows, variant_of


def to_messages(row: dict) -> dict:
    return {"messages": [{"role": "user", "content": " ".join(row["_p"])},
                         {"role": "assistant", "content": " ".join(row["_a"])}]}


def shingles(text: str, n: int = 5) -> set[str]:
    words = WORD.findall(text.lower())
    return {" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}


def run_tunesmith(path: Path, out: Path, tokenizer: str):
    from tunesmith.curate.config import CurateConfig
    from tunesmith.curate.pipeline import run_curate

    config = CurateConfig(name="bench", output_dir=str(out), tokenizer=tokenizer, sources=[{"path": str(path)}],
                          gates={"min_rows": None})
    start = time.perf_counter()
    result = run_curate(config)
    return time.perf_counter() - start, result


def run_datasketch(texts: list[str]) -> tuple[float, int]:
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    lsh, hashes = MinHashLSH(threshold=0.8, num_perm=128), []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=128)
        m.update_batch([s.encode() for s in shingles(text)])
        lsh.insert(i, m)
        hashes.append(m)
    pairs = sum(len(lsh.query(m)) - 1 for m in hashes)
    return time.perf_counter() - start, pairs


def code_rows(n: int, seed: int, vocab: list[str]) -> list[list[tuple[str, str]]]:
    """Chats like code/instruction data: fenced code with indentation, prose paragraphs, bullets, double spaces;
    words drawn Zipf-like from `vocab` so chunks repeat as in real text."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]

    def words(k: int) -> str:
        return " ".join(rng.choices(vocab, weights, k=k))

    rows = []
    for i in range(n):
        name, arg = rng.choices(vocab, weights, k=2)
        body = "\n".join(f"{'    ' * rng.randint(1, 3)}{rng.choice(vocab)} = {name}({arg}, {rng.randint(0, 99)})"
                         for _ in range(rng.randint(3, 12)))
        code = f"```python\ndef {name}({arg}):\n{body}\n\n    return {arg}  # {words(3)}\n```"
        prose = "\n\n".join(f"{words(rng.randint(10, 30))}.  {words(5)}." for _ in range(rng.randint(1, 3)))
        bullets = "\n".join(f"- {words(rng.randint(2, 6))}" for _ in range(rng.randint(0, 4)))
        rows.append([("user", f"{words(rng.randint(8, 20))}:\n\n{code if i % 2 else prose}\n"),
                     ("assistant", f"{prose}\n\n{bullets}\n\n{code}" if i % 3 else f"{prose}\n")])
    return rows


def bench_token_stats(tokenizer, n: int, seed: int) -> None:
    """token_stats on code/multi-line rows: the fast path and the full encoding, timed in the same run."""
    from tunesmith.curate.record import Example, Message
    from tunesmith.curate.stage import StageContext
    from tunesmith.curate.token_stats import TokenStats

    examples = [Example(id=f"c:{i}", source="c.jsonl", row=i, line=i + 1, messages=tuple(Message(*t) for t in turns))
                for i, turns in enumerate(code_rows(n, seed, word_list(tokenizer)))]
    seconds, findings = {}, {}
    for counting in ("auto", "full"):
        stage = TokenStats(TokenStats.Config(max_seq_len=1024, counting=counting))
        ctx = StageContext("token_stats", None, extra={"tokenizer": tokenizer})
        start = time.perf_counter()
        _, record = stage.run(examples, ctx)
        seconds[counting], findings[counting] = time.perf_counter() - start, record.findings
    counting = findings["auto"]["counting"]
    same = {k: v for k, v in findings["auto"].items() if k != "counting"} == {
        k: v for k, v in findings["full"].items() if k != "counting"}
    print(f"token_stats rows             {n} (code and multi-line; p50 {findings['full']['length']['p50']:.0f} tokens)")
    print(f"fast path (counting: auto)   {seconds['auto']:.2f} s  ({counting['method']}: "
          f"{counting.get('chunked_rows', 0)} chunked, {counting.get('full_rows', 0)} in full, "
          f"{counting.get('verified_rows', 0)} verified)")
    print(f"fallback (counting: full)    {seconds['full']:.2f} s  (same findings: {same})")
    print(f"ratio fallback / fast = {seconds['full'] / seconds['auto']:.2f}  (target <= 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["all", "curate", "tokens"], default="all")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--token-rows", type=int, default=28_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default="smollm2-135m-instruct")
    args = parser.parse_args()

    from tunesmith.models import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)  # converts/caches the tokenizer outside the timed run
    if args.case in ("all", "tokens"):
        bench_token_stats(tokenizer, args.token_rows, args.seed)
    if args.case == "tokens":
        return
    rows, variant_of = make_rows(args.rows, args.seed, word_list(tokenizer))
    records = [to_messages(r) for r in rows]
    texts = ["\n".join(f"{m['role']}: {m['content']}" for m in r["messages"]) for r in records]
    true_j = [len(shingles(texts[v]) & shingles(texts[o])) / len(shingles(texts[v]) | shingles(texts[o]))
              for v, o in list(variant_of.items())[:500]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        seconds, result = run_tunesmith(path, Path(tmp) / "out", args.tokenizer)
        rejected = Path(result.directory) / "rejected" / "near_dedup.jsonl"
        dropped = {int(json.loads(line)["row"]) for line in rejected.open()} if rejected.exists() else set()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ds_seconds, ds_pairs = run_datasketch(texts)

    true_positive = len(dropped & variant_of.keys())
    precision = true_positive / len(dropped) if dropped else 1.0
    recall = true_positive / len(variant_of) if variant_of else 1.0
    print(f"rows                         {args.rows}")
    print(f"planted near-duplicates      {len(variant_of)} (true 5-gram Jaccard {min(true_j):.3f}..{max(true_j):.3f})")
    print("stage seconds                " + "  ".join(f"{s.name}={s.seconds:.2f}" for s in result.card.stages))
    print(f"tunesmith full curate        {seconds:.2f} s  ({args.rows / seconds:,.0f} rows/s)")
    print(f"peak RSS                     {rss_mb:,.0f} MiB (background stage process: {child_rss_mb:,.0f} MiB, pages shared with the main process counted again)")
    print(f"near-dup precision / recall  {precision:.4f} / {recall:.4f}")
    print(f"datasketch MinHashLSH alone  {ds_seconds:.2f} s  ({ds_pairs} candidate links)")
    print(f"ratio full curate / datasketch = {seconds / ds_seconds:.3f}  (target <= 0.5)")


if __name__ == "__main__":
    main()
