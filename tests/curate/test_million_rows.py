"""A million generated rows stream through validate, exact_dedup and split (into Parquet shards) in bounded
memory: the curate process's peak RSS stays far below what holding the rows would take (the old engine needed
~21x the file). near_dedup's MinHash would add minutes here; bench/scale_bench.py measures the default stages.

Run: .venv/bin/python -m pytest tests/curate/test_million_rows.py -q   (about two minutes on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROWS = 1_000_000
ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, sys
from tunesmith.config import load_config
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
result = run_curate(load_config(CurateConfig, sys.argv[1], []))
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_kib": peak_kib, "stages": [[s.name, s.rows_in, s.rows_out, s.rows_rejected]
                                                    for s in result.card.stages],
                  "splits": {k: v.rows for k, v in result.card.splits.items()}}))
"""


def write_rows(path: Path) -> int:
    """ROWS short chats; every 100th row repeats the row before it, every 1000th has an empty answer (never one
    that is copied)."""
    duplicates = 0
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(ROWS):
            n = i - 1 if i % 100 == 99 else i
            duplicates += n != i
            answer = "" if i % 1000 == 500 else f"answer {n} is {n * 7919 % 100003} in words {n % 97} and {n % 89}"
            handle.write(json.dumps({"messages": [{"role": "user", "content": f"question number {n} about {n % 13}"},
                                                  {"role": "assistant", "content": answer}]}) + "\n")
    return duplicates


@pytest.mark.slow
def test_a_million_rows_stream_in_bounded_memory(tmp_path):
    data = tmp_path / "rows.jsonl"
    duplicates = write_rows(data)
    config = {"name": "big", "output_dir": str(tmp_path / "out"), "sources": [{"path": str(data)}],
              "report": False, "workers": 1, "batch_size": 1000,
              "stages": [{"stage": "validate", "special_tokens": "allow"}, {"stage": "exact_dedup"},
                         {"stage": "split"}]}
    (tmp_path / "curate.yaml").write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "curate.yaml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stages = {name: (rows_in, rows_out, rejected) for name, rows_in, rows_out, rejected in result["stages"]}
    assert stages["validate"] == (ROWS, ROWS - 1000, 1000)  # the empty answers
    assert stages["exact_dedup"][2] == duplicates
    assert sum(result["splits"].values()) == stages["split"][1]
    file_mib = data.stat().st_size / 2**20
    peak_mib = result["peak_kib"] / 1024
    # the old in-memory engine held ~21x the file (here ~3 GB); the streaming one holds batches and keys
    assert peak_mib < 1024, f"peak RSS {peak_mib:.0f} MiB for a {file_mib:.0f} MiB file"
