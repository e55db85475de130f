"""The bad-input corpus: its tables (read from tests/fixtures/bad/README.md), small curate runs and the checks
that no row went missing. Shared by the robustness tests."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from tunesmith.artifacts import SplitRecord, StageRecord, read_card
from tunesmith.card_integrity import split_rows as card_split_rows
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import CurateResult, run_curate

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "fixtures" / "bad"
SMALL_STAGES = [{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "split"}]


def read_tables(readme: Path = BAD / "README.md") -> dict[str, list[dict[str, str]]]:
    """Every markdown table of the README, keyed by the first word(s) of the heading above it."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, columns = "", None
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading, columns = line[3:].split(":")[0].split(" (")[0].strip(), None
            continue
        if not line.startswith("|"):
            columns = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if columns is None:
            columns = cells
        elif not set(line) <= set("|-: "):
            tables.setdefault(heading, []).append(dict(zip(columns, cells)))
    return tables


def fragments(cell: str) -> list[str]:
    """The `quoted` pieces of a table cell: what a message must contain."""
    return re.findall(r"`([^`]+)`", cell)


def config(tmp_path: Path, sources: list[dict], stages=None, **extra) -> CurateConfig:
    return CurateConfig.model_validate({
        "name": "bad", "output_dir": str(tmp_path / "out"), "sources": sources,
        "stages": stages or SMALL_STAGES, "gates": {"min_rows": 0, "max_rejected_rate": None}, "report": False,
        "workers": 1, **extra,
    })


def curate(tmp_path: Path, *paths: Path, stages=None, **extra) -> CurateResult:
    """Curate files into tmp_path; each source is named after its file name, so bom.csv and bom.json differ."""
    sources = [{"path": str(p), "name": p.name.replace(".", "_")} for p in paths]
    return run_curate(config(tmp_path, sources, stages, **extra))


def rejected_rows(directory: Path) -> list[dict]:
    # split on "\n" only: str.splitlines would also cut at U+0085 or U+2028 inside a row
    return [json.loads(line) for file in sorted((directory / "rejected").glob("*.jsonl"))
            for line in file.read_text(encoding="utf-8").split("\n") if line]


def split_rows(directory: Path, splits: dict[str, SplitRecord]) -> list[dict]:
    rows = []
    for name, split in splits.items():  # JSONL files or Parquet shards, read as training reads them
        rows += list(card_split_rows(directory, split, name))
    assert len(rows) == sum(split.rows for split in splits.values())
    return rows


def assert_conserved(source_rows: dict[str, int], stages: list[StageRecord], kept: list[dict], rejected: list[dict]):
    """Every stage conserves rows, and every row read (ids `<source>:<row>`) is kept or rejected exactly once."""
    for stage in stages:
        assert stage.rows_in == stage.rows_out + stage.rows_rejected, stage.name
    for before, after in zip(stages, stages[1:]):
        assert after.rows_in == before.rows_out, f"{before.name} -> {after.name}"
    read = sum(source_rows.values())
    assert stages[0].rows_in == read == len(kept) + len(rejected)
    assert Counter(r["stage"] for r in rejected) == Counter({s.name: s.rows_rejected for s in stages if s.rows_rejected})
    ids = [row["id"] for row in kept + rejected]
    assert len(ids) == len(set(ids))
    assert set(ids) == {f"{name}:{i}" for name, rows in source_rows.items() for i in range(rows)}
    for row in rejected:
        assert row["reason"] and row["detail"] and row["where"], row


def assert_no_row_lost(version: Path) -> tuple[list[dict], list[dict]]:
    """`assert_conserved` for a written dataset version, read back from its card, splits and rejected/."""
    card = read_card(version)
    kept, rejected = split_rows(version, card.splits), rejected_rows(version)
    sources = CurateConfig.model_validate(card.config).sources
    names = [source.name or Path(source.path).stem for source in sources]
    assert_conserved({name: record.rows for name, record in zip(names, card.sources)}, card.stages, kept, rejected)
    return kept, rejected


def where(path: Path, at: str) -> str:
    """The `where` of a rejected row from the table's `at` column (':3' is line 3, 'row 1' a 0-based row)."""
    return f"{path}{at}" if at.startswith(":") else f"{path} {at}"
