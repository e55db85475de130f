"""`tunesmith run` end to end on the tiny model and fixture data: every step runs once, then every step is reused.

Run: .venv/bin/python -m pytest tests/test_pipeline.py -q
"""

from pathlib import Path

import pytest
import yaml

from tunesmith.artifacts import choose_eval, read_eval, read_run
from tunesmith.cli import main
from tunesmith.config import ConfigError
from tunesmith.pipeline import load_run_config, run_pipeline

from .tiny_pipeline import write_pipeline_config


@pytest.fixture
def pipeline_yaml(tmp_path, tiny_tokenizer_dir, tiny_model_dir) -> Path:
    return write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir)


def test_run_curates_trains_evaluates_reports_then_reuses_everything(pipeline_yaml, capsys):
    assert main(["run", str(pipeline_yaml)]) == 0
    first = capsys.readouterr().out
    report = Path(first.strip().splitlines()[-1])
    assert report.name == "report.html" and report.is_file()
    run_dir = report.parent
    manifest, evaluation = read_run(run_dir), read_eval(choose_eval(run_dir))
    assert evaluation.run_id == manifest.run_id and evaluation.card_fingerprint == manifest.card_fingerprint
    assert manifest.card_fingerprint[:8] in manifest.run_id  # the run id is derived from the card and settings
    html = report.read_text()
    assert manifest.card_fingerprint[:16] in html and evaluation.eval_id in html

    said: list[str] = []
    assert run_pipeline(load_run_config(pipeline_yaml), say=said.append) == report
    assert [line.split(" ", 2)[:2] for line in said] == [["curate:", "reused"], ["train:", "reused"],
                                                         ["eval:", "reused"], ["report:", str(report)]]
    assert read_eval(choose_eval(run_dir)).created_at == evaluation.created_at

    said.clear()  # new train settings: a new run, evaluated and reported
    other = run_pipeline(load_run_config(pipeline_yaml, ["train.max_steps=2"]), say=said.append)
    assert said[1].startswith("train: starting") and other.parent != run_dir and other.is_file()


def test_sections_may_be_files_and_overrides_reach_into_them(tmp_path, pipeline_yaml):
    data = yaml.safe_load(pipeline_yaml.read_text())
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(data["train"]))
    data["train"] = str(tmp_path / "train.yaml")
    combined = tmp_path / "combined.yaml"
    combined.write_text(yaml.safe_dump(data))
    config = load_run_config(combined, ["train.lora.r=2"])
    assert config.train_config("card.json").lora.r == 2


def test_pipeline_config_errors_name_the_section(tmp_path, pipeline_yaml):
    with pytest.raises(ConfigError, match="max_stepz"):
        load_run_config(pipeline_yaml, ["train.max_stepz=3"])
    with pytest.raises(ConfigError, match="train.card is set by the pipeline"):
        load_run_config(pipeline_yaml, ["train.card=x.json"])
