"""Paths from cards and configs cannot leave the output folder: split file names, rejected files, folder names.

Run: .venv/bin/python -m pytest tests/security/test_paths.py -q
"""

import hashlib
import json

import pytest
from pydantic import ValidationError

from tests.train.conftest import FIXTURE
from tunesmith.artifact_io import ArtifactError
from tunesmith.artifacts import SplitRecord, StageRecord, open_card, read_card
from tunesmith.cli import main
from tunesmith.config import ConfigError, load_config
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.curate.split import Split
from tunesmith.train.config import TrainConfig

ESCAPES = ["/etc/passwd", "../outside.jsonl", "..", "sub/../../outside.jsonl", "..\\outside.jsonl", "C:\\x.jsonl",
           "C:x.jsonl", "\\\\server\\share\\x.jsonl"]
NOT_PLAIN = ["", ".", "sub/train.jsonl", "sub\\train.jsonl", "./train.jsonl", "train.jsonl/", "tr\0ain.jsonl"]
BAD_FOLDER_NAMES = ["..", ".", "../up", "a/b", "a\\b", "/abs", ".hidden", "", "-x", "a\nb", "v1\n", "a b", "a\0b"]


@pytest.fixture
def card(tmp_path):
    config = CurateConfig(name="tiny", output_dir=str(tmp_path / "data"), sources=[{"path": str(FIXTURE)}],
                          stages=[{"stage": "validate"}, {"stage": "split", "ratios": {"train": 0.8, "test": 0.2}}],
                          report=False)
    return run_curate(config).directory / "card.json"


def edit_card(card, **split_fields):
    data = json.loads(card.read_text())
    data["splits"]["train"].update(split_fields)
    card.write_text(json.dumps(data))


@pytest.mark.parametrize("name", ESCAPES + NOT_PLAIN)
def test_a_split_file_name_that_is_not_a_plain_name_in_the_card_folder_is_refused(name):
    with pytest.raises(ValidationError, match="split file"):
        SplitRecord(file=name, rows=1, sha256="0" * 64)


@pytest.mark.parametrize("name", ["train.jsonl", "all.jsonl", "held-out_2.jsonl", "..jsonl", "a..b.jsonl"])
def test_plain_split_file_names_are_accepted(name):
    assert SplitRecord(file=name, rows=1, sha256="0" * 64).file == name


@pytest.mark.parametrize("name", ESCAPES)
def test_a_card_pointing_outside_its_folder_is_refused_naming_the_card_and_field(card, name):
    """The outside file even matches the recorded hash: the name alone is enough to refuse the card."""
    outside = card.parent.parent / "outside.jsonl"
    outside.write_text('{"messages": []}\n')
    edit_card(card, file=name, sha256=hashlib.sha256(outside.read_bytes()).hexdigest())
    for read in (read_card, open_card):
        with pytest.raises(ArtifactError) as caught:
            read(card)
        first_line = str(caught.value).splitlines()[0]
        assert str(card) in first_line and "splits.train.file" in first_line and repr(name) in first_line
    assert main(["card", "validate", str(card)]) == 2


def test_rejected_file_paths_stay_inside_the_card_folder():
    record = {"name": "s", "version": "1", "config": {}, "rows_in": 1, "rows_out": 1, "rows_rejected": 0, "seconds": 0}
    assert StageRecord(**record, rejected_file="rejected/s.jsonl").rejected_file == "rejected/s.jsonl"
    for bad in ("../s.jsonl", "/tmp/s.jsonl", "rejected/../../s.jsonl", "C:\\s.jsonl"):
        with pytest.raises(ValidationError, match="rejected file"):
            StageRecord(**record, rejected_file=bad)


@pytest.mark.parametrize("name", BAD_FOLDER_NAMES)
def test_names_that_become_folders_cannot_escape_or_hide(name):
    source = [{"path": str(FIXTURE)}]
    with pytest.raises(ValidationError):
        CurateConfig(name=name, sources=source)
    with pytest.raises(ValidationError):
        CurateConfig(version=name, sources=source)
    with pytest.raises(ValidationError):
        TrainConfig(card="c.json", run_id=name)


def test_folder_names_from_a_config_file_are_refused_with_the_key(tmp_path):
    (tmp_path / "train.yaml").write_text("card: c.json\nrun_id: ../../elsewhere\n")
    with pytest.raises(ConfigError, match="run_id"):
        load_config(TrainConfig, tmp_path / "train.yaml")
    assert TrainConfig(card="c.json", run_id="run-1.2_b").run_id == "run-1.2_b"


@pytest.mark.parametrize("split", ["../x", "a/b", "", "."])
def test_split_names_which_become_file_names_are_plain(split):
    with pytest.raises(ValidationError, match="split name"):
        Split.Config(ratios={split: 1.0})
