"""`tunesmith audit`: a one-shot audit of one file with default stages, no split and no gates."""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tunesmith.artifacts import DatasetCard
from tunesmith.curate.card import fingerprint, write_splits
from tunesmith.curate.config import DEFAULT_STAGES, CurateConfig, GatesConfig
from tunesmith.curate.pipeline import finish_version, read_sources, run_stages
from tunesmith.provenance import code_record

AUDIT_STAGES = [s for s in DEFAULT_STAGES if s not in ("split", "contamination")]


def audit_config(path: Path, out: Path, fmt: str = "auto", tokenizer: str = "smollm2-135m-instruct") -> CurateConfig:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem) or "audit"
    return CurateConfig(
        name=name, version="audit", output_dir=str(out), tokenizer=tokenizer,
        sources=[{"path": str(path), "format": fmt}], stages=[{"stage": s} for s in AUDIT_STAGES],
        gates=GatesConfig(min_rows=None),
    )


def run_audit(path: Path, out: Path, fmt: str = "auto", tokenizer: str = "smollm2-135m-instruct") -> Path:
    """Write card.json, report.html, the kept rows and rejected/ into `out`; returns `out`."""
    config = audit_config(path, out, fmt, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".audit-", dir=out))
    work.chmod(0o755)
    try:
        examples, sources = read_sources(config)
        examples, stages, tokenizer_record = run_stages(config, examples, work)
        splits = write_splits(examples, work)
        card = DatasetCard(name=config.name, version="audit", fingerprint=fingerprint(config, splits),
                           created_at=datetime.now(timezone.utc), config=config.model_dump(mode="json"),
                           sources=sources, stages=stages, splits=splits, tokenizer=tokenizer_record, gates=[],
                           code=code_record())
        finish_version(card, config, work)
        shutil.rmtree(out / "rejected", ignore_errors=True)
        for item in sorted(work.iterdir(), key=lambda p: p.name == "card.json"):  # card.json moves last
            item.replace(out / item.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
