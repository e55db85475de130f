"""The peer in bench/scale_bench.py: datatrove's own MinHash dedup pipeline (signature -> buckets -> cluster ->
filter, its local executor, 2 tasks, its default MinhashConfig), run with another interpreter that has datatrove.

The texts are split into two files first (datatrove gives each task whole files), untimed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

PIPELINE = r'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter

def main(data, base):
  config = MinhashConfig()
  tasks = 2
  signature = LocalPipelineExecutor(pipeline=[JsonlReader(data), MinhashDedupSignature(f"{base}/signatures", config=config)],
                                    tasks=tasks, workers=tasks, logging_dir=f"{base}/logs/signatures")
  buckets = LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(f"{base}/signatures", f"{base}/buckets", config=config)],
                                  tasks=config.num_buckets, workers=tasks, logging_dir=f"{base}/logs/buckets",
                                  depends=signature)
  cluster = LocalPipelineExecutor(pipeline=[MinhashDedupCluster(f"{base}/buckets", f"{base}/remove_ids", config=config)],
                                  tasks=1, logging_dir=f"{base}/logs/clusters", depends=buckets)
  filtered = LocalPipelineExecutor(pipeline=[JsonlReader(data), MinhashDedupFilter(f"{base}/remove_ids",
                                             exclusion_writer=JsonlWriter(f"{base}/removed", compression=None)),
                                             JsonlWriter(f"{base}/output", compression=None)],
                                   tasks=tasks, workers=tasks, logging_dir=f"{base}/logs/filter", depends=cluster)
  filtered.run()


if __name__ == "__main__":  # datatrove's workers start by importing this script again
  main(sys.argv[1], sys.argv[2])
'''


def run_datatrove(python: str, texts: Path, base: Path, measured) -> dict:
    """Wall time, peak tree RSS and the removed row numbers of datatrove's MinHash dedup on `texts`."""
    shutil.rmtree(base, ignore_errors=True)
    (base / "input").mkdir(parents=True)
    lines = texts.read_text(encoding="utf-8").splitlines(keepends=True)
    half = len(lines) // 2
    (base / "input" / "part-0.jsonl").write_text("".join(lines[:half]), encoding="utf-8")
    (base / "input" / "part-1.jsonl").write_text("".join(lines[half:]), encoding="utf-8")
    del lines
    script = base / "pipeline.py"
    script.write_text(PIPELINE, encoding="utf-8")
    result = measured([python, str(script), str(base / "input"), str(base)], cwd=base)
    removed = set()
    for path in (base / "removed").glob("*.jsonl"):
        with open(path, encoding="utf-8") as handle:
            removed.update(int(json.loads(line)["id"]) for line in handle)
    shutil.rmtree(base, ignore_errors=True)
    return {**result, "removed": removed}


if __name__ == "__main__":
    sys.exit("run bench/scale_bench.py --peer-python PY")
