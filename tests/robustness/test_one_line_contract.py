"""The one-line contract: a user or environment failure ends with exit 2 and one line naming the path and what to
do, never a traceback, and leaves nothing half-written; an unexpected exception (a bug) keeps its traceback, exit 1.

Environment failures are staged without root tricks: a read-only folder is chmod 0555 (or, as root, whom chmod does
not stop, `os.mkdir`/`os.open`/`open` raise EROFS below it); a full disk is a write() that raises ENOSPC naming no
file, as the kernel's does; "below a regular file" is real. Run: .venv/bin/python -m pytest -q
tests/robustness/test_one_line_contract.py
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from tunesmith import errors, models
from tunesmith.artifacts import read_card
from tunesmith.card_integrity import split_rows
from tunesmith.cli import main
from tunesmith.curate import card as card_module

ROW = {"messages": [{"role": "user", "content": "What is the capital of France?"},
                    {"role": "assistant", "content": "Paris is the capital of France."}]}
EMBEDDED = "smollm2-135m-instruct"


def run_cli(argv: list[str], capsys, monkeypatch) -> tuple[int, list[str], str]:
    """Run `tunesmith -q` in-process on a wide console; the code, the non-blank lines and the whole output."""
    monkeypatch.setenv("COLUMNS", "2000")
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, [line.strip() for line in (out + err).splitlines() if line.strip()], out + err


def assert_one_line(code: int, lines: list[str], text: str, *pieces: str) -> str:
    assert code == 2, text
    assert "Traceback" not in text
    assert len(lines) == 1 and "ERROR" in lines[0], lines
    for piece in pieces:
        assert piece in lines[0], lines[0]
    return lines[0]


def rows_file(folder: Path, n: int = 6, extra: dict | None = None) -> Path:
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"question number {i}"},
                                                     {"role": "assistant", "content": f"answer number {i}"}],
                                        **(extra or {})}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def curate_config(folder: Path, output_dir: str, **settings) -> Path:
    config = {"name": "ds", "output_dir": output_dir, "report": False, "sources": [{"path": str(rows_file(folder))}],
              "stages": [{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "split"}], **settings}
    path = folder / "curate.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


WORK_FOLDERS = (".tmp-", "tmp-", "old-", ".smollm2")  # curate's, audit's and the model conversion's


def leftovers(folder: Path) -> list[str]:
    """What a failed command left below `folder`: any file but the `.lock` files that name a folder's last
    writer (and stay, by design), and any work folder, even an empty one."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if (p.is_file() and p.name != ".lock") or p.name.startswith(WORK_FOLDERS))


