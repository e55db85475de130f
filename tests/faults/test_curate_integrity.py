"""Integrity of curate and audit outputs: an audit never overwrites what a user owns, two curates of one config end
with the one version, killed runs' work folders are cleaned by the next run, and a damaged version is repaired
from the fresh build (or refused with the reason) instead of being reused as it is: its splits, rejected files,
README, report and resolved config, leaving the user's own files alone. A refused or failed audit leaves no
side folder and never replaces the current folder; a read-only dataset folder still hands out an intact version.

Run: .venv/bin/python -m pytest tests/faults/test_curate_integrity.py -q
"""

import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import tunesmith.locks as locks
from tunesmith.artifacts import ShardRecord, read_card, split_problems
from tunesmith.card_integrity import shards_sha256
from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.curate.audit import MARKER, _remove_side_folder, run_audit
from tunesmith.curate.card import existing_version
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.diff import verify_card
from tunesmith.curate.pipeline import run_curate
from tunesmith.errors import BusyError, EnvironmentProblem, OutputExistsError, UsageError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "sft_tiny.jsonl"
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module", autouse=True)
def worker():
    """These tests start their own processes: no CLI worker server (the package conftest starts one per module)."""
    yield None


def curate_yaml(tmp_path: Path, report: bool = False, split_format: str = "parquet") -> Path:
    """A quick config without a tokenizer: three splits (Parquet shards unless asked), no report unless asked."""
    settings = {"name": "tiny", "output_dir": str(tmp_path / "out"), "report": report, "split_format": split_format,
                "sources": [{"path": str(FIXTURE)}], "gates": {"min_rows": 2},
                "stages": [{"stage": "validate", "max_chars": 5000}, {"stage": "exact_dedup"},
                           {"stage": "split", "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}]}
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def curate(tmp_path: Path, report: bool = False, split_format: str = "parquet"):
    return run_curate(load_config(CurateConfig, curate_yaml(tmp_path, report, split_format), []))


def one_line(text: str) -> str:
    return " ".join(text.split())


def says(log: str, message: str) -> bool:
    """`message` is in the log, wherever rich wrapped its lines (a long path breaks anywhere)."""
    return "".join(message.split()) in "".join(log.split())


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path below `folder` with its bytes (None for folders): to show nothing there changed."""
    return {p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in folder.rglob("*")}


# ---- audit --out DIR ----

@pytest.mark.parametrize("earlier_audit", [False, True], ids=["user-folder", "audit-plus-user-file"])
def test_audit_refuses_a_folder_holding_user_files_and_leaves_it_untouched(tmp_path, tiny_tokenizer_dir, capsys,
                                                                          earlier_audit):
    out = tmp_path / "audit"
    if earlier_audit:  # an earlier audit the user then added notes to: the notes are not the audit's to delete
        run_audit(FIXTURE, out, tokenizer=str(tiny_tokenizer_dir))
    out.mkdir(exist_ok=True)
    (out / "README.md").write_text("my own notes\n")
    (out / "notes").mkdir()
    (out / "notes" / "plan.txt").write_text("do not lose me\n")
    before = tree(out)
    code = main(["audit", str(FIXTURE), "--out", str(out), "--tokenizer", str(tiny_tokenizer_dir)])
    said = capsys.readouterr().err
    assert code == 2 and "Traceback" not in said
    assert says(said, f"{out}: exists and is not an earlier tunesmith audit")
    assert tree(out) == before
    assert not (tmp_path / ".audit.tunesmith-audit").exists()  # no work folder, and no side folder either


def test_audit_refuses_an_input_inside_its_output_folder_even_through_a_symlink(tmp_path, tiny_tokenizer_dir):
    out = tmp_path / "audit"
    out.mkdir()
    source = out / "data.jsonl"
    shutil.copy(FIXTURE, source)
    (tmp_path / "link.jsonl").symlink_to(source)
    for given in (source, tmp_path / "link.jsonl"):
        with pytest.raises(UsageError, match="the input lies inside the audit folder"):
            run_audit(given, out, tokenizer=str(tiny_tokenizer_dir))
    assert main(["audit", str(out), "--out", str(out), "--tokenizer", str(tiny_tokenizer_dir)]) == 2  # DIR itself
    assert source.read_bytes() == FIXTURE.read_bytes() and sorted(os.listdir(out)) == ["data.jsonl"]


def test_audit_refuses_an_output_that_is_a_file_or_a_symlink(tmp_path, tiny_tokenizer_dir):
    (tmp_path / "file").write_text("mine\n")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for out, reason in (("file", "is not a folder"), ("link", "is a symlink")):
        with pytest.raises(OutputExistsError, match=reason):
            run_audit(FIXTURE, tmp_path / out, tokenizer=str(tiny_tokenizer_dir))
    assert (tmp_path / "file").read_text() == "mine\n" and os.listdir(tmp_path / "real") == []


def test_a_second_audit_replaces_the_first_whole_and_leaves_nothing_behind(tmp_path, tiny_tokenizer_dir):
    out = tmp_path / "audit"
    out.mkdir()  # an empty folder may be used
    first = read_card(run_audit(FIXTURE, out, tokenizer=str(tiny_tokenizer_dir)))
    marker = json.loads((out / MARKER).read_text())
    assert set(marker["files"]) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {MARKER}
    (out / "rejected" / "validate.jsonl").unlink()  # a file of the audit gone missing does not make it foreign
    second = read_card(run_audit(FIXTURE, out, tokenizer=str(tiny_tokenizer_dir)))
    assert second.created_at > first.created_at and second.fingerprint == first.fingerprint
    assert (out / "rejected" / "validate.jsonl").is_file() and split_problems(second, out) == []
    assert sorted(os.listdir(tmp_path)) == ["audit"]  # no work folder, no old audit, no side folder


def test_an_audit_killed_while_replacing_the_earlier_one_gets_it_back(tmp_path, tiny_tokenizer_dir):
    """A kill between moving the earlier audit aside and renaming the new one in: the next run restores it first."""
    out = tmp_path / "audit"
    first = read_card(run_audit(FIXTURE, out, tokenizer=str(tiny_tokenizer_dir)))
    (tmp_path / ".audit.tunesmith-audit").mkdir()  # the killed audit's side folder, still holding the earlier one
    out.rename(tmp_path / ".audit.tunesmith-audit" / "old-killed")
    with pytest.raises(UsageError):  # this run fails (a missing input), but after putting the earlier audit back
        run_audit(tmp_path / "missing.jsonl", out, tokenizer=str(tiny_tokenizer_dir))
    assert read_card(out).created_at == first.created_at
    assert not (tmp_path / ".audit.tunesmith-audit").exists()


def test_a_refused_or_failed_audit_leaves_no_side_folder(tmp_path, tiny_tokenizer_dir, monkeypatch, capsys):
    """Refusals come before the side folder is made; a failure after it removes it (it holds only the lock)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    (tmp_path / "file").write_text("mine\n")
    runs = [["/nonexist.jsonl", "--out", "nx"], [str(FIXTURE), "--out", "mine"], [str(FIXTURE), "--out", "file"],
            [str(FIXTURE), "--out", "fails", "--tokenizer", str(tmp_path / "no-such-tokenizer")]]  # fails inside
    for args in runs:
        assert main(["audit", *args] + ([] if "--tokenizer" in args else ["--tokenizer", str(tiny_tokenizer_dir)])) == 2
        said = capsys.readouterr().err
        assert "Traceback" not in said, said
    assert sorted(os.listdir(tmp_path)) == ["file", "mine"]  # no .nx/.mine/.file/.fails.tunesmith-audit, no fails/


def test_the_side_folder_stays_while_its_lock_is_held_or_it_holds_more(tmp_path):
    side = tmp_path / ".audit.tunesmith-audit"
    with locks.folder_lock(side, "the audit"):  # another audit holds it (flock: any other open file conflicts)
        _remove_side_folder(side)
        assert os.listdir(side) == [".lock"]
    (side / "tmp-live").mkdir()
    _remove_side_folder(side)
    assert sorted(os.listdir(side)) == [".lock", "tmp-live"]
    (side / "tmp-live").rmdir()
    _remove_side_folder(side)
    assert not side.exists()


def test_a_waiting_locker_takes_the_new_lock_when_the_holder_removes_the_folder(tmp_path):
    """The audit removes its side folder under its lock; a waiter that had opened the old lock file must end up
    holding the one now at the path, so that it still excludes a third writer."""
    import threading

    side, holding, release = tmp_path / ".audit.tunesmith-audit", threading.Event(), threading.Event()

    def wait_then_hold():
        with locks.folder_lock(side, "the audit", wait=True, poll_seconds=0.01):
            holding.set()
            release.wait(10)

    with locks.folder_lock(side, "the audit"):
        waiter = threading.Thread(target=wait_then_hold)
        waiter.start()
        time.sleep(0.2)  # the waiter has opened the old lock file and is polling it
        (side / ".lock").unlink()
        side.rmdir()
    try:
        assert holding.wait(10)
        with pytest.raises(BusyError, match="being written by"):
            with locks.folder_lock(side, "the audit"):
                pass
    finally:
        release.set()
        waiter.join(10)


def test_audit_refuses_an_out_that_is_or_holds_the_current_folder(tmp_path, tiny_tokenizer_dir, monkeypatch, capsys):
    out = tmp_path / "audit"
    run_audit(FIXTURE, out, tokenizer=str(tiny_tokenizer_dir))
    before = tree(out)
    for here, given in ((out, "."), (out / "rejected", ".."), (out / "rejected", str(out))):
        monkeypatch.chdir(here)
        assert main(["audit", str(FIXTURE), "--out", given, "--tokenizer", str(tiny_tokenizer_dir)]) == 2
        said = capsys.readouterr().err
        assert "Traceback" not in said and says(said, "is the current folder or holds it")
        assert Path(os.getcwd()).is_dir()
    assert tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["audit"]


# ---- two curates, stale work folders ----

# Runs the CLI; with GATE_INSIDE set, the curate holds the dataset lock until the file GATE_GO appears
GATED_CLI = """
import os, sys, time
from pathlib import Path
import tunesmith.curate.pipeline as pipeline
from tunesmith.cli import main

stream_sources = pipeline.stream_sources

def gated(config, records):  # a generator: it waits when the stages first ask for rows, under the lock
    Path(os.environ["GATE_INSIDE"]).touch()
    deadline = time.monotonic() + 60
    while not Path(os.environ["GATE_GO"]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield from stream_sources(config, records)

if os.environ.get("GATE_INSIDE"):
    pipeline.stream_sources = gated
sys.exit(main(sys.argv[1:]))
"""


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_two_concurrent_curates_of_one_config_both_end_with_the_one_version(tmp_path):
    config, inside, go = curate_yaml(tmp_path), tmp_path / "inside", tmp_path / "go"
    env = {**os.environ, "COLUMNS": "300", "GATE_INSIDE": str(inside), "GATE_GO": str(go)}
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    def start(log: Path, env: dict) -> subprocess.Popen:
        with open(log, "w") as handle:
            return subprocess.Popen([sys.executable, "-c", GATED_CLI, "curate", str(config)], cwd=ROOT, env=env,
                                    stdout=handle, stderr=subprocess.STDOUT)

    first = start(logs[0], env)
    try:
        wait_for(lambda: inside.exists() or first.poll() is not None, "the first curate to take the lock")
        second = start(logs[1], {k: v for k, v in env.items() if not k.startswith("GATE_")})
        try:
            wait_for(lambda: f"waiting for pid {first.pid}" in one_line(logs[1].read_text()) or
                     second.poll() is not None, "the second curate to wait for the first")
            go.touch()
            codes = first.wait(timeout=60), second.wait(timeout=60)
        finally:
            second.kill()
    finally:
        first.kill()
    said = [one_line(log.read_text()) for log in logs]
    assert codes == (0, 0), said
    assert f"waiting for pid {first.pid}" in said[1]
    printed = [re.findall(r"fingerprint ([0-9a-f]{16})", text) for text in said]
    assert printed[0] == printed[1] and len(printed[0]) == 1
    assert "unchanged: identical inputs and config" in said[1]
    dataset = tmp_path / "out" / "tiny"
    assert sorted(os.listdir(dataset)) == [".lock", "v1"]
    assert read_card(dataset / "v1").fingerprint.startswith(printed[0][0])


def test_work_folders_of_killed_curates_are_removed_by_the_next_one(tmp_path):
    dataset = tmp_path / "out" / "tiny"
    stale = dataset / ".tmp-killed1234"
    stale.mkdir(parents=True)
    (stale / "train.jsonl").write_text(FIXTURE.read_text() * 10)  # a full split copy a SIGKILL left behind
    (stale / "rejected").mkdir()
    (stale / "rejected" / "validate.jsonl").write_text("{}\n")
    result = curate(tmp_path)
    assert not stale.exists() and sorted(os.listdir(dataset)) == [".lock", result.directory.name]


def test_existing_version_skips_work_failed_and_symlinked_folders(tmp_path):
    result = curate(tmp_path)
    dataset, fp = result.directory.parent, result.card.fingerprint
    elsewhere = tmp_path / "elsewhere"
    result.directory.rename(elsewhere)
    for name in (".tmp-left", "failed-0123456789ab"):  # same card, but never a version
        shutil.copytree(elsewhere, dataset / name)
    (dataset / "v1").symlink_to(elsewhere)  # a version folder that lives outside this dataset folder
    assert existing_version(dataset, fp) is None
    again = curate(tmp_path)
    assert not again.reused and not again.directory.is_symlink() and again.directory.name == "v2"


# ---- a damaged version is repaired, or refused ----

@pytest.mark.parametrize("split_format, files", [
    ("parquet", {name: f"{name}-00000-of-00001.parquet" for name in ("train", "validation", "test")}),
    ("jsonl", {name: f"{name}.jsonl" for name in ("train", "validation", "test")}),
])
def test_a_damaged_version_is_repaired_from_the_fresh_build(tmp_path, capsys, split_format, files):
    version = curate(tmp_path, split_format=split_format).directory
    card = read_card(version)
    assert {name: [p.file for p in split.parts()] for name, split in card.splits.items()} == {
        name: [file] for name, file in files.items()}
    originals = {name: (version / file).read_bytes() for name, file in files.items()}
    (version / files["train"]).unlink()
    (version / files["validation"]).write_text('{"rewritten": true}\n')
    outside = tmp_path / f"outside-{files['test']}"  # same bytes, but a symlink out of the version folder
    (version / files["test"]).rename(outside)
    (version / files["test"]).symlink_to(outside)
    assert main(["curate", str(curate_yaml(tmp_path, split_format=split_format))]) == 0
    said = capsys.readouterr().err
    assert says(said, f"WARNING {version} was damaged; repaired from this build")
    assert says(said, f"{files['train']} (missing)") and says(said, f"{files['validation']} (changed: sha256 mismatch)")
    assert says(said, f"{files['test']} (not a regular file)")
    for name, file in files.items():
        path = version / file
        assert path.is_file() and not path.is_symlink() and path.read_bytes() == originals[name]
    assert outside.read_bytes() == originals["test"]  # the symlink was replaced, not the file it pointed to
    assert verify_card(version) == [] and main(["card", "validate", str(version)]) == 0
    assert sorted(p.name for p in version.parent.iterdir()) == [".lock", "v1"]


def test_a_card_edited_to_match_a_swapped_split_is_refused_not_reused(tmp_path, capsys):
    """A split's shard copied over another's, with the shard and split hashes updated to match: the card no longer
    gives its fingerprint."""
    version = curate(tmp_path).directory
    raw = json.loads((version / "card.json").read_text())
    shutil.copy(version / "test-00000-of-00001.parquet", version / "validation-00000-of-00001.parquet")
    shards = [{**raw["splits"]["test"]["shards"][0], "file": "validation-00000-of-00001.parquet"}]
    sha256 = shards_sha256([ShardRecord.model_validate(shard) for shard in shards])
    raw["splits"]["validation"] = {**raw["splits"]["test"], "shards": shards, "sha256": sha256}
    (version / "card.json").write_text(json.dumps(raw))
    before = tree(version)
    with pytest.raises(OutputExistsError, match="do not give its fingerprint"):
        curate(tmp_path)
    assert main(["curate", str(curate_yaml(tmp_path))]) == 2
    said = capsys.readouterr().err
    assert "Traceback" not in said and says(said, "do not give its fingerprint (was the card edited?)")
    assert tree(version) == before and sorted(os.listdir(version.parent)) == [".lock", "v1"]


def test_a_card_with_edited_row_counts_is_refused_not_reused(tmp_path):
    version = curate(tmp_path).directory
    raw = json.loads((version / "card.json").read_text())
    raw["splits"]["train"]["rows"] = 99999  # not in the fingerprint, but checked against the rows just written
    (version / "card.json").write_text(json.dumps(raw))
    try:
        read_card(version)
    except ValueError:
        pytest.skip("the card schema itself now refuses the edited row count")
    with pytest.raises(OutputExistsError, match="records of split.*'train'.*differ"):
        curate(tmp_path)


def warnings_in(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_a_version_damaged_outside_its_splits_is_repaired_and_validates_again(tmp_path, caplog):
    """The review's repro: report.html and a rejected file deleted, README.md and the resolved config rewritten.
    The reuse puts each back byte for byte (rendered from the existing card), says so, and the card validates."""
    version = curate(tmp_path, report=True).directory
    names = ["report.html", "rejected/validate.jsonl", "README.md", "config.resolved.yaml", "card.json"]
    originals = {name: (version / name).read_bytes() for name in names}
    (version / "report.html").unlink()
    (version / "rejected" / "validate.jsonl").unlink()
    (version / "README.md").write_text("junk\n")
    (version / "config.resolved.yaml").write_text("junk: 1\n")
    assert any("rejected file is missing" in p for p in verify_card(version))
    caplog.set_level(logging.INFO)
    again = curate(tmp_path, report=True)
    assert again.reused and again.directory == version
    said = warnings_in(caplog)
    assert f"{version} was damaged; repaired from this build" in said
    for damage in ("report.html (missing)", "rejected/validate.jsonl (missing)",
                   "README.md (changed: sha256 mismatch)", "config.resolved.yaml (changed: sha256 mismatch)"):
        assert damage in said
    assert {name: (version / name).read_bytes() for name in names} == originals  # the card itself untouched
    assert verify_card(version) == [] and main(["card", "validate", str(version)]) == 0


def test_a_user_file_inside_a_version_is_left_alone_and_named(tmp_path, caplog):
    version = curate(tmp_path).directory
    (version / "NOTES.md").write_text("my review\n")
    (version / "rejected" / "checked.txt").write_text("looked at these\n")
    before = tree(version)
    caplog.set_level(logging.INFO)
    assert curate(tmp_path).reused
    assert tree(version) == before
    said = warnings_in(caplog)
    assert "holds files curate did not write, left as they are: NOTES.md, rejected/checked.txt" in said
    assert "damaged" not in said


def test_a_repair_never_writes_through_a_symlinked_rejected_folder(tmp_path):
    version = curate(tmp_path).directory
    elsewhere = tmp_path / "elsewhere"
    (version / "rejected").rename(elsewhere)
    (version / "rejected").symlink_to(elsewhere)
    (elsewhere / "validate.jsonl").unlink()
    with pytest.raises(OutputExistsError, match="rejected: is not a folder"):
        curate(tmp_path)
    assert not (elsewhere / "validate.jsonl").exists()


# ---- a read-only dataset folder ----

@pytest.fixture
def make_read_only(monkeypatch, tmp_path):
    """Call it, and lock files below tmp_path/out can no longer be opened for writing, as on a read-only file
    system (tests run as root, where chmod does not stop writes)."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if Path(path).name == ".lock" and tmp_path / "out" in Path(path).parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    return lambda: monkeypatch.setattr(locks.os, "open", refusing_open)


def test_an_intact_version_is_reused_unlocked_when_the_folder_is_read_only(tmp_path, make_read_only, caplog):
    first = curate(tmp_path)
    dataset, before = first.directory.parent, tree(first.directory.parent)
    make_read_only()
    caplog.set_level(logging.INFO)
    again = curate(tmp_path)
    assert again.reused and again.directory == first.directory and again.card == first.card
    assert tree(dataset) == before  # nothing written, no work folder left
    assert any("not locked, since the folder is read-only" in r.getMessage() for r in caplog.records)


def test_a_damaged_version_in_a_read_only_folder_is_refused_with_the_reason(tmp_path, make_read_only):
    version = curate(tmp_path).directory
    (version / "train-00000-of-00001.parquet").write_text("{}\n")
    before = tree(version.parent)
    make_read_only()
    with pytest.raises(EnvironmentProblem, match=r"damaged \(train-00000-of-00001\.parquet \(changed: sha256 "
                                                 r"mismatch\)\), and it "
                                                 r"cannot be repaired: .*Read-only file system"):
        curate(tmp_path)
    assert tree(version.parent) == before


def test_no_version_and_a_read_only_folder_is_one_line_naming_the_lock(tmp_path, make_read_only, capsys):
    make_read_only()
    assert main(["curate", str(curate_yaml(tmp_path))]) == 2
    said = capsys.readouterr().err
    assert "Traceback" not in said and says(said, f"{tmp_path / 'out' / 'tiny' / '.lock'}: Read-only file system")
    assert os.listdir(tmp_path / "out" / "tiny") == []
