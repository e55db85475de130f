"""The run folder: a unique name, one writer at a time, the settings a run started with, and what an
interrupted run leaves behind.

`started.json`, written atomically when training starts, holds the card fingerprint, the resolved config and the
base weights sha256; `--resume` compares them with the new ones and refuses every difference that would make the
steps after the checkpoint come from another run than the steps before it (see `resume_changes`). It is removed
once run.json, which records the same, is written.
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
    with folder_lock(run_dir, f"run {run_dir.name}"):
        _check_state(run_dir, resume)  # only now: a live writer's folder is never judged from outside its lock
        clear_stale_work(run_dir, (DISCARDED,))
        clear_stale_work(run_dir / CHECKPOINTS, (STAGING,))
        yield run_dir


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


def _ours(name: str) -> bool:
    """One of train's files, or the temporary file of an atomic write of one (left by a kill)."""
    return name in OURS or any(name.startswith(f".{ours}.") for ours in OURS)


def record_start(run_dir: Path, config: TrainConfig, fingerprint: str, base_sha: str | None, step: int) -> None:
    """Write what this (part of the) run trains with: config.resolved.yaml and started.json."""
    previous = read_started(run_dir) if step else None
    started = {"card_fingerprint": fingerprint, "base_model_sha256": base_sha,
               "config": config.model_dump(mode="json"),
               "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "resumed_at_steps": [*(previous or {}).get("resumed_at_steps", []), *([step] if step else [])]}
    atomic_write_text(run_dir / STARTED, json.dumps(started, indent=2) + "\n")
    dump_config(config, run_dir / CONFIG_FILE)


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


def check_resume(run_dir: Path, config: TrainConfig, fingerprint: str, base_sha: str | None, step: int) -> None:
    """Refuse to resume at `step` with any setting that differs from the run's start, naming each one."""
    started = read_started(run_dir)
    if started is None:
        raise MissingInputError(f"{run_dir}: no {STARTED} or {CONFIG_FILE}; the settings of steps 1..{step} are "
                                "unknown, so it cannot be resumed; start a new run")
    changes = resume_changes(started, config, fingerprint, base_sha, step)
    if changes:
        raise UsageError(f"{run_dir}: cannot resume at step {step} with other settings than the run started with: "
                         f"{'; '.join(changes)}. Put them back (see {STARTED}), or start a new run with another "
                         f"run_id. Resumable: {', '.join(sorted(RESUMABLE - {'output_dir', 'run_id', 'card'}))}, "
                         "eval_steps without early stopping, and max_steps/epochs with a constant schedule")
    if started.get("legacy"):
        log.warning("%s predates %s: its card fingerprint and base weights could not be compared", run_dir, STARTED)


def resume_changes(started: dict, config: TrainConfig, fingerprint: str, base_sha: str | None,
                   step: int) -> list[str]:
    """Each difference between the started run and the new settings that resuming would hide, as 'key: old -> new'."""
    changes = []
    for what, field, new in (("card fingerprint", "card_fingerprint", fingerprint),
                             ("base weights sha256", "base_model_sha256", base_sha)):
        old = started.get(field)
        if old is not None and new is not None and old != new:
            changes.append(f"{what}: {old[:16]} -> {new[:16]}")
    old, new = _flat(started.get("config") or {}), _flat(config.model_dump(mode="json"))
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key) and not _resumable(key, old, new, step, started.get("legacy", False)):
            changes.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}{_why(key, new, step)}")
    return changes


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
