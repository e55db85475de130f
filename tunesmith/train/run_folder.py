"""The run folder: a unique name, one writer at a time, the settings a run started with, and what an
interrupted run leaves behind.

`started.json`, written atomically when training starts, holds the card fingerprint, the resolved config and the
base model's identity (weights sha256, fingerprint and each base file's sha256); `--resume` compares them with
the new ones and refuses every difference that would make the steps after the checkpoint come from another run
than the steps before it (see `resume_changes`). It also keeps
one entry per segment (the first start, then each --resume: its step, start time, wall seconds and resumable
settings), which run.json reports. It is removed once run.json, which records the same, is written.

A fresh run that fails before its first complete checkpoint leaves no folder behind when the folder holds only
the files a start writes (see `claimed_run_folder`); a resumed run's folder is always kept.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesmith.artifact_io import atomic_write_text
from tunesmith.artifacts import RUN_FILE
from tunesmith.config import dump_config
from tunesmith.errors import MissingInputError, OutputExistsError, UsageError
from tunesmith.locks import LOCK_FILE, clear_stale_work, folder_lock
from tunesmith.models import BaseIdentity
from tunesmith.train.checkpoints import STAGING, latest_checkpoint
from tunesmith.train.config import TrainConfig

log = logging.getLogger(__name__)

STARTED = "started.json"
CONFIG_FILE = "config.resolved.yaml"
CHECKPOINTS = "checkpoints"
DISCARDED = ".checkpoints-discarded"  # see checkpoints.discard_checkpoints
# everything train writes into a run folder; a folder holding anything else is not one of ours to reuse
OURS = {STARTED, CONFIG_FILE, CHECKPOINTS, DISCARDED, LOCK_FILE, "metrics.jsonl", "adapter", RUN_FILE}

# settings that change how a run is logged, checkpointed or found, never what it computes; `card` is the path,
# checked through the card fingerprint instead, so a moved card still resumes
RESUMABLE = {"logging_steps", "save_steps", "keep_checkpoints", "restore_best", "output_dir", "run_id", "card"}
# what a start writes before any checkpoint is complete; a failed fresh run's folder holding only these goes
START_FILES = {STARTED, CONFIG_FILE, CHECKPOINTS, DISCARDED, LOCK_FILE, "metrics.jsonl"}
# the settings a segment may change on --resume (see _resumable), recorded per segment in run.json
SEGMENT_KEYS = sorted((RESUMABLE - {"output_dir", "run_id"}) | {"eval_steps", "max_steps", "epochs"})


def run_name(config: TrainConfig, fingerprint: str) -> str:
    """The run id: as configured, or time (to the millisecond) + card + a random suffix, unique across a sweep."""
    if config.run_id:
        return config.run_id
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}.{now.microsecond // 1000:03d}-{fingerprint[:8]}-{secrets.token_hex(3)}"


@contextmanager
def claimed_run_folder(config: TrainConfig, fingerprint: str, resume: bool) -> Iterator[Path]:
    """The run folder, locked for the whole `with` block: a second writer of the same run id is refused at once."""
    if resume and not config.run_id:
        raise MissingInputError("--resume needs the run_id of the run to continue")
    root = Path(config.output_dir)
    run_dir = root / config.run_id if config.run_id else _new_run_folder(root, config, fingerprint)
    if resume and not run_dir.is_dir():
        raise MissingInputError(f"{run_dir}: no run to resume")
    found_empty = bool(config.run_id) and run_dir.is_dir() and not any(run_dir.iterdir())  # made by the user
    with folder_lock(run_dir, f"run {run_dir.name}"):
        _check_state(run_dir, resume)  # only now: a live writer's folder is never judged from outside its lock
        clear_stale_work(run_dir, (DISCARDED,))
        clear_stale_work(run_dir / CHECKPOINTS, (STAGING,))
        try:
            yield run_dir
        except BaseException:
            if not resume and not found_empty:
                drop_unstarted(run_dir)
            raise


def drop_unstarted(run_dir: Path) -> bool:
    """Remove a run folder that holds only start files and no complete checkpoint: nothing in it can be resumed,
    so a failed attempt (bad data, a missing model) leaves no junk folder. True when it was removed."""
    if not run_dir.is_dir() or latest_checkpoint(run_dir / CHECKPOINTS) is not None:
        return False
    if not all(_ours(p.name, START_FILES) for p in run_dir.iterdir()):
        return False  # an adapter saved before run.json, or files someone else put there: keep them
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def _new_run_folder(root: Path, config: TrainConfig, fingerprint: str) -> Path:
    """Create a fresh default-named folder exclusively, so two runs started at once never share one."""
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        run_dir = root / run_name(config, fingerprint)
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise OutputExistsError(f"{root}: could not create a new run folder; set run_id")


def _check_state(run_dir: Path, resume: bool) -> None:
    if (run_dir / RUN_FILE).exists():
        raise OutputExistsError(f"{run_dir} already holds a finished run; choose another run_id")
    strangers = sorted(p.name for p in run_dir.iterdir() if not _ours(p.name))
    if strangers:
        raise OutputExistsError(f"{run_dir} holds files tunesmith did not write ({', '.join(strangers[:5])}); "
                                "choose another run_id or output_dir")
    checkpoint = latest_checkpoint(run_dir / CHECKPOINTS)
    if not resume and checkpoint is not None:
        raise OutputExistsError(f"{run_dir} holds an unfinished run ({checkpoint.name}); continue it with --resume "
                                "or pick another run_id")
    if not resume:  # nothing complete to resume from: what a killed start left is ours to replace
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)


def _ours(name: str, which: set[str] = OURS) -> bool:
    """One of train's files, or the temporary file of an atomic write of one (left by a kill)."""
    return name in which or any(name.startswith(f".{ours}.") for ours in which)


