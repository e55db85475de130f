"""Benchmark: curation at scale. Peak memory and rows/s of `tunesmith curate` with the default stages, for several
sizes, executors and worker counts, against references measured in the same run.

For each size N (default 100k, 400k, 1.6M; `--rows 10000000` for the big run) it writes N generated rows (~330
bytes each: random-word prompts and answers, 5% planted near-duplicates with one word changed, 1% exact copies),
then runs the curate CLI in a fresh process per configuration and samples the resident memory of its whole process
tree (driver, forked workers, Ray's processes) every 50 ms. Printed per run: wall time, rows/s, peak tree RSS and
near-duplicate precision/recall against the planted truth. Then, per configuration, the
RSS growth per extra row between the smallest and the largest size.

References, in the same run:
- `--reference-commit C` (default 208f38f, the last in-memory engine) runs that commit's curate on the sizes up to
  `--reference-max-rows` (it needs ~34x the file size in memory), for the speed and memory ratios;
- `--peer-python PY` runs datatrove's own MinHash dedup pipeline (signature -> buckets -> cluster -> filter, local
  executor, 2 tasks, its default MinhashConfig) with that interpreter (a venv with `pip install datatrove`), on the
  same texts, with its precision/recall.

    .venv/bin/python bench/scale_bench.py [--rows 100000,400000,1600000] [--configs w1,w2,ray]
        [--reference-commit 208f38f] [--reference-max-rows 400000] [--peer-python /tmp/dtvenv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from scale_peer import run_datatrove  # noqa: E402

WORDS = [f"{a}{b}{c}" for a in "bcdfghjklmnpr" for b in "aeiou" for c in "lmnrst"]  # 390 pronounceable words


def write_rows(path: Path, n: int, seed: int = 7) -> tuple[dict[int, int], Path, set[int]]:
    """N rows to `path` (JSONL messages) and the same texts for the peer (`{"id", "text"}`); returns the planted
    near-duplicates {row: original row}, the peer's file and the exact copies. Originals to copy from are drawn
    from the last 20,000, so the generator's own memory stays small."""
    rng = random.Random(seed)
    recent: list[tuple[int, list[str], list[str]]] = []
    variant_of: dict[int, int] = {}
    copies: set[int] = set()
    peer = path.with_suffix(".peer.jsonl")
    with open(path, "w", encoding="utf-8") as out, open(peer, "w", encoding="utf-8") as peer_out:
        for i in range(n):
            roll = rng.random()
            if recent and roll < 0.06:
                source, prompt, answer = rng.choice(recent)
                prompt, answer = list(prompt), list(answer)
                if roll < 0.05:  # a near-duplicate: one word changed
                    target = answer if rng.random() < 0.5 else prompt
                    target[rng.randrange(len(target))] = rng.choice(WORDS)
                    variant_of[i] = source
                else:
                    copies.add(i)
            else:
                prompt = [rng.choice(WORDS) for _ in range(rng.randint(28, 36))]
                answer = [rng.choice(WORDS) for _ in range(rng.randint(28, 36))]
                recent.append((i, prompt, answer))
                if len(recent) > 20_000:
                    recent.pop(rng.randrange(len(recent)))
            p, a = " ".join(prompt), " ".join(answer)
            out.write(json.dumps({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]})
                      + "\n")
            peer_out.write(json.dumps({"id": str(i), "text": f"{p}\n{a}"}) + "\n")
    return variant_of, peer, copies


def sample_tree_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """The largest summed RSS of `pid` and all its descendants, sampled every 50 ms."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        total = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            break
        peak[0] = max(peak[0], total)
        stop.wait(0.05)


def measured(command: list[str], env: dict | None = None, cwd: Path = ROOT) -> dict:
    """Run `command`; its wall seconds and the peak RSS of its process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=sample_tree_rss, args=(proc.pid, stop, peak), daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    stop.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{output[-4000:]}")
    return {"seconds": seconds, "tree_rss": peak[0], "output": output}


def curate_config(data: Path, out: Path, config: str) -> Path:
    executor, workers = ("ray", 2) if config == "ray" else ("local", int(config[1:]))
    path = out / f"curate-{config}.yaml"
    path.write_text(json.dumps({
        "name": "scale", "output_dir": str(out / f"datasets-{config}"), "sources": [{"path": str(data)}],
        "report": False, "executor": executor, "workers": workers,
        "gates": {"max_rejected_rate": None, "max_contamination_rate": None, "min_rows": None},
    }), encoding="utf-8")
    return path


def reference_config(data: Path, out: Path) -> Path:
    path = out / "curate-reference.yaml"
    path.write_text(json.dumps({
        "name": "scale", "output_dir": str(out / "datasets-reference"), "sources": [{"path": str(data)}],
        "report": False, "gates": {"max_rejected_rate": None, "max_contamination_rate": None, "min_rows": None},
    }), encoding="utf-8")
    return path


