"""`~` in a config value means the home folder, as in model paths: a shell expands `~` only at the start of a
word, so `output_dir=~/x` on the command line or in a YAML file reaches tunesmith unexpanded.

Run: .venv/bin/python -m pytest tests/robustness/test_home_paths.py -q
"""

from tunesmith.config import load_config
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.evaluate.config import EvalConfig

from ..tiny_pipeline import FIXTURE


def test_a_tilde_in_curate_paths_means_the_home_folder_and_the_version_lands_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data.jsonl").write_bytes(FIXTURE.read_bytes())
    config = load_config(CurateConfig, None, ["output_dir=~/datasets", "sources=[{path: ~/data.jsonl}]",
                                              "stages=[{stage: validate}]", "report=false"])
    assert config.output_dir == str(tmp_path / "datasets") and config.sources[0].path == str(tmp_path / "data.jsonl")
    result = run_curate(config)
    assert result.directory == tmp_path / "datasets" / "dataset" / "v1" and (result.directory / "card.json").is_file()
    assert not (tmp_path / "~").exists()


def test_a_tilde_in_eval_paths_means_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(EvalConfig, None, ["run=~/runs/a", "general_text=~/prose.txt"])
    assert config.run == str(tmp_path / "runs" / "a") and config.general_text == str(tmp_path / "prose.txt")
    assert load_config(EvalConfig, None, ["run=runs/a"]).general_text == "builtin"  # other values are untouched
