"""Start-up time of tunesmith commands, as a ratio to a bare `python -c pass` (median of a few runs).

Run: .venv/bin/python bench/startup_bench.py [--runs 5] [--card path/to/card.json]
Each command is timed in a fresh process, since start-up is what a user waits for before any work begins.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _time(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--card", help="a card.json for `card show` (skipped when not given)")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "tunesmith.cli"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import tunesmith.cli": [sys.executable, "-c", "import tunesmith.cli"],
        "tunesmith --help": [*cli, "--help"],
        "tunesmith ls stages": [*cli, "ls", "stages"],
        "tunesmith audit --help": [*cli, "audit", "--help"],
    }
    if args.card:
        commands["tunesmith card show"] = [*cli, "card", "show", args.card]
    base = None
    for name, argv in commands.items():
        seconds = _time(argv, args.runs)
        base = base or seconds
        print(f"{name:28s} {seconds:6.3f} s  {seconds / base:5.1f}x python")


if __name__ == "__main__":
    main()