def record_start(run_dir: Path, config: TrainConfig, fingerprint: str, base: BaseIdentity, step: int) -> None:
    """Write what this (part of the) run trains with: config.resolved.yaml and started.json."""
    previous = read_started(run_dir) if step else None
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    flat = _flat(config.model_dump(mode="json"))
    segment = {"step": step, "started_at": now, "seconds": None, "settings": {k: flat.get(k) for k in SEGMENT_KEYS}}
    started = {"card_fingerprint": fingerprint, "base_model_sha256": base.weights_sha256,
               "base_model_fingerprint": base.fingerprint, "base_model_files": base.files,
               "config": config.model_dump(mode="json"), "started_at": now,
               "resumed_at_steps": [*(previous or {}).get("resumed_at_steps", []), *([step] if step else [])],
               "segments": [*_ended_segments(run_dir, previous), segment]}
    atomic_write_text(run_dir / STARTED, json.dumps(started, indent=2) + "\n")
    dump_config(config, run_dir / CONFIG_FILE)


def _ended_segments(run_dir: Path, previous: dict | None) -> list[dict]:
    """The earlier segments, each with its wall seconds; a killed one (no seconds recorded) is timed from its start
    to the last thing it wrote (metrics.jsonl, a checkpoint)."""
    segments = [dict(s) for s in (previous or {}).get("segments", [])]
    for segment in segments:
        if segment.get("seconds") is None:
            written = [p.stat().st_mtime for p in (run_dir / "metrics.jsonl", *(run_dir / CHECKPOINTS).glob("*"))
                       if p.exists()]
            begun = datetime.fromisoformat(segment["started_at"]).timestamp()
            segment["seconds"] = round(max([begun, *written]) - begun, 2)
            segment["estimated"] = True
    return segments


