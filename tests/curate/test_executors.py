"""Every executor writes the same dataset version: local with one process, local with two workers and small
batches, and Ray Data on a real local cluster give byte-identical split and rejected files and one fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.artifacts import read_card
from tunesmith.config import load_config
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate

from .test_pipeline import write_config

ray = pytest.importorskip("ray")  # `make test` installs the `ray` extra; a plain `pip install -e .` does not


def curated(folder: Path, tokenizer: Path, *overrides: str):
    return run_curate(load_config(CurateConfig, write_config(folder, tokenizer), list(overrides)))


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name not in ("card.json", "report.html", "README.md", "config.resolved.yaml")}


def test_local_workers_and_ray_write_identical_versions(tmp_path, tiny_tokenizer_dir):
    one = curated(tmp_path / "one", tiny_tokenizer_dir, "workers=1")
    two = curated(tmp_path / "two", tiny_tokenizer_dir, "workers=2", "batch_size=3")
    on_ray = curated(tmp_path / "ray", tiny_tokenizer_dir, "executor=ray", "workers=2", "batch_size=4")
    assert one.card.fingerprint == two.card.fingerprint == on_ray.card.fingerprint
    reference = files_of(one.directory)
    assert any(name.startswith("rejected/") for name in reference)  # the fixture has rows to reject
    assert files_of(two.directory) == reference
    assert files_of(on_ray.directory) == reference
    cards = [read_card(r.directory) for r in (one, two, on_ray)]
    findings = [[(s.name, s.rows_in, s.rows_out, s.findings) for s in c.stages] for c in cards]
    assert findings[0] == findings[1] == findings[2]
    # how the work ran is not part of what was made: the fingerprint ignores it, the card still records it
    assert [c.config["executor"] for c in cards] == ["local", "local", "ray"]
