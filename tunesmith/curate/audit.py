"""`tunesmith audit`: a one-shot audit of one file with default stages and no split (or a curate config's).

The audit folder is built like a curate version: in a work folder, then renamed into place, so it is whole or
absent. A folder that is already there is replaced only when it is an earlier audit, known by its MARKER file
(which lists every file that audit wrote) and holding nothing else; anything else is the user's and is refused.
The lock and the work folders live in `.<name>.tunesmith-audit/` beside the audit folder (same file system, so
the renames are atomic). It is made only once the input and `--out` pass their checks, and removed when the
audit ends if it holds only a lock no one holds (a waiting audit then locks the new one, see locks.py).
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from tunesmith.artifacts import CARD_FILE, DatasetCard, read_card
from tunesmith.config import ConfigError, problem_text, read_yaml
from tunesmith.curate.card import check_gates, fingerprint, write_splits
from tunesmith.curate.config import DEFAULT_STAGES, CurateConfig
from tunesmith.curate.pipeline import finish_version, read_sources, run_stages
from tunesmith.curate.preference import card_task, task_verdict
from tunesmith.errors import OutputExistsError, UsageError
from tunesmith.fitness import fitness_verdict
from tunesmith.locks import LOCK_FILE, clear_stale_work, folder_lock
from tunesmith.provenance import code_record

AUDIT_STAGES = [s for s in DEFAULT_STAGES if s not in ("split", "contamination")]
AUDIT_VERSION = "audit"  # the card's version: with MARKER, what makes a folder an earlier audit
MARKER = ".tunesmith-audit"
WORK_PREFIX, OLD_PREFIX = "tmp-", "old-"  # inside the side folder: the audit being built, the one it replaces


# the config fields audit fills from its arguments, named as the user typed them
AUDIT_ARGUMENTS = {("sources", 0, "path"): "path", ("sources", 0, "format"): "--format",
                   ("sources", 0, "columns"): "--columns", ("sources", 0, "keep_columns"): "--keep-columns",
                   ("tokenizer",): "--tokenizer", ("output_dir",): "--out",
                   ("stages",): "--stages/--config stages", ("gates",): "--config gates"}
DEFAULT_TOKENIZER = "smollm2-135m-instruct"
FROM_CONFIG = ("stages", "gates", "tokenizer", "trust_remote_code")  # what --config lends an audit; the rest is curate's


def audit_config(path: Path, out: Path, fmt: str = "auto", tokenizer: str | None = None, *,
                 columns: dict[str, str] | None = None, stages: list[str] | None = None,
                 config_file: Path | None = None, keep_columns: list[str] | None = None) -> CurateConfig:
    """The curate config an audit runs: default stages and no gates, or the stages and gates of `config_file`;
    `stages` picks stages by name (with that file's parameters when it has them), validate always first."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem) or "audit"
    base = {k: v for k, v in _curate_file(config_file).items() if k in FROM_CONFIG} if config_file else {}
    entries = base.get("stages") or [{"stage": s} for s in AUDIT_STAGES]
    if stages is not None:
        by_name = {e.get("stage"): e for e in entries if isinstance(e, dict)}
        picked = [by_name.get(s, {"stage": s}) for s in stages if s != "validate"]
        entries = [by_name.get("validate", {"stage": "validate"}), *picked]
    try:
        return CurateConfig(
            name=name, version=AUDIT_VERSION, output_dir=str(out), tokenizer=tokenizer or base.get("tokenizer")
            or DEFAULT_TOKENIZER, trust_remote_code=base.get("trust_remote_code", False),
            sources=[{"path": str(path), "format": fmt, "columns": columns or {}, "keep_columns": keep_columns or []}],
            stages=entries,
            gates=base.get("gates", {"min_rows": None}),
        )
    except ValidationError as err:  # an argument the user gave (a file name that is not UTF-8, a bad --format)
        problems = [f"{AUDIT_ARGUMENTS.get(item['loc'][:3], '.'.join(map(str, item['loc'])))}: {problem_text(item)}"
                    for item in err.errors(include_url=False)]
        raise ConfigError("tunesmith audit: " + "; ".join(problems)) from None


def _curate_file(path: Path) -> dict:
    """The --config file's mapping, its top-level keys checked as curate checks them: a misspelled `gate:` would
    otherwise be skipped with the keys audit does not use, and the audit run without the gates asked for."""
    data = read_yaml(path)
    valid = list(CurateConfig.model_fields)
    problems = []
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key)[:100], valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{str(key)[:60]!r} is not a curate config key{hint}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems) + f" (valid keys: {', '.join(valid)}; audit uses "
                          f"{', '.join(FROM_CONFIG)})")
    return data


def run_audit(path: Path, out: Path, fmt: str = "auto", tokenizer: str | None = None, **choices) -> Path:
    """Write card.json, report.html, the kept rows and rejected/ into `out` (new, empty or an earlier audit).
    `choices` are audit_config's columns, keep_columns, stages and config_file."""
    out = Path(os.path.abspath(Path(out).expanduser()))
    if not out.name:
        raise UsageError(f"--out {out}: give a folder below the file system root")
    out = out.parent.resolve() / out.name  # symlinked parents are fine; `out` itself must be a real folder
    side = out.parent / f".{out.name}.tunesmith-audit"
    config = audit_config(Path(path), out, fmt, tokenizer, **choices)
    try:
        if side.is_dir():  # a killed audit may have left the earlier one aside: put it back before anything else
            with folder_lock(side, f"the audit {out}", wait=True):
                _restore_interrupted(side, out)
        check_destination(Path(path), out)
        read = read_sources(config)  # a missing or unreadable input is refused before anything is made
        with folder_lock(side, f"the audit {out}", wait=True):
            _restore_interrupted(side, out)
            clear_stale_work(side, (WORK_PREFIX, OLD_PREFIX))
            check_destination(Path(path), out)  # again: another audit may have written it while we waited
            work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=side))
            work.chmod(0o755)  # mkdtemp makes 0700; an audit is meant to be shared like a dataset version
            try:
                _build(config, read, work)
                _put_in_place(work, out, side)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        _remove_side_folder(side)
    return out


