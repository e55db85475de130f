"""Run the curate pipeline: read sources, run the configured stages, write a complete dataset version."""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tunesmith.artifacts import (
    DatasetCard,
    GateRecord,
    SourceRecord,
    SplitRecord,
    StageRecord,
    TokenizerRecord,
    read_card,
    write_card,
)
from tunesmith.config import dump_config
from tunesmith.curate import background
from tunesmith.curate.card import (
    check_gates,
    existing_version,
    fingerprint,
    next_version,
    repair_version,
    write_splits,
)
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.minhash import WordCache
from tunesmith.curate.record import Example
from tunesmith.curate.sources import read_source
from tunesmith.curate.stage import StageContext, build_stage
from tunesmith.errors import OutputExistsError, TunesmithError
from tunesmith.locks import clear_stale_work, folder_lock
from tunesmith.provenance import code_record

log = logging.getLogger(__name__)

WORK_PREFIX = ".tmp-"  # a version being built; the rename to <version>/ makes it visible


class GateFailure(TunesmithError, RuntimeError):
    """One or more quality gates failed; no card was written."""

    def __init__(self, gates: list[GateRecord], kept_at: Path):
        failed = [g for g in gates if not g.passed]
        super().__init__(f"{len(failed)} quality gate(s) failed; rejected rows kept for inspection in {kept_at}")
        self.gates, self.kept_at = gates, kept_at


@dataclass
class CurateResult:
    card: DatasetCard
    directory: Path
    reused: bool  # an identical version already existed


def load_tokenizer_for(config: CurateConfig):
    from tunesmith.models import load_tokenizer

    return load_tokenizer(config.tokenizer, trust_remote_code=config.trust_remote_code)


def run_stages(config: CurateConfig, examples: list[Example], work_dir: Path, progress=None):
    """Run every stage in order; returns the survivors, stage records and the tokenizer record."""
    extra: dict = {"word_cache": WordCache()}  # shared by the stages that read whole conversations
    tokenizer_record, records = None, []
    stage_names = [entry["stage"] for entry in config.stages]
    if "token_stats" in stage_names:
        tokenizer = load_tokenizer_for(config)
        extra.update(tokenizer=tokenizer, tokenizer_name=config.tokenizer)
        max_len = next(e["max_seq_len"] for e in config.stages if e["stage"] == "token_stats")
        tokenizer_record = TokenizerRecord(name=config.tokenizer, max_seq_len=max_len,
                                           chat_template_sha256=_sha(getattr(tokenizer, "chat_template", None)))
    pending: dict[int, background.BackgroundStage] = {}
    try:
        for entry in config.stages:
            stage = build_stage(entry)
            ctx = StageContext(stage.name, work_dir / "rejected", seed=config_seed(config), extra=extra)
            if stage.inspector and config.background_inspectors and background.can_fork():
                pending[len(records)] = background.start(stage, examples, ctx)
                records.append(None)
                continue
            examples, record = stage.run(examples, ctx)
            records.append(_report(record, progress))
        for index in list(pending):
            records[index] = _report(pending.pop(index).result(), progress)
            for warning in records[index].findings.get("warnings", []):
                log.warning("%s: %s", records[index].name, warning)
    finally:
        for job in pending.values():  # a later stage failed: stop the background work too
            job.cancel()
    return examples, records, tokenizer_record


def _report(record: StageRecord, progress) -> StageRecord:
    log.info("%-14s %6d in  %6d out  %6d rejected  %.2fs", record.name, record.rows_in, record.rows_out,
             record.rows_rejected, record.seconds)
    if progress is not None:
        progress(record)
    return record


def config_seed(config: CurateConfig) -> int:
    return next((e.get("seed", 0) for e in config.stages if e["stage"] == "split"), 0)


def _sha(text: str | None) -> str | None:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest() if text else None


def read_sources(config: CurateConfig) -> tuple[list[Example], list[SourceRecord]]:
    examples, records = [], []
    for source in config.sources:
        rows, record = read_source(source)
        examples.extend(rows)
        records.append(record)
    return examples, records


def run_curate(config: CurateConfig, progress=None) -> CurateResult:
    """Curate into `<output_dir>/<name>/<version>/`; raises GateFailure (and writes no card) on a failed gate.

    One curate at a time writes a dataset folder: a second one of the same dataset waits for the lock, then
    finds the version the first one made and reuses it. Under the lock, work folders of killed runs are removed.
    """
    dataset_dir = Path(config.output_dir) / config.name
    with folder_lock(dataset_dir, f"dataset {config.name}", wait=True):
        clear_stale_work(dataset_dir, (WORK_PREFIX,))
        return _curate_locked(config, dataset_dir, progress)


def _curate_locked(config: CurateConfig, dataset_dir: Path, progress) -> CurateResult:
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=dataset_dir))
    work.chmod(0o755)  # mkdtemp makes 0700; a dataset version is meant to be shared
    try:
        examples, sources = read_sources(config)
        # the rows live for the whole run: take them out of the cyclic GC's scans (they hold no cycles)
        gc.freeze()
        examples, stages, tokenizer_record = run_stages(config, examples, work, progress)
        splits = write_splits(examples, work)
        fp = fingerprint(config, splits)
        gates = check_gates(config, stages, splits)
        if not all(g.passed for g in gates):
            failed_dir = dataset_dir / f"failed-{fp[:12]}"
            shutil.rmtree(failed_dir, ignore_errors=True)
            work.rename(failed_dir)
            raise GateFailure(gates, failed_dir)
        same = existing_version(dataset_dir, fp)
        if same is not None:
            return _reuse(same, splits, work)
        version = config.version or next_version(dataset_dir)
        target = dataset_dir / version
        if target.exists() or target.is_symlink():
            raise OutputExistsError(f"{target} already holds a different version; choose another `version`")
        card = DatasetCard(name=config.name, version=version, fingerprint=fp, created_at=datetime.now(timezone.utc),
                           config=config.model_dump(mode="json"), sources=sources, stages=stages, splits=splits,
                           tokenizer=tokenizer_record, gates=gates, code=code_record())
        finish_version(card, config, work)
        work.rename(target)
        return CurateResult(card, target, reused=False)
    finally:
        gc.unfreeze()
        shutil.rmtree(work, ignore_errors=True)


def _reuse(same: Path, splits: dict[str, SplitRecord], work: Path) -> CurateResult:
    """Reuse the identical version, first repairing any split file damaged since (from this build's own files)."""
    card = read_card(same)
    repaired = repair_version(same, card, splits, work)
    if repaired:
        log.warning("%s was damaged; repaired from this build, which is byte-identical by fingerprint: %s",
                    same, "; ".join(repaired))
    else:
        log.info("an identical version exists (%s); reusing it", same)
    return CurateResult(card, same, reused=True)


def finish_version(card: DatasetCard, config: CurateConfig, work: Path) -> None:
    """Write the resolved config, README, audit report, and card.json last."""
    from tunesmith.curate.readme import write_dataset_readme

    dump_config(config, work / "config.resolved.yaml")
    write_dataset_readme(card, work / "README.md")
    if config.report:
        from tunesmith.reports.audit import render_audit_report

        render_audit_report(card, work / "report.html")
    write_card(card, work)