def make_read_only(monkeypatch, folder: Path) -> None:
    """Nothing can be created below `folder`: chmod 0555, or (for root) EROFS from the calls that create files."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    root = str(folder)

    def below(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(root + os.sep)

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))

    real_mkdir, real_os_open, real_open = os.mkdir, os.open, builtins.open
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: refuse(p) if below(p) else real_mkdir(p, *a, **k))
    monkeypatch.setattr(os, "open", lambda p, flags, *a, **k: refuse(p) if below(p) and flags & (os.O_WRONLY | os.O_RDWR)
                        else real_os_open(p, flags, *a, **k))
    monkeypatch.setattr(builtins, "open", lambda p, mode="r", *a, **k: refuse(p) if below(p) and set(mode) & set("wax+")
                        else real_open(p, mode, *a, **k))


class FullDisk:
    """A file whose writes fail like a full disk's: ENOSPC and no file name (write() does not know it)."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, text):
        self.handle.write(text[: len(text) // 2])  # the part that fitted
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self.handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fill_the_disk_for_split_files(monkeypatch) -> None:
    real_open = builtins.open
    monkeypatch.setattr(card_module, "open", lambda p, mode="r", *a, **k: FullDisk(real_open(p, mode, *a, **k))
                        if "w" in mode else real_open(p, mode, *a, **k), raising=False)


# ---- curate and audit: a full disk, a read-only folder, a folder below a file -----------------------------------

def test_a_full_disk_while_curate_writes_the_splits_names_the_dataset_folder_and_leaves_nothing(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    fill_the_disk_for_split_files(monkeypatch)  # the JSONL writer's open: the test names split_format jsonl
    code, lines, text = run_cli(["curate", str(curate_config(tmp_path, str(out), split_format="jsonl"))], capsys,
                                monkeypatch)
    assert_one_line(code, lines, text, f"{out / 'ds'}: No space left on device", "free some space")
    assert leftovers(out) == []  # no version, no .tmp-* work folder with half a split file


def test_a_read_only_output_folder_stops_curate_with_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    make_read_only(monkeypatch, out)
    code, lines, text = run_cli(["curate", str(curate_config(tmp_path, str(out)))], capsys, monkeypatch)
    line = assert_one_line(code, lines, text, str(out))
    assert "Read-only file system" in line or "Permission denied" in line
    assert leftovers(out) == []


def audit_argv(tmp_path: Path, out: Path, tokenizer: Path) -> list[str]:
    (tmp_path / "in").mkdir()
    return ["audit", str(rows_file(tmp_path / "in")), "--out", str(out), "--tokenizer", str(tokenizer)]


def test_a_full_disk_during_audit_names_the_out_folder_and_leaves_no_audit(
        tmp_path, tiny_tokenizer_dir, capsys, monkeypatch):
    out = tmp_path / "o" / "audit"
    fill_the_disk_for_split_files(monkeypatch)
    code, lines, text = run_cli(audit_argv(tmp_path, out, tiny_tokenizer_dir), capsys, monkeypatch)
    assert_one_line(code, lines, text, "No space left on device", str(out))
    assert leftovers(tmp_path / "o") == []  # no audit folder, no work folder beside it


def test_a_read_only_folder_stops_audit_with_one_line(tmp_path, tiny_tokenizer_dir, capsys, monkeypatch):
    parent = tmp_path / "o"
    make_read_only(monkeypatch, parent)
    code, lines, text = run_cli(audit_argv(tmp_path, parent / "audit", tiny_tokenizer_dir), capsys, monkeypatch)
    assert_one_line(code, lines, text, str(parent))
    assert leftovers(parent) == []


@pytest.mark.parametrize(("output_dir", "says"), [
    ("afile/sub", "Not a directory"),  # a folder on the way is a regular file
    ("afile", "Not a directory"),  # output_dir itself is a file
    (".", "File exists"),  # <output_dir>/<name> is a file
], ids=["parent-is-a-file", "output-dir-is-a-file", "dataset-folder-is-a-file"])
def test_an_output_folder_below_a_regular_file_is_one_line(tmp_path, output_dir, says, capsys, monkeypatch):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "ds").write_text("not a folder either")
    config = curate_config(tmp_path, str(tmp_path / output_dir))
    code, lines, text = run_cli(["curate", str(config)], capsys, monkeypatch)
    assert_one_line(code, lines, text, str(tmp_path), says)
    assert (tmp_path / "afile").read_text() == "not a folder" and (tmp_path / "ds").read_text() == "not a folder either"


def test_an_audit_folder_below_a_regular_file_is_one_line(tmp_path, tiny_tokenizer_dir, capsys, monkeypatch):
    (tmp_path / "afile").write_text("not a folder")
    code, lines, text = run_cli(audit_argv(tmp_path, tmp_path / "afile" / "x", tiny_tokenizer_dir), capsys, monkeypatch)
    assert_one_line(code, lines, text, str(tmp_path / "afile"), "Not a directory")


# ---- TUNESMITH_HOME and the converted-model cache -----------------------------------------------------------------

@pytest.fixture
def fake_gguf(tmp_path, monkeypatch, tiny_tokenizer_dir):
    """The embedded model's conversion, with the tiny tokenizer standing in for the GGUF one (seconds, not 45)."""
    import transformers

    gguf = tmp_path / "gguf" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "embedded_gguf", lambda name: gguf)
    real = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda location, **kw: real(tiny_tokenizer_dir) if "gguf_file" in kw else real(location, **kw))
    home = tmp_path / "home"
    monkeypatch.setenv("TUNESMITH_HOME", str(home))
    return home