def near_dup_scores(rejected: Path, variant_of: dict[int, int]) -> tuple[float, float]:
    """Precision and recall of the rows near_dedup dropped against the planted near-duplicates."""
    found = set()
    if rejected.exists():
        with open(rejected, encoding="utf-8") as handle:
            for line in handle:
                found.add(int(json.loads(line)["id"].rsplit(":", 1)[1]))
    return _scores(found, variant_of)


def _scores(found: set[int], variant_of: dict[int, int]) -> tuple[float, float]:
    true = set(variant_of)
    hits = len(found & true)
    return (hits / len(found) if found else 1.0), (hits / len(true) if true else 1.0)


def reference_checkout(commit: str, folder: Path) -> Path:
    target = folder / "reference"
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(target), commit], cwd=ROOT, check=True,
                   capture_output=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,400000,1600000")
    parser.add_argument("--configs", default="w1,w2,ray", help="w<N>: local executor with N workers; ray")
    parser.add_argument("--reference-commit", default="208f38f")
    parser.add_argument("--reference-max-rows", type=int, default=400_000)
    parser.add_argument("--peer-python", default=None)
    parser.add_argument("--work", default=None, help="folder for the generated data (default: a temp folder)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    configs = [c for c in args.configs.split(",") if c]
    work = Path(args.work or tempfile.mkdtemp(prefix="tunesmith-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    reference = reference_checkout(args.reference_commit, work) if args.reference_commit else None
    python = sys.executable
    results: dict[str, list[tuple[int, dict]]] = {}
    try:
        for n in sizes:
            data = work / f"rows-{n}.jsonl"
            variant_of, peer_data, copies = write_rows(data, n)
            size_mb = data.stat().st_size / 2**20
            print(f"\n== {n:,} rows ({size_mb:.0f} MiB, {len(variant_of):,} planted near-duplicates)", flush=True)
            runs = [(c, [python, "-m", "tunesmith.cli", "curate", str(curate_config(data, work, c))], None)
                    for c in configs]
            if reference is not None and n <= args.reference_max_rows:
                runs.append(("reference", [python, "-m", "tunesmith.cli", "curate",
                                           str(reference_config(data, work))], reference))
            for name, command, cwd in runs:
                for old in work.glob(f"datasets-{name}"):
                    subprocess.run(["rm", "-rf", str(old)], check=True)
                env = {"PYTHONPATH": str(cwd)} if cwd else None
                result = measured(command, env=env, cwd=cwd or ROOT)
                version = next((work / f"datasets-{name}" / "scale").glob("v*"))
                precision, recall = near_dup_scores(version / "rejected" / "near_dedup.jsonl", variant_of)
                result.update(precision=precision, recall=recall, rows=n)
                results.setdefault(name, []).append((n, result))
                print(f"{name:>10}: {result['seconds']:8.1f} s  {n / result['seconds']:9,.0f} rows/s  "
                      f"peak RSS {result['tree_rss'] / 2**30:6.2f} GiB  "
                      f"near-dup P {precision:.3f} R {recall:.3f}", flush=True)
                subprocess.run(["rm", "-rf", str(work / f"datasets-{name}")], check=True)
            if args.peer_python:
                peer = run_datatrove(args.peer_python, peer_data, work / "datatrove", measured)
                # datatrove has no exact stage before its MinHash: the exact copies are its duplicates too
                precision, recall = _scores(peer["removed"], {**variant_of, **dict.fromkeys(copies, -1)})
                results.setdefault("datatrove", []).append((n, {**peer, "precision": precision, "recall": recall}))
                print(f"{'datatrove':>10}: {peer['seconds']:8.1f} s  {n / peer['seconds']:9,.0f} rows/s  "
                      f"peak RSS {peer['tree_rss'] / 2**30:6.2f} GiB  near-dup P {precision:.3f} R {recall:.3f} "
                      "(MinHash dedup only)", flush=True)
            data.unlink()
            peer_data.unlink()
        summarise(results, sizes)
    finally:
        if reference is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=ROOT, capture_output=True)


def summarise(results: dict[str, list[tuple[int, dict]]], sizes: list[int]) -> None:
    print("\n== summary")
    for name, runs in results.items():
        if len(runs) >= 2:
            (n0, a), (n1, b) = runs[0], runs[-1]
            growth = (b["tree_rss"] - a["tree_rss"]) / (n1 - n0)
            print(f"{name:>10}: RSS growth {growth:6.0f} bytes per extra row ({n0:,} -> {n1:,} rows)")
    base = dict(results.get("w1", []))
    for name in ("reference", "datatrove", "w2", "ray"):
        for n, other in results.get(name, []):
            if n in base:
                print(f"{name:>10} at {n:,} rows: w1 takes {base[n]['seconds'] / other['seconds']:.2f}x its time and "
                      f"{base[n]['tree_rss'] / other['tree_rss']:.2f}x its peak RSS")


if __name__ == "__main__":
    main()
