"""`tunesmith run` end to end on the tiny model and fixture data: every step runs once, then every step is reused.

Run: .venv/bin/python -m pytest tests/test_pipeline.py -q
"""

import shutil
from pathlib import Path

import pytest
import yaml

from tunesmith.artifacts import choose_eval, read_eval, read_run
from tunesmith.cli import main
from tunesmith.config import ConfigError
from tunesmith.errors import UsageError
from tunesmith.pipeline import load_run_config, preflight, run_pipeline

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


def test_changed_base_weights_train_a_new_run_instead_of_reusing_the_old_one(tmp_path, tiny_tokenizer_dir,
                                                                             tiny_model_dir):
    """The run id covers the base model's fingerprint: after the base weights change, `run` trains (and evaluates)
    a new run rather than reusing the old one, whose eval would be refused."""
    from safetensors.torch import load_file, save_file

    base = Path(shutil.copytree(tiny_model_dir, tmp_path / "base"))
    pipeline = write_pipeline_config(tmp_path, tiny_tokenizer_dir, base)
    quick = ["report=false", "train.max_steps=2", "eval.max_examples=2", "eval.generation.max_new_tokens=2",
             "eval.bootstrap.resamples=100", "eval.general_text=null"]
    old_eval = run_pipeline(load_run_config(pipeline, quick), say=lambda line: None)
    old_run = read_run(old_eval.parent.parent)
    weights = load_file(base / "model.safetensors")
    save_file({k: v * 1.01 for k, v in weights.items()}, str(base / "model.safetensors"), metadata={"format": "pt"})
    said: list[str] = []
    new_eval = run_pipeline(load_run_config(pipeline, quick), say=said.append)
    new_run = read_run(new_eval.parent.parent)
    assert new_run.run_id != old_run.run_id and said[1] == f"train: starting run {new_run.run_id}"
    assert said[2].startswith("eval: wrote") and read_eval(new_eval).base_changed_from is None
    assert new_run.base_model_sha256 != old_run.base_model_sha256
    assert new_run.base_model_fingerprint not in (None, old_run.base_model_fingerprint)


@pytest.mark.parametrize("override, field", [("eval.split=nope", "eval.split"),
                                             ("train.train_split=nope", "train.train_split"),
                                             ("train.eval_split=nope", "train.eval_split")])
def test_an_unknown_split_name_is_refused_before_curating(pipeline_yaml, tmp_path, capsys, override, field):
    capsys.readouterr()
    assert main(["run", str(pipeline_yaml), override]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert f"{field}='nope': the curate split stage (curate.stages[2]) writes test, train, validation" in message
    assert f"set {field} to one of them" in message and "Traceback" not in message
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # nothing curated or trained


def test_split_names_follow_the_split_stage_and_tolerate_the_default_validation(tmp_path, tiny_tokenizer_dir,
                                                                                 tiny_model_dir):
    no_validation = [{"stage": "validate"}, {"stage": "split", "ratios": {"train": 0.7, "test": 0.3}}]
    config = load_run_config(write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir, no_validation))
    preflight(config)  # eval_split defaults to validation: without early stopping, only no eval loss
    with pytest.raises(UsageError, match=r"train\.eval_split='validation': .* writes test, train; .*eval_split=null"):
        preflight(load_run_config(tmp_path / "pipeline.yaml", ["train.early_stopping_patience=2"]))
    sized = [{"stage": "validate"}, {"stage": "split", "ratios": {"train": 1.0, "dev": 0.0}, "sizes": {"exam": 3}}]
    config = load_run_config(write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir, sized))
    with pytest.raises(UsageError, match=r"eval\.split='test': .* writes exam, train;"):
        preflight(config)
    preflight(load_run_config(tmp_path / "pipeline.yaml", ["eval.split=exam"]))
    config = load_run_config(write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir,
                                                   [{"stage": "validate"}]))
    with pytest.raises(UsageError, match=r"train\.train_split='train': the curate config has no split stage, so "
                                         r"its card has one split: all; set train\.train_split"):
        preflight(config)