def token_stats_config(folder: Path) -> Path:
    return curate_config(folder, str(folder / "out"), tokenizer=EMBEDDED,
                         stages=[{"stage": "validate"}, {"stage": "token_stats", "max_seq_len": 64}])


def test_the_converted_model_cache_is_readable_by_the_group_like_a_dataset_version(fake_gguf, monkeypatch):
    previous = os.umask(0o077)  # a strict umask: files would come out 0600 and the folder 0700
    try:
        folder = models.resolve_model_dir(EMBEDDED, with_weights=False)
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == dict.fromkeys(
        [p.name for p in folder.iterdir()], 0o644)
    recorded = json.loads((folder / "tokenizer.complete").read_text())["files"]
    assert recorded["tokenizer.json"] == (folder / "tokenizer.json").stat().st_size  # sizes, checked on every use


@pytest.mark.parametrize("raised", [
    OSError(errno.ENOSPC, "No space left on device"),
    Exception("No space left on device (os error 28)"),  # what the Rust tokenizers writer raises on a real full disk
], ids=["python-oserror", "rust-exception"])
def test_a_full_tunesmith_home_during_conversion_is_one_line_and_leaves_no_half_cache(
        fake_gguf, tmp_path, capsys, monkeypatch, raised):
    from transformers import AutoTokenizer

    def disk_fills(self, folder, *args, **kwargs):
        (Path(folder) / "tokenizer.json").write_text('{"truncated": ')
        raise raised

    monkeypatch.setattr(type(AutoTokenizer.from_pretrained(tmp_path / "gguf", gguf_file="x")), "save_pretrained",
                        disk_fills)
    code, lines, text = run_cli(["curate", str(token_stats_config(tmp_path))], capsys, monkeypatch)
    assert_one_line(code, lines, text, str(fake_gguf / "models" / EMBEDDED), "No space left on device",
                    "TUNESMITH_HOME")
    assert leftovers(fake_gguf) == []  # neither the target nor the temporary conversion folder


@pytest.mark.parametrize("broken", ["read-only", "below-a-file"])
def test_an_unwritable_tunesmith_home_is_one_line(fake_gguf, tmp_path, broken, capsys, monkeypatch):
    if broken == "read-only":
        make_read_only(monkeypatch, fake_gguf)
    else:
        fake_gguf.write_text("a file, not a folder")
    code, lines, text = run_cli(["curate", str(token_stats_config(tmp_path))], capsys, monkeypatch)
    assert_one_line(code, lines, text, str(fake_gguf), "TUNESMITH_HOME")


def converted_cache(fake_gguf) -> Path:
    return models.resolve_model_dir(EMBEDDED, with_weights=False)


@pytest.mark.parametrize("damage", ["truncated", "missing", "missing-old-marker"])
def test_a_damaged_model_cache_is_detected_and_says_to_delete_it(fake_gguf, tmp_path, damage, capsys, monkeypatch):
    """A truncated or deleted tokenizer.json is named, never reported as `install sentencepiece`."""
    folder = converted_cache(fake_gguf)
    tokenizer_json = folder / "tokenizer.json"
    if damage == "truncated":
        tokenizer_json.write_bytes(tokenizer_json.read_bytes()[:100])
    else:
        tokenizer_json.unlink()
    if damage == "missing-old-marker":  # a cache converted before the markers recorded sizes
        (folder / "tokenizer.complete").write_text("")
    code, lines, text = run_cli(["curate", str(token_stats_config(tmp_path))], capsys, monkeypatch)
    line = assert_one_line(code, lines, text, f"{folder}: the converted model cache is damaged", "tokenizer.json",
                           "delete this folder")
    assert "sentencepiece" not in line
    shutil.rmtree(folder)  # what the line says to do is enough: the next run converts it anew
    assert main(["-q", "curate", str(token_stats_config(tmp_path))]) == 0


