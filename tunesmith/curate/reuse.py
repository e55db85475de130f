"""Reuse an identical dataset version: check it file by file against the fresh build, and repair what is off.

The same fingerprint means the same config and the same split hashes, so the fresh build's split files are
byte-identical to what the card promises. Its rejected files are too when it read the same sources and rejected
the same counts; and README.md, report.html and config.resolved.yaml are rendered from the existing card alone,
so they come out byte-identical to what the first curate wrote. Any such file that is missing, not a regular file
or different is put back by an atomic rename from the build. Files the build does not make are the user's: left
alone, and named in a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from tunesmith.artifact_io import sha256_file
from tunesmith.artifacts import (
    CARD_FILE,
    DatasetCard,
    SourceRecord,
    SplitRecord,
    StageRecord,
    card_fingerprint,
    record_problems,
)
from tunesmith.errors import EnvironmentProblem, OutputExistsError

log = logging.getLogger(__name__)


def reuse_version(folder: Path, card: DatasetCard, build: dict, work: Path,
                  read_only: OSError | None = None) -> None:
    """Make `folder` (the version with the build's fingerprint) whole again from `work`, warning of each repair.

    `build` holds the fresh build's "splits", "stages" and "sources"; the side files must already be rendered
    into `work` from `card` (see pipeline.write_side_files). With `read_only` (the error that kept the lock from
    being made) nothing is written: any damage is refused with that reason instead.
    """
    check_card_matches_build(folder, card, build["splits"])
    comparable = _same_rejections(card, build["stages"], build["sources"])
    produced = _files_below(work)
    if not comparable:
        produced = {name for name in produced if not name.startswith("rejected/")}
    damaged = [(name, problem) for name in sorted(produced) if (problem := _problem(folder, name, work)) is not None]
    if damaged and read_only is not None:
        shown = "; ".join(f"{name} ({problem})" for name, problem in damaged)
        raise EnvironmentProblem(f"{folder}: an identical version exists but is damaged ({shown}), and it cannot be "
                                 f"repaired: {read_only.filename}: {read_only.strerror}; make the folder writable "
                                 "and run again")
    for name, _ in damaged:
        _replace(folder, name, work)
    if damaged:
        log.warning("%s was damaged; repaired from this build, which is byte-identical by fingerprint: %s",
                    folder, "; ".join(f"{name} ({problem})" for name, problem in damaged))
    problems = record_problems(card, folder, folder / CARD_FILE)
    if problems:  # only when the build rejected other rows than the card records, so it could not repair them
        raise OutputExistsError(f"{problems[0]}; this build cannot repair it (it read other inputs than the card "
                                "records): move or delete that version and run again")
    _warn_of_foreign_files(folder, produced | _named_by_card(card))


def check_card_matches_build(folder: Path, card: DatasetCard, built: dict[str, SplitRecord]) -> None:
    """Refuse a card that was edited after curation: its hashes or row counts disagree with the build's."""
    # the card's own config and split hashes must give its fingerprint, or the card was edited after curation
    if card_fingerprint(card.config, card.splits) != card.fingerprint:
        raise OutputExistsError(f"{folder / CARD_FILE}: its config and split hashes do not give its fingerprint "
                                "(was the card edited?); move or delete that version and run again")

    def records(splits: dict[str, SplitRecord]) -> dict[str, tuple]:
        return {name: (s.file, s.rows, s.sha256, [(p.file, p.rows, p.sha256) for p in s.parts()])
                for name, s in splits.items()}

    # row counts are not in the fingerprint: comparing them with the build's own counts checks the card's
    differing = sorted(n for n in records(card.splits).keys() | built.keys()
                       if records(card.splits).get(n) != records(built).get(n))
    if differing:
        raise OutputExistsError(
            f"{folder / CARD_FILE}: claims this build's fingerprint but its records of split(s) "
            f"{', '.join(map(repr, differing))} differ from the files this build wrote (was the card edited?); "
            "move or delete that version and run again")


def _same_rejections(card: DatasetCard, stages: list[StageRecord], sources: list[SourceRecord]) -> bool:
    """Whether the build rejected what the card records: same source bytes, same counts and files per stage.
    Only then are the build's rejected files the card's (the fingerprint covers the splits, not the rejects)."""
    def of_sources(records: list[SourceRecord]) -> list[tuple]:
        return [(s.format, s.rows, s.sha256) for s in records]

    def of_stages(records: list[StageRecord]) -> list[tuple]:
        return [(s.name, s.rows_in, s.rows_out, s.rows_rejected, s.rejected_file) for s in records]

    return of_sources(card.sources) == of_sources(sources) and of_stages(card.stages) == of_stages(stages)


def _problem(folder: Path, name: str, work: Path) -> str | None:
    """Why `folder/name` is not the build's file (None when it is byte-identical)."""
    for parent in reversed(Path(name).parents[:-1]):  # a symlinked rejected/ would send the repair elsewhere
        try:
            mode = (folder / parent).lstat().st_mode
        except FileNotFoundError:
            return "missing"
        if not stat.S_ISDIR(mode):
            raise OutputExistsError(f"{folder / parent}: is not a folder (a version's {parent}/ holds its files); "
                                    "move it away and run again")
    path = folder / name
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "missing"
    if stat.S_ISDIR(mode):
        raise OutputExistsError(f"{path}: is a folder, where the version keeps a file; move it away and run again")
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if sha256_file(path) != sha256_file(work / name):
        return "changed: sha256 mismatch"
    return None


def _replace(folder: Path, name: str, work: Path) -> None:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)  # a deleted rejected/ folder
    os.replace(work / name, target)  # atomic; replaces a symlink itself, never the file it points to


def _named_by_card(card: DatasetCard) -> set[str]:
    """Files the card names that a build may not remake (rejects of other inputs), and card.json itself."""
    named = {CARD_FILE} | {p.file for s in card.splits.values() for p in s.parts()}
    for stage in card.stages:
        named |= {f for f in (stage.rejected_file, stage.findings.get("clusters_file")) if isinstance(f, str)}
    return named


def _warn_of_foreign_files(folder: Path, known: set[str]) -> None:
    foreign = sorted(_files_below(folder) - known)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        log.warning("%s holds files curate did not write, left as they are: %s", folder, shown)


def _files_below(folder: Path) -> set[str]:
    """Relative paths of everything below `folder` but folders (symlinks included, never followed)."""
    found = set()
    for root, dirs, files in os.walk(folder):
        links = [d for d in dirs if (Path(root) / d).is_symlink()]
        found.update((Path(root) / name).relative_to(folder).as_posix() for name in files + links)
    return found