def end_segment(run_dir: Path, since: datetime, seconds: float) -> None:
    """Record the wall seconds of the segment that is ending in failure, so a later --resume counts them; only one
    begun at `since` or later (this process's, not a killed one's a refused --resume found).

    Best effort: it runs while another error is on its way out, which must not be replaced by this one.
    """
    try:
        started = json.loads((run_dir / STARTED).read_text(encoding="utf-8"))
        last = started["segments"][-1]
        since = since.replace(microsecond=since.microsecond // 1000 * 1000)  # started_at has milliseconds
        if last.get("seconds") is None and datetime.fromisoformat(last["started_at"]) >= since:
            last["seconds"] = round(seconds, 2)
            atomic_write_text(run_dir / STARTED, json.dumps(started, indent=2) + "\n")
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass


def run_segments(run_dir: Path, config: TrainConfig, seconds: float) -> tuple[list[int], list[dict]]:
    """For run.json: the steps resumed at, and each segment's step, wall seconds and the resumable settings it
    ran with where they differ from the final config (an empty dict when none did)."""
    started = read_started(run_dir) or {}
    segments = [dict(s) for s in started.get("segments", [])] or [{"step": 0, "settings": {}}]
    segments[-1]["seconds"] = round(seconds, 2)
    final = _flat(config.model_dump(mode="json"))
    recorded = []
    for segment in segments:
        settings = segment.get("settings", {})
        changed = {k: v for k, v in settings.items() if k in final and final[k] != v}
        entry = {"resumed_at_step": segment.get("step", 0), "seconds": segment["seconds"], "changed_settings": changed}
        recorded.append({**entry, **({"seconds_estimated": True} if segment.get("estimated") else {})})
    return list(started.get("resumed_at_steps", [])), recorded


def read_started(run_dir: Path) -> dict[str, Any] | None:
    """started.json; for a run begun before it existed, the config.resolved.yaml it wrote (no fingerprint, sha)."""
    try:
        return json.loads((run_dir / STARTED).read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except ValueError as err:
        raise UsageError(f"{run_dir / STARTED}: unreadable ({err}); it cannot be resumed, start a new run") from None
    import yaml

    try:
        return {"config": yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8")) or {}, "legacy": True}
    except FileNotFoundError:
        return None


def check_resume(run_dir: Path, config: TrainConfig, fingerprint: str, base: BaseIdentity | None,
                 step: int) -> None:
    """Refuse to resume at `step` with any setting that differs from the run's start, naming each one (`base` is
    None before the model is loaded, when only the settings are compared)."""
    started = read_started(run_dir)
    if started is None:
        raise MissingInputError(f"{run_dir}: no {STARTED} or {CONFIG_FILE}; the settings of steps 1..{step} are "
                                "unknown, so it cannot be resumed; start a new run")
    changes = resume_changes(started, config, fingerprint, base, step)
    if changes:
        raise UsageError(f"{run_dir}: cannot resume at step {step} with other settings than the run started with: "
                         f"{'; '.join(changes)}. Put them back (see {STARTED}), or start a new run with another "
                         f"run_id. Resumable: {', '.join(sorted(RESUMABLE - {'output_dir', 'run_id', 'card'}))}, "
                         "eval_steps without early stopping, and max_steps/epochs with a constant schedule")
    if started.get("legacy"):
        log.warning("%s predates %s: its card fingerprint and base weights could not be compared", run_dir, STARTED)


def resume_changes(started: dict, config: TrainConfig, fingerprint: str, base: BaseIdentity | None,
                   step: int) -> list[str]:
    """Each difference between the started run and the new settings that resuming would hide, as 'key: old -> new'."""
    changes = []
    old_card = started.get("card_fingerprint")
    if old_card is not None and old_card != fingerprint:
        changes.append(f"card fingerprint: {old_card[:16]} -> {fingerprint[:16]}")
    changes += _base_changes(started, base)
    old, new = _flat(started.get("config") or {}), _flat(config.model_dump(mode="json"))
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key) and not _resumable(key, old, new, step, started.get("legacy", False)):
            changes.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}{_why(key, new, step)}")
    return changes


def _base_changes(started: dict, base: BaseIdentity | None) -> list[str]:
    """The base files that differ from the run's start, by name. A run started before the fingerprint was recorded
    is compared by its weights alone; a hub id (nothing local to hash) not at all."""
    if base is None:
        return []
    old = started.get("base_model_fingerprint")
    if old is not None and base.fingerprint is not None:
        if old == base.fingerprint:
            return []
        before = started.get("base_model_files") or {}
        named = [f"{name} {_file_change(before.get(name), base.files.get(name))}"
                 for name in sorted(before.keys() | base.files.keys()) if before.get(name) != base.files.get(name)]
        return [f"base model files: {', '.join(named) or 'not recorded'} "
                f"(fingerprint {old[:16]} -> {base.fingerprint[:16]})"]
    old, new = started.get("base_model_sha256"), base.weights_sha256
    if old is not None and new is not None and old != new:
        return [f"base weights sha256: {old[:16]} -> {new[:16]}"]
    return []


def _file_change(old: str | None, new: str | None) -> str:
    if old is None:
        return "added"
    return "removed" if new is None else f"changed ({old[:12]} -> {new[:12]})"


def _resumable(key: str, old: dict, new: dict, step: int, legacy: bool) -> bool:
    if key in RESUMABLE:
        return not (legacy and key == "card")  # without a recorded fingerprint the card path is the evidence
    if key == "eval_steps":  # evaluations decide when early stopping stops; otherwise they only log
        return not old.get("early_stopping_patience") and not new.get("early_stopping_patience")
    if key == "epochs" and old.get("max_steps") and new.get("max_steps"):
        return True  # ignored when max_steps is set
    if key in ("max_steps", "epochs"):
        # only a constant rate is the same at every step whatever the length; cosine and linear rates of the
        # steps already taken depend on the total, so a longer run would not be the run its record describes
        constant = old.get("schedule") == new.get("schedule") == "constant"
        return constant and (key == "epochs" or (new.get("max_steps") or 0) > step)
    return False


def _why(key: str, new: dict, step: int) -> str:
    if key == "max_steps" and new.get("schedule") == "constant" and (new.get("max_steps") or 0) <= step:
        return f" (the checkpoint is at step {step} already)"
    if key in ("max_steps", "epochs"):
        return f" (the {new.get('schedule')} schedule of the steps already taken depends on the length)"
    return ""


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def finish(run_dir: Path) -> None:
    """After run.json: started.json says nothing run.json does not, and the lock file dies with the writer."""
    (run_dir / STARTED).unlink(missing_ok=True)
    (run_dir / LOCK_FILE).unlink(missing_ok=True)


def after_interrupt(run_dir: Path) -> str:
    """Tidy what Ctrl-C/SIGTERM left and say what was kept: the checkpoint to resume from, or nothing."""
    shutil.rmtree(run_dir / CHECKPOINTS / STAGING, ignore_errors=True)
    checkpoint = latest_checkpoint(run_dir / CHECKPOINTS)
    if checkpoint is not None:
        return f"{checkpoint.name} is complete; resume with --resume run_id={run_dir.name}"
    if (run_dir / "adapter").is_dir():  # stopped after the adapter was saved, before run.json
        return f"no checkpoint is complete; run again with --resume run_id={run_dir.name} to start it over"
    if all(_ours(p.name) for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        return "nothing was kept; run again"
    return "no checkpoint was complete; run again"
