"""A card must tell the truth about its files: the fingerprint is recomputed, split and rejected files are
re-hashed and re-counted inside the card folder, stage counts must add up, and special files never hang a read.

Run: .venv/bin/python -m pytest tests/security/test_card_integrity.py -q
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.train.conftest import FIXTURE
from tunesmith import artifact_io
from tunesmith.artifact_io import ArtifactError
from tunesmith.artifacts import (
    CardError,
    RunManifest,
    ShardRecord,
    SplitRecord,
    card_fingerprint,
    open_card,
    read_card,
    write_run,
)
from tunesmith.card_integrity import is_parquet, shards_sha256
from tunesmith.cli import main
from tunesmith.curate.card import fingerprint
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.diff import diff_cards, verify_card
from tunesmith.curate.pipeline import run_curate
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.config import EvalConfig
from tunesmith.evaluate.runner import run_eval
from tunesmith.provenance import code_record
from tunesmith.split_files import iter_parquet_records, open_writer, parquet_row_count, write_table


def curate_into(folder, split_format="parquet"):
    config = CurateConfig(name="tiny", output_dir=str(folder), sources=[{"path": str(FIXTURE)}],
                          stages=[{"stage": "validate"}, {"stage": "exact_dedup"},
                                  {"stage": "split", "ratios": {"train": 0.7, "test": 0.3}}], report=False,
                          split_format=split_format)
    return run_curate(config)


# the tests that read rows or count them run on both formats (their code differs); the rest on the default
BOTH_FORMATS = pytest.mark.parametrize("version", ["parquet", "jsonl"], indirect=True)


@pytest.fixture
def version(tmp_path, request):
    """A curated version (train and test splits, some rejected rows) that each test may damage: Parquet shards
    (one per split here) unless the test asks for jsonl."""
    result = curate_into(tmp_path / "data", getattr(request, "param", "parquet"))
    assert result.card.stage("validate").rows_rejected > 0  # so rejected/validate.jsonl exists
    return result.directory


def split_file(version, name):
    """The one file of split `name` (`<name>-00000-of-00001.parquet`, or `<name>.jsonl`)."""
    [part] = read_card(version).splits[name].parts()
    return version / part.file


def rows_in(path):
    return parquet_row_count(path) if is_parquet(path.name) else lines_of(path)


def record_file(data, name, path):
    """Edit card data so split `name` records its one file `path` as it now is (hash and rows), shards included:
    what a forger who knows the format would do."""
    split, rows = data["splits"][name], rows_in(path)
    if split.get("shards"):
        split["shards"] = [{"file": path.name, "rows": rows, "sha256": sha(path)}]
        split.update(rows=rows, sha256=shards_sha256([ShardRecord(**shard) for shard in split["shards"]]))
    else:
        split.update(file=path.name, rows=rows, sha256=sha(path))


def edit(version, change):
    data = json.loads((version / "card.json").read_text())
    change(data)
    (version / "card.json").write_text(json.dumps(data))


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lines_of(path):
    return len(path.read_text().splitlines())


def refuse(version, *pieces):
    """verify_card, open_card and `card validate` all refuse the card, and each names every piece."""
    problems = "\n".join(verify_card(version))
    with pytest.raises(CardError) as refused:
        open_card(version)
    assert main(["card", "validate", str(version)]) == 2
    for piece in pieces:
        assert piece in problems and piece in str(refused.value), (piece, problems)
    return problems


def test_the_fingerprint_is_computable_from_card_json_alone(version):
    """The ground floor's card_fingerprint(card.config, splits) equals what curate wrote (curate's own function)."""
    card = read_card(version)
    assert card_fingerprint(card.config, card.splits) == card.fingerprint
    assert fingerprint(CurateConfig.model_validate(card.config), card.splits) == card.fingerprint
    assert verify_card(version) == []


@BOTH_FORMATS
def test_a_split_copied_over_another_with_its_hash_and_rows_updated_is_refused_by_the_fingerprint(version):
    """The attack of issue 10 item 7: test's file := train's, card.json's sha256 and rows (shard and split records)
    edited to match."""
    test = split_file(version, "test")
    shutil.copyfile(split_file(version, "train"), test)
    edit(version, lambda data: record_file(data, "test", test))
    problems = refuse(version, "field fingerprint", "card.json")
    assert "sha256 mismatch" not in problems  # the hashes match; only the fingerprint can tell
    assert "not the hash of its shards' hashes" not in problems


def test_a_damaged_card_is_named_by_card_diff_instead_of_identical_fingerprints(version, capsys):
    """`card diff` verifies both cards and says which one is damaged; it never prints 'identical fingerprints'
    next to removed rows."""
    copy = version.parent / "copy"
    shutil.copytree(version, copy)
    test = split_file(copy, "test")
    rewrite_shard(test, lambda records: records[1:])  # one row removed
    edit(copy, lambda d: record_file(d, "test", test))
    with pytest.raises(CardError, match=r"card B \(.*copy\) is damaged"):
        diff_cards(version, copy)
    capsys.readouterr()
    assert main(["card", "diff", str(version), str(copy)]) == 2
    out, err = capsys.readouterr()
    assert "identical fingerprints" not in out + err and "card B" in out + err
    assert main(["card", "diff", str(version), str(version)]) == 0
    assert "identical fingerprints" in capsys.readouterr().out


@BOTH_FORMATS
def test_row_counts_edited_to_99999_fail_naming_the_file_the_field_and_the_real_count(version):
    train = split_file(version, "train")
    real = rows_in(train)

    def edited(data):  # the split's and its shard's count alike, so the shard list still adds up
        data["splits"]["train"]["rows"] = 99999
        for shard in data["splits"]["train"].get("shards") or []:
            shard["rows"] = 99999

    edit(version, edited)
    problems = refuse(version, f"{train}: the card records 99999 rows (field splits.train.rows), "
                               f"the file has {real}")
    assert "splits record" in problems  # and the stages no longer add up to the splits


def test_card_show_of_a_damaged_card_shows_it_but_says_what_is_wrong_and_exits_2(version, capsys):
    """`card show` prints what the card claims, and then every problem `card validate` finds, so a damaged
    version never reads as a sound one (exit 2); a sound one still shows with exit 0."""
    assert main(["card", "show", str(version)]) == 0
    capsys.readouterr()
    edit(version, lambda d: d["splits"]["train"].update(rows=99999))
    assert main(["card", "show", str(version)]) == 2
    out, err = capsys.readouterr()
    said = " ".join((out + err).split())
    assert "train: 99999 rows" in said and "field splits.train.rows" in said


def test_stage_counts_that_do_not_chain_from_the_sources_are_refused(version):
    def inflate(data):
        data["stages"][1].update(rows_in=data["stages"][1]["rows_in"] + 5, rows_out=data["stages"][1]["rows_out"] + 5)

    edit(version, inflate)
    refuse(version, "field stages.1.rows_in", "field stages.2.rows_in", "(stages.0.rows_out)")


def test_the_rejected_rows_must_be_what_the_stages_record(version):
    rejected = version / "rejected" / "validate.jsonl"
    rejected.write_text(rejected.read_text().split("\n", 1)[1])  # one rejected row lost
    assert any("rejected file has" in p for p in verify_card(version))
    rejected.unlink()  # deleting rejected/ is flagged by validate, but train and eval may still use the data
    assert any("rejected file is missing" in p for p in verify_card(version))
    assert open_card(version).rows


def rewrite_shard(path, change):
    """Rewrite a split file with `change(records)`: Parquet records (a null column is an absent key) or JSONL rows."""
    if is_parquet(path.name):
        records = change(list(iter_parquet_records(path)))
        path.unlink()
        writer = open_writer(path)
        write_table(writer, records)
        writer.close()
    else:
        rows = change([json.loads(line) for line in path.read_text().splitlines()])
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@BOTH_FORMATS
def test_a_split_row_without_messages_is_refused_with_file_line_and_field(version):
    """Even with hashes, counts and fingerprint made consistent, a row must hold its messages."""
    train = split_file(version, "train")

    def drop_messages(records):
        records[1] = {**records[1], "messages": None} if is_parquet(train.name) else \
            {k: v for k, v in records[1].items() if k != "messages"}
        return records

    rewrite_shard(train, drop_messages)

    def consistent(data):
        record_file(data, "train", train)
        data["fingerprint"] = card_fingerprint(data["config"], {n: SplitRecord(**s) for n, s in data["splits"].items()})

    edit(version, consistent)
    where = f"{train} row 2" if is_parquet(train.name) else f"{train}:2"
    refuse(version, f"{where}: field messages: missing")


def test_a_split_symlinked_to_a_file_outside_the_card_folder_is_refused(version, tmp_path):
    """The outside file has the very bytes the card records: only its real path gives it away."""
    train = split_file(version, "train")
    outside = tmp_path / "outside.parquet"
    shutil.move(train, outside)
    train.symlink_to(outside)
    refuse(version, "split 'train' resolves to", "outside the card's folder")


def test_a_symlink_that_stays_inside_the_card_folder_is_accepted(version):
    train = split_file(version, "train")
    (version / "data").mkdir()
    shutil.move(train, version / "data" / train.name)
    train.symlink_to(f"data/{train.name}")
    assert verify_card(version) == []


def test_a_rejected_file_symlinked_outside_is_refused(version, tmp_path):
    rejected = version / "rejected" / "validate.jsonl"
    shutil.move(rejected, tmp_path / "stolen.jsonl")
    rejected.symlink_to(tmp_path / "stolen.jsonl")
    assert any("rejected file resolves to" in p for p in verify_card(version))
    with pytest.raises(CardError, match="outside the card's folder"):
        open_card(version)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_split_that_is_not_a_regular_file_is_refused_without_opening_it(version, kind):
    """A FIFO would block an open() forever; the mode is checked first."""
    test = split_file(version, "test")
    test.unlink()
    os.mkfifo(test) if kind == "fifo" else test.mkdir()
    what = "a FIFO (named pipe)" if kind == "fifo" else "a folder"
    refuse(version, f"split 'test' is {what}, not a regular file")


def cli(*argv):
    """The CLI in a real process, so a hang is a timeout here instead of a frozen test run."""
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "2000"})
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert "Traceback" not in done.stdout + done.stderr
    return done.returncode, lines


def test_card_show_dev_zero_and_validate_a_fifo_return_at_once_with_one_line(tmp_path):
    fifo = tmp_path / "card.json"
    os.mkfifo(fifo)
    code, lines = cli("card", "show", "/dev/zero")
    assert code == 2 and len(lines) == 1 and "/dev/zero: card.json must be a regular file" in lines[0]
    assert "character device" in lines[0]
    code, lines = cli("card", "validate", str(fifo))
    assert code == 2 and len(lines) == 1 and f"{fifo}: card.json must be a regular file" in lines[0]


def test_a_card_json_over_the_size_cap_is_refused_saying_so(version, monkeypatch):
    monkeypatch.setattr(artifact_io, "MAX_ARTIFACT_BYTES", 1000)
    with pytest.raises(ArtifactError, match="larger than 0 MiB, the most a card.json may hold"):
        read_card(version)
    assert artifact_io.MAX_ARTIFACT_BYTES < (version / "card.json").stat().st_size


def test_the_cap_is_64_mib_and_bytes_beyond_it_are_never_read(tmp_path):
    big = tmp_path / "card.json"
    with open(big, "wb") as handle:  # sparse: no disk used
        handle.truncate(artifact_io.MAX_ARTIFACT_BYTES + 10)
    assert artifact_io.MAX_ARTIFACT_BYTES == 64 << 20
    with pytest.raises(ArtifactError, match="larger than 64 MiB"):
        read_card(big)


def test_train_refuses_a_card_whose_fingerprint_does_not_match(version, tiny_model_dir, tmp_path):
    from tests.train.runs import config_for
    from tunesmith.train.trainer import train

    edit(version, lambda d: d["config"]["stages"][0].update(max_chars=7))  # config edited after curation
    with pytest.raises(CardError, match="field fingerprint"):
        train(config_for(version / "card.json", tiny_model_dir, tmp_path))
    assert not (tmp_path / "runs").exists()


def test_eval_refuses_a_card_whose_fingerprint_does_not_match(version, tmp_path):
    """eval reads the card named by the run; a copied split under an updated hash would score training rows."""
    card = read_card(version)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    write_run(RunManifest(run_id="r", card_fingerprint=card.fingerprint, card_path=str(version / "card.json"),
                          base_model="base", quantization="none", device="cpu", config={}, final_metrics={},
                          wall_seconds=0, created_at=card.created_at, code=code_record()), run)
    test = split_file(version, "test")
    shutil.copyfile(split_file(version, "train"), test)
    edit(version, lambda d: record_file(d, "test", test))
    with pytest.raises(TunesmithError, match="field fingerprint"):
        run_eval(EvalConfig(run=str(run)))


@BOTH_FORMATS
def test_a_split_file_given_where_the_card_belongs_says_to_give_the_card(version, capsys):
    """`train card=v1/train.jsonl` (a common slip; a shard alike) is told which file to give, in one line."""
    train = split_file(version, "train")
    assert main(["card", "show", str(train)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"give the card.json (or the folder holding it), not {train.name}" in said and "Traceback" not in said