def check_destination(source: Path, out: Path) -> None:
    """Refuse an output that would overwrite the input, the current folder or anything that is not an earlier
    tunesmith audit."""
    source_real, out_real = Path(os.path.realpath(source)), Path(os.path.realpath(out))
    if source_real == out_real or out_real in source_real.parents:
        raise UsageError(f"{source}: the input lies inside the audit folder {out}, which the audit replaces; "
                         "choose another --out")
    try:
        here = Path(os.path.realpath(os.getcwd()))
    except OSError:  # the current folder was deleted: nothing left to protect
        here = None
    if here is not None and (out_real == here or out_real in here.parents):
        raise UsageError(f"--out {out}: is the current folder or holds it, and the audit replaces that folder "
                         "(the shell would be left in a deleted one); run from elsewhere or choose another --out")
    if out.is_symlink():
        raise OutputExistsError(f"{out}: is a symlink; give a real folder (or a new one) as --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another --out")
    reason = not_an_earlier_audit(out)
    if reason is not None:
        raise OutputExistsError(f"{out}: exists and is not an earlier tunesmith audit ({reason}); "
                                "choose a new or empty folder as --out, or move its files away")


def _remove_side_folder(side: Path) -> None:
    """Remove the side folder when it holds only a lock that no process holds; otherwise leave it."""
    try:
        fd = os.open(side / LOCK_FILE, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.listdir(side) == [LOCK_FILE]:
            os.unlink(side / LOCK_FILE)  # while locked: a waiting audit then sees its lock file gone and retries
            os.rmdir(side)
    except OSError:  # held by another audit (BlockingIOError), or it made a work folder meanwhile
        pass
    finally:
        os.close(fd)


def not_an_earlier_audit(folder: Path) -> str | None:
    """Why `folder` may not be replaced (None: it is empty, or an earlier audit holding only its own files)."""
    if not any(folder.iterdir()):
        return None
    found = _files_in(folder)
    if found is None:
        return "it holds a symlink or something that is not a file"
    try:
        listed = set(json.loads((folder / MARKER).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MARKER} marker"
    try:
        if read_card(folder / CARD_FILE).version != AUDIT_VERSION:
            return f"its {CARD_FILE} is not an audit's"
    except (ValueError, OSError):
        return f"no valid audit {CARD_FILE}"
    allowed = listed | {MARKER} | {parent.as_posix() for name in listed for parent in Path(name).parents}
    foreign = sorted(found - allowed)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"it holds files the audit did not write: {shown}"
    return None


def _files_in(folder: Path, with_folders: bool = True) -> set[str] | None:
    """Relative paths of every file (and folder) below `folder`; None if anything there is a symlink or not a
    regular file or folder (a device, a FIFO), which no audit writes."""
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                return None
        names = files + dirs if with_folders else files
        found.update((Path(root) / name).relative_to(folder).as_posix() for name in names)
    return found


def _build(config: CurateConfig, read: tuple, work: Path) -> None:
    """Run the audit stages on the rows `read` into `work`: rejected/, all.jsonl, the card files, and MARKER
    listing them all."""
    examples, sources = read
    examples, stages, tokenizer_record = run_stages(config, examples, work)
    splits = write_splits(examples, work)
    gates = check_gates(config, stages, splits)  # an audit writes its report either way; the verdict says unfit
    task = card_task(sources)
    verdict = task_verdict(fitness_verdict(stages, splits, gates, config.gates.max_rejected_rate), task)
    card = DatasetCard(name=config.name, version=AUDIT_VERSION, fingerprint=fingerprint(config, splits),
                       created_at=datetime.now(timezone.utc), config=config.model_dump(mode="json"),
                       sources=sources, stages=stages, splits=splits, tokenizer=tokenizer_record, gates=gates,
                       verdict=verdict, code=code_record(), task=task)
    finish_version(card, work)
    files = sorted(_files_in(work, with_folders=False) or ())
    (work / MARKER).write_text(json.dumps({"tool": "tunesmith audit", "files": files}, indent=1) + "\n",
                               encoding="utf-8")


def _restore_interrupted(side: Path, out: Path) -> None:
    """A kill between moving the earlier audit aside and renaming the new one in left no `out`: put it back."""
    aside = sorted(side.glob(f"{OLD_PREFIX}*"), key=lambda p: p.stat().st_mtime)
    if aside and not out.exists() and not out.is_symlink() and (aside[-1] / MARKER).is_file():
        aside[-1].rename(out)


def _put_in_place(work: Path, out: Path, side: Path) -> None:
    """Rename `work` to `out`; an earlier audit there is first renamed aside, and deleted once the new one is in."""
    if not out.exists():
        work.rename(out)
        return
    if not any(out.iterdir()):
        work.replace(out)  # rename(2) replaces an empty folder atomically
        return
    old = Path(tempfile.mkdtemp(prefix=OLD_PREFIX, dir=side))
    out.replace(old)  # onto the empty folder mkdtemp made
    try:
        work.rename(out)
    except BaseException:
        old.rename(out)  # put the earlier audit back rather than leave nothing
        raise
    shutil.rmtree(old, ignore_errors=True)

