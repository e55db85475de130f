"""Run the curate pipeline: read sources, run the configured stages, write a complete dataset version."""

from __future__ import annotations

import errno
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from tunesmith.artifacts import (
    DatasetCard,
    GateRecord,
    SourceRecord,
    StageRecord,
    TokenizerRecord,
    read_card,
    write_card,
)
from tunesmith.curate.card import (
    SplitWriter,
    check_gates,
    existing_version,
    fingerprint,
    next_version,
)
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.engine import Engine, StageRun
from tunesmith.curate.minhash import WordCache
from tunesmith.curate.preference import card_task, task_verdict
from tunesmith.curate.record import Example
from tunesmith.curate.reuse import reuse_version
from tunesmith.curate.sources import check_source, iter_source, read_source
from tunesmith.curate.stage import StageContext, build_stage
from tunesmith.errors import OutputExistsError, TunesmithError
from tunesmith.fitness import fitness_verdict
from tunesmith.locks import clear_stale_work, folder_lock
from tunesmith.provenance import code_record

log = logging.getLogger(__name__)

SPILL_DIR = "spill"  # a global stage's rows between its two passes, inside the work folder (removed with it)
WORK_PREFIX = ".tmp-"  # a version being built; the rename to <version>/ makes it visible


class GateFailure(TunesmithError, RuntimeError):
    """One or more quality gates failed; no card was written."""

    def __init__(self, gates: list[GateRecord], kept_at: Path, verdict: dict | None = None):
        failed = [g for g in gates if not g.passed]
        super().__init__(f"{len(failed)} quality gate(s) failed; rejected rows kept for inspection in {kept_at}")
        self.gates, self.kept_at, self.verdict = gates, kept_at, verdict


@dataclass
class CurateResult:
    card: DatasetCard
    directory: Path
    reused: bool  # an identical version already existed


def load_tokenizer_for(config: CurateConfig):
    from tunesmith.models import load_tokenizer

    return load_tokenizer(config.tokenizer, trust_remote_code=config.trust_remote_code)


def run_stages(config: CurateConfig, examples: Iterable[Example], work_dir: Path, progress=None,
               sink: Callable[[list[Example]], None] | None = None):
    """Stream `examples` through every stage in order (the engine in engine.py).

    Returns the survivors (a list, when no `sink` takes them batch by batch), the stage records and the
    tokenizer record.
    """
    extra: dict = {"word_cache": WordCache()}  # shared by the stages that read whole conversations
    tokenizer_record = None
    stage_names = [entry["stage"] for entry in config.stages]
    if "token_stats" in stage_names:
        tokenizer = load_tokenizer_for(config)
        extra.update(tokenizer=tokenizer, tokenizer_name=config.tokenizer)
    elif _validate_wants_tokenizer(config):
        extra.update(_tokenizer_for_validate(config))
    if "token_stats" in stage_names:
        max_len = next(e["max_seq_len"] for e in config.stages if e["stage"] == "token_stats")
        tokenizer_record = TokenizerRecord(name=config.tokenizer, max_seq_len=max_len,
                                           chat_template_sha256=_sha(getattr(tokenizer, "chat_template", None)))
    runs = []
    for entry in config.stages:
        stage = build_stage(entry)
        ctx = StageContext(stage.name, work_dir / "rejected", seed=config_seed(config), extra=extra)
        runs.append(StageRun(stage, ctx))
    survivors: list[Example] | None = None
    if sink is None:
        survivors = []
        sink = survivors.extend
    options = dict(batch_size=config.batch_size, workers=config.worker_count(),
                   on_record=lambda record: _report(record, progress))
    if config.executor == "ray":
        from tunesmith.curate.ray_executor import RayEngine  # without Ray installed: a one-line UsageError

        engine = RayEngine(runs, work_dir / SPILL_DIR, address=config.ray_address, **options)
    else:
        engine = Engine(runs, work_dir / SPILL_DIR, **options)
    try:
        records = engine.run(examples, sink)
    finally:
        for run in runs:
            run.ctx.close()
        shutil.rmtree(work_dir / SPILL_DIR, ignore_errors=True)
    return survivors, records, tokenizer_record


def _validate_wants_tokenizer(config: CurateConfig) -> bool:
    """validate rejects text holding the tokenizer's special tokens unless told to allow them."""
    return any(e["stage"] == "validate" and e.get("special_tokens", "reject") == "reject" for e in config.stages)


def _tokenizer_for_validate(config: CurateConfig) -> dict:
    """The configured tokenizer, so validate checks its own special tokens; when it cannot be loaded (a hub id
    offline, say), validate falls back to its built-in list of common control strings, and says so."""
    from tunesmith.models import ModelError

    try:
        return {"tokenizer": load_tokenizer_for(config), "tokenizer_name": config.tokenizer}
    except ModelError as err:
        log.warning("validate checks special tokens against its built-in list only: %s", err)
        return {}


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


def stream_sources(config: CurateConfig, records: list[SourceRecord]) -> Iterator[Example]:
    """Every source's rows in order; each source's record is appended to `records` once it has been read."""
    for source in config.sources:
        record = yield from iter_source(source)
        records.append(record)


