"""Tests for the config system on the curate config: misspelt keys and stage names with "did you mean"
hints and the file name, dotted `key=value` overrides (by name, by index, nested, top level), malformed
overrides, the validate-first rule, the resolved default stages, and a dump/load round trip.

Run: pytest tests/test_config.py -q
"""

import pytest
from pydantic import ValidationError

from tunesmith.config import ConfigError, apply_overrides, dump_config, load_config, parse_override
from tunesmith.curate.config import DEFAULT_STAGES, CurateConfig
from tunesmith.curate.stage import STAGES

SOURCES = "sources:\n  - path: data/train.jsonl\n"


def write(tmp_path, text: str, name: str = "curate.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(CurateConfig, path, overrides)
    return str(info.value)


def test_misspelt_top_level_key(tmp_path):
    path = write(tmp_path, SOURCES + "ouput_dir: out\n", name="my_curate.yaml")
    message = load_error(path)
    assert "my_curate.yaml" in message
    assert "ouput_dir" in message
    assert "did you mean 'output_dir'" in message


def test_misspelt_source_key(tmp_path):
    path = write(tmp_path, "sources:\n  - path: a.jsonl\n    colums: {question: prompt}\n")
    message = load_error(path)
    assert "sources.0.colums" in message
    assert "did you mean 'columns'" in message


def test_misspelt_stage_parameter(tmp_path):
    path = write(tmp_path, SOURCES + "stages:\n  - stage: validate\n  - {stage: near_dedup, treshold: 0.7}\n")
    message = load_error(path)
    assert "curate.yaml" in message
    assert "stages[1] (near_dedup)" in message
    assert "unknown key 'treshold'; did you mean 'threshold'" in message


def test_bad_stage_parameter_value(tmp_path):
    path = write(tmp_path, SOURCES + "stages:\n  - stage: validate\n  - {stage: near_dedup, threshold: 1.5}\n")
    message = load_error(path)
    assert "stages[1] (near_dedup): threshold" in message
    assert "1.5" in message


def test_unknown_stage_name_suggests_the_closest(tmp_path):
    path = write(tmp_path, SOURCES + "stages:\n  - stage: validate\n  - stage: exact_dedupe\n")
    message = load_error(path)
    assert "unknown stage 'exact_dedupe'; did you mean 'exact_dedup'" in message


def test_overrides_apply(tmp_path):
    path = write(tmp_path, SOURCES + "stages:\n  - stage: validate\n  - stage: near_dedup\n  - stage: split\n")
    overrides = [
        "stages.near_dedup.threshold=0.7",
        "stages.0.max_chars=10",
        "stages.split.ratios={train: 0.5, test: 0.5}",
        "gates.min_rows=5",
        "name=x",
        "sources.0.keep_columns=[topic]",
    ]
    config = load_config(CurateConfig, path, overrides)

    assert config.name == "x"
    assert config.gates.min_rows == 5
    assert [s["stage"] for s in config.stages] == ["validate", "near_dedup", "split"]
    assert config.stages[0]["max_chars"] == 10
    assert config.stages[0]["on_error"] == "reject"  # untouched defaults are filled in
    assert config.stages[1]["threshold"] == 0.7
    assert config.stages[1]["ngram"] == 5
    assert config.stages[2]["ratios"] == {"train": 0.5, "test": 0.5}
    assert config.sources[0].keep_columns == ["topic"]


def test_override_errors_name_the_problem(tmp_path):
    path = write(tmp_path, SOURCES + "stages:\n  - stage: validate\n  - stage: near_dedup\n")
    assert "not of the form key=value" in load_error(path, ["stages.near_dedup.threshold"])
    assert "empty key" in load_error(path, ["=0.7"])
    assert "index 7 is out of range" in load_error(path, ["stages.7.max_chars=10"])
    assert "no single list entry named 'pii'" in load_error(path, ["stages.pii.action=mask"])
    # a value of the wrong type is reported by validation, with where it came from
    message = load_error(path, ["gates.min_rows=many"])
    assert "gates.min_rows" in message and "curate.yaml" in message


def test_overrides_without_a_file(tmp_path):
    config = load_config(CurateConfig, None, ["sources=[{path: a.jsonl}]", "report=false"])
    assert config.sources[0].path == "a.jsonl"
    assert config.report is False
    with pytest.raises(ConfigError, match="<command line>"):
        load_config(CurateConfig, None, ["report=false"])  # no sources


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=0.7") == (["a", "b"], 0.7)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=") == (["a"], "")
    assert parse_override("a=x=y") == (["a"], "x=y")
    assert apply_overrides({"a": {"b": 1}}, ["a.c.d=2", "a.b=3"]) == {"a": {"b": 3, "c": {"d": 2}}}


def test_validate_must_come_first():
    with pytest.raises(ValidationError, match="first stage must be `validate`"):
        CurateConfig(sources=[{"path": "a.jsonl"}], stages=[{"stage": "exact_dedup"}, {"stage": "validate"}])
    with pytest.raises(ValidationError, match="first stage must be `validate`"):
        CurateConfig(sources=[{"path": "a.jsonl"}], stages=[])
    with pytest.raises(ValidationError, match="must be a mapping with a `stage:` name"):
        CurateConfig(sources=[{"path": "a.jsonl"}], stages=[{"max_chars": 10}])


def test_missing_config_file_and_bad_yaml(tmp_path):
    assert "config file not found" in load_error(tmp_path / "absent.yaml")
    assert "not valid YAML" in load_error(write(tmp_path, "sources: [unclosed\n"))
    assert "must be a mapping" in load_error(write(tmp_path, "- a\n- b\n"))


def test_defaults_resolve_all_eight_stages():
    config = CurateConfig(sources=[{"path": "a.jsonl"}])
    assert [s["stage"] for s in config.stages] == DEFAULT_STAGES
    assert len(config.stages) == 8
    for entry in config.stages:
        name = entry["stage"]
        assert entry == {"stage": name, **STAGES[name].Config().model_dump(mode="json")}
    by_name = {s["stage"]: s for s in config.stages}
    assert by_name["near_dedup"]["threshold"] == 0.8
    assert by_name["split"]["ratios"] == {"train": 0.9, "validation": 0.05, "test": 0.05}
    assert by_name["contamination"]["ngram"] == 13
    assert config.gates.min_rows == 1
    assert config.output_dir == "artifacts/datasets"


def test_dump_and_load_round_trip(tmp_path):
    config = load_config(CurateConfig, None, ["sources=[{path: a.jsonl, name: alpha}]", "name=demo"])
    dump_config(config, tmp_path / "resolved.yaml")
    assert load_config(CurateConfig, tmp_path / "resolved.yaml") == config