def test_a_truncated_weights_file_is_one_model_error(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(models.ModelError, match=r"the weights cannot be read .* damaged") as caught:
        models.load_causal_lm(folder)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_folder_without_tokenizer_json_is_named_not_sent_to_sentencepiece(tmp_path, tiny_tokenizer_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_tokenizer_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(models.ModelError, match="no tokenizer.json") as caught:
        models.load_tokenizer(str(folder))
    assert "sentencepiece" not in str(caught.value).replace("sentencepiece *.model", "")


# ---- inputs: a folder where a file belongs, a lone surrogate in a kept column ------------------------------------

@pytest.mark.parametrize("command", ["curate-source", "audit", "curate-config", "train-config", "eval-config",
                                     "score-predictions", "score-references"])
def test_a_folder_given_where_a_file_is_expected_is_one_line(tmp_path, command, capsys, monkeypatch):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (tmp_path / "p.txt").write_text("an answer\n")
    source_config = tmp_path / "source.yaml"
    source_config.write_text(json.dumps({"name": "ds", "output_dir": str(tmp_path / "out"),
                                         "sources": [{"path": str(folder)}], "stages": [{"stage": "validate"}]}))
    argv = {"curate-source": ["curate", str(source_config)], "audit": ["audit", str(folder), "--out", str(tmp_path / "o")],
            "curate-config": ["curate", str(folder)], "train-config": ["train", str(folder)],
            "eval-config": ["eval", str(folder)],
            "score-predictions": ["score", "--predictions", str(folder), "--references", str(tmp_path / "p.txt")],
            "score-references": ["score", "--predictions", str(tmp_path / "p.txt"), "--references", str(folder)]}
    code, lines, text = run_cli(argv[command], capsys, monkeypatch)
    line = assert_one_line(code, lines, text, str(folder))
    assert "folder" in line or "directory" in line.lower()


def surrogate_source(folder: Path) -> Path:
    """Two rows; the first one's kept `topic` holds a lone surrogate (valid JSON, not encodable as UTF-8)."""
    path = folder / "topics.jsonl"
    rows = [json.dumps({**ROW, "topic": "geo"}).replace('"geo"', '"ge\\ud800o"'), json.dumps({**ROW, "topic": "ok"})]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_lone_surrogate_in_a_kept_column_rejects_that_row_only(tmp_path, capsys, monkeypatch):
    source = surrogate_source(tmp_path)
    config = tmp_path / "curate.yaml"
    config.write_text(json.dumps({"name": "ds", "output_dir": str(tmp_path / "out"), "report": False,
                                  "sources": [{"path": str(source), "keep_columns": ["topic"]}],
                                  "stages": [{"stage": "validate"}, {"stage": "split"}]}))
    monkeypatch.setenv("COLUMNS", "2000")
    assert main(["-q", "curate", str(config)]) == 0
    assert "Traceback" not in "".join(capsys.readouterr())
    version = tmp_path / "out" / "ds" / "v1"
    [rejected] = [json.loads(line) for line in (version / "rejected" / "validate.jsonl").read_text().splitlines()]
    assert (rejected["reason"], rejected["where"]) == ("invalid_utf8", f"{source}:1")
    assert "'topic'" in rejected["detail"]
    card = read_card(version)  # the split is Parquet by default: the kept row reached pyarrow as valid UTF-8
    kept = [row for name, split in card.splits.items() for row in split_rows(version, split, name)]
    assert [row["meta"] for row in kept] == [{"topic": "ok"}]


def test_a_lone_surrogate_in_a_kept_column_with_on_error_fail_names_file_line_and_column(tmp_path, capsys, monkeypatch):
    source = surrogate_source(tmp_path)
    config = tmp_path / "curate.yaml"
    config.write_text(json.dumps({"name": "ds", "output_dir": str(tmp_path / "out"),
                                  "sources": [{"path": str(source), "keep_columns": ["topic"]}],
                                  "stages": [{"stage": "validate", "on_error": "fail"}, {"stage": "split"}]}))
    code, lines, text = run_cli(["curate", str(config)], capsys, monkeypatch)
    assert_one_line(code, lines, text, f"{source}:1", "'topic'", "surrogate")


# ---- real bugs stay visible; each user error is one line -------------------------------------------------------

def test_an_unexpected_exception_keeps_its_traceback_and_asks_for_a_report(tmp_path, capsys, monkeypatch):
    import tunesmith.curate.pipeline as pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("an invariant broke")

    monkeypatch.setattr(pipeline, "run_curate", broken)
    monkeypatch.setenv("COLUMNS", "2000")
    assert main(["-q", "curate", str(curate_config(tmp_path, str(tmp_path / "out")))]) == 1
    said = "".join(capsys.readouterr())
    assert "Traceback (most recent call last)" in said and "RuntimeError: an invariant broke" in said
    assert "this is a bug in tunesmith" in said


@pytest.mark.parametrize("error", [
    errors.UsageError("rows.jsonl:3: field messages: not a list"),
    errors.OutputExistsError("out/ds/v2 already holds a different version; choose another `version`"),
    errors.MissingInputError("cards/v1/card.json: no dataset card here"),
    errors.BusyError("out/ds is being written by pid 12 on host since 2026-12-01 10:00:00 UTC"),
    errors.EnvironmentProblem("/models/x: cannot write the converted model (No space left on device)"),
    OSError(errno.ENOSPC, "No space left on device", "/data/out/ds/train.jsonl"),
    OSError(errno.EACCES, "Permission denied", "/data/out"),
], ids=lambda e: type(e).__name__ + (f"-{errno.errorcode[e.errno]}" if type(e) is OSError else ""))
def test_each_user_or_environment_error_is_one_line_exit_2(tmp_path, error, capsys, monkeypatch):
    import tunesmith.curate.pipeline as pipeline

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(pipeline, "run_curate", fails)
    code, lines, text = run_cli(["curate", str(curate_config(tmp_path, str(tmp_path / "out")))], capsys, monkeypatch)
    assert_one_line(code, lines, text, error.filename if isinstance(error.args[0], int) else str(error))


def test_report_compare_refuses_eval_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "compare.html"
    code, lines, text = run_cli(["report", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--eval", "e1",
                                 "--out", str(out)], capsys, monkeypatch)
    assert_one_line(code, lines, text, "--eval e1: `report compare`", "drop --eval")
    assert not out.exists()


# ---- SIGTERM: one line and 130 while a command works; ignored once its result is decided ------------------------

LATE_SIGTERM = """
import os, signal, sys
from tunesmith import cli

def command(args):
    if os.environ.get("TERM_DURING"):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered here, while the command works
    print("the work is complete", flush=True)
    return 0

cli._ls = command
sys.argv = ["tunesmith", "-q", "ls", "stages"]
code = cli.main()  # the entry point: argv is None
os.kill(os.getpid(), signal.SIGTERM)  # a late SIGTERM, as the process exits
print("exit", code, flush=True)
sys.exit(code)
"""


@pytest.mark.parametrize("during", [False, True], ids=["after-the-result", "during-the-command"])
def test_a_sigterm_is_ignored_once_the_result_is_decided_and_interrupts_before(during):
    """A real process: before the fix a SIGTERM after main() restored the default handler killed it with 143."""
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "2000", **({"TERM_DURING": "1"} if during else {})}
    done = subprocess.run([sys.executable, "-c", LATE_SIGTERM], capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(__file__).parents[2])
    assert "Traceback" not in done.stderr, done.stderr
    if during:
        assert done.returncode == 130 and done.stdout.split() == ["exit", "130"], (done.stdout, done.stderr)
        assert "interrupted; nothing was written" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["the work is complete", "exit 0"]


def test_in_process_callers_get_their_sigterm_handler_back_and_a_sigterm_while_parsing_is_one_line(
        capsys, monkeypatch):
    import signal

    from tunesmith import cli

    mine = lambda signum, frame: None  # noqa: E731
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        real_parse = cli.parse_arguments

        def terminated_while_parsing(argv):
            os.kill(os.getpid(), signal.SIGTERM)
            return real_parse(argv)

        monkeypatch.setattr(cli, "parse_arguments", terminated_while_parsing)
        code, lines, text = run_cli(["ls", "stages"], capsys, monkeypatch)
        assert code == 130 and lines == [lines[0]] and "interrupted; nothing was written" in lines[0], text
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