def run_curate(config: CurateConfig, progress=None) -> CurateResult:
    """Curate into `<output_dir>/<name>/<version>/`; raises GateFailure (and writes no card) on a failed gate.

    One curate at a time writes a dataset folder: a second one of the same dataset waits for the lock, then
    finds the version the first one made and reuses it. Under the lock, work folders of killed runs are removed.
    A dataset folder where the lock cannot be made (read-only) can still hand out an identical, intact version.
    """
    dataset_dir = Path(config.output_dir) / config.name
    with ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(dataset_dir, f"dataset {config.name}", wait=True))
        except OSError as err:
            if err.errno not in (errno.EROFS, errno.EACCES):
                raise
            return _curate_read_only(config, dataset_dir, progress, err)
        clear_stale_work(dataset_dir, (WORK_PREFIX,))
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=dataset_dir))
        return _curate_in(config, dataset_dir, work, progress)


def _curate_read_only(config: CurateConfig, dataset_dir: Path, progress, err: OSError) -> CurateResult:
    """Nothing can be written here, so no one else writes either: build elsewhere, and only reuse."""
    work = Path(tempfile.mkdtemp(prefix="tunesmith-curate-"))
    result = _curate_in(config, dataset_dir, work, progress, read_only=err)
    log.info("%s: not locked, since the folder is read-only (%s)", dataset_dir, err.strerror)
    return result


def _curate_in(config: CurateConfig, dataset_dir: Path, work: Path, progress,
               read_only: OSError | None = None) -> CurateResult:
    """Build the version in `work`; rename it into `dataset_dir`, or reuse the identical version there.
    With `read_only`, only the reuse is possible: anything else raises that error."""
    work.chmod(0o755)  # mkdtemp makes 0700; a dataset version is meant to be shared
    try:
        for source in config.sources:  # an unreadable input is refused before the tokenizer loads or anything runs
            check_source(source)
        sources: list[SourceRecord] = []
        writer = SplitWriter(work, config.split_format, config.shard_rows)
        try:
            _, stages, tokenizer_record = run_stages(config, stream_sources(config, sources), work, progress,
                                                     sink=writer.write)
        except BaseException:
            writer.abort()
            raise
        task = card_task(sources)  # one task per card; a mix of preference and SFT sources is refused here
        splits = writer.close()
        fp = fingerprint(config, splits)
        build = {"splits": splits, "stages": stages, "sources": sources}
        if read_only is not None:  # the identical version passed its gates when it was made
            same = existing_version(dataset_dir, fp)
            if same is None:
                raise read_only  # no identical version to hand out, and nowhere to write one
            return _reuse(same, build, work, read_only)
        gates = check_gates(config, stages, splits)
        verdict = task_verdict(fitness_verdict(stages, splits, gates, config.gates.max_rejected_rate), task)
        if not all(g.passed for g in gates):
            failed_dir = dataset_dir / f"failed-{fp[:12]}"
            shutil.rmtree(failed_dir, ignore_errors=True)
            work.rename(failed_dir)
            raise GateFailure(gates, failed_dir, verdict)
        same = existing_version(dataset_dir, fp)
        if same is not None:
            return _reuse(same, build, work, read_only)
        version = config.version or next_version(dataset_dir)
        target = dataset_dir / version
        if target.exists() or target.is_symlink():
            raise OutputExistsError(f"{target} already holds a different version; choose another `version`")
        card = DatasetCard(name=config.name, version=version, fingerprint=fp, created_at=datetime.now(timezone.utc),
                           config=config.model_dump(mode="json"), sources=sources, stages=stages, splits=splits,
                           tokenizer=tokenizer_record, gates=gates, code=code_record(), task=task,
                           verdict=verdict)
        finish_version(card, work)
        work.rename(target)
        return CurateResult(card, target, reused=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _reuse(same: Path, build: dict, work: Path, read_only: OSError | None) -> CurateResult:
    """Reuse the identical version, first repairing whatever was damaged since (from this build's own files)."""
    card = read_card(same)
    write_side_files(card, work)  # from the existing card: byte-identical to what the first curate wrote
    reuse_version(same, card, build, work, read_only)
    log.info("an identical version exists (%s); reusing it", same)
    return CurateResult(card, same, reused=True)


def finish_version(card: DatasetCard, work: Path) -> None:
    """Write the side files, and card.json last."""
    write_side_files(card, work)
    write_card(card, work)


def write_side_files(card: DatasetCard, folder: Path) -> None:
    """The resolved config, README and audit report, each rendered from the card alone (so a reuse can remake
    them byte for byte to check an existing version)."""
    from tunesmith.curate.readme import write_dataset_readme

    # what dump_config writes for the config the card was made from (card.config is its model_dump)
    text = yaml.safe_dump(card.config, sort_keys=False, allow_unicode=True)
    (folder / "config.resolved.yaml").write_text(text, encoding="utf-8")
    write_dataset_readme(card, folder / "README.md")
    if card.config.get("report", True):
        from tunesmith.reports.audit import render_audit_report

        render_audit_report(card, folder / "report.html")
