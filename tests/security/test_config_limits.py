"""Configs cannot hang or exhaust memory (issue 10, items 12 and 13): YAML alias bombs, huge files and huge
values are refused at load time, every count-like setting has an upper bound named in the message, and
messages quote a bounded preview of the input. Big numbers are written readably (1,000,000,000).

Run: .venv/bin/python -m pytest tests/security/test_config_limits.py -q
"""

import time
import tracemalloc

import pytest
from rich.console import Console

from tunesmith.config import (
    ConfigError,
    StrictModel,
    load_config,
    parse_override,
    read_yaml,
    readable,
    validate_config,
)
from tunesmith.curate.config import CurateConfig, GatesConfig
from tunesmith.curate.stage import STAGES
from tunesmith.evaluate.config import BootstrapSettings, EvalConfig, GenerationSettings
from tunesmith.train.config import LoraSettings, TrainConfig


def billion_laughs() -> str:
    """The classic bomb: 9 levels of 9 aliases, 9**9 (387 million) strings once expanded, in about 400 bytes."""
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def refused(path, cls=CurateConfig, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(cls, path, overrides)
    return str(info.value)


def test_an_alias_bomb_is_refused_in_well_under_a_second_and_small_memory(tmp_path):
    """The bomb that took 43 s and 3.2 GB is refused before any object is built: fast, little memory, file named."""
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    assert len(path.read_bytes()) < 450
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = refused(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - started < 2
    assert peak < 20 * 2**20
    assert message.startswith(f"{path}: alias expansion exceeds 1,000,000 values")


def test_too_many_aliases_and_self_referencing_aliases_are_refused(tmp_path):
    """A flat list of 10,001 aliases passes the expansion bound but not the alias count; `&a [*a]` never ends."""
    many = tmp_path / "many.yaml"
    many.write_text("x: &x 1\nitems: [" + ", ".join(["*x"] * 10_001) + "]\n")
    assert "more than 10,000 aliases" in refused(many)
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: &a [1, *a]\n")
    assert "its expansion never ends" in refused(loop)


def test_ordinary_anchors_and_merge_keys_still_load(tmp_path):
    """Bounds leave normal YAML reuse alone: an anchor merged into two mappings reads as two full copies."""
    path = tmp_path / "ok.yaml"
    path.write_text("base: &base {path: a.jsonl, format: messages}\none: {<<: *base, name: one}\ntwo: *base\n")
    data = read_yaml(path)
    assert data["one"] == {"path": "a.jsonl", "format": "messages", "name": "one"} and data["two"]["path"] == "a.jsonl"


def test_an_oversized_config_file_is_refused_without_reading_it_all(tmp_path):
    """A config over 1 MB is refused naming the file and the limit (it is read only up to the limit)."""
    path = tmp_path / "huge.yaml"
    path.write_text("name: x\n" + "# padding\n" * 200_000)
    assert refused(path) == f"{path}: larger than 1,000,000 bytes; a config is a short YAML file " \
                            "(keep data in the files it names)"


def test_an_alias_bomb_in_an_override_is_refused_naming_the_key():
    """`key=value` overrides are read as YAML too, with the same bounds."""
    value = billion_laughs().replace("\n", ", ").rstrip(", ")
    with pytest.raises(ConfigError, match=r"override 'name': alias expansion exceeds 1,000,000 values"):
        parse_override("name={" + value + "}")


def test_messages_quote_a_bounded_preview_of_huge_input():
    """A bad value that is huge (a 10 MB string; a shared-reference structure of 9**9 items, as a bomb builds)
    is quoted as a short preview; formatting the error never walks the whole input."""
    nested = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9
    for bad in ("x" * 10_000_000, nested):
        tracemalloc.start()
        try:
            with pytest.raises(ConfigError) as info:
                validate_config(GatesConfig, {"min_rows": bad}, "gates.yaml")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        message = str(info.value)
        assert message.startswith("gates.yaml: invalid configuration\n  min_rows:") and len(message) < 300
        assert peak < 5 * 2**20


def test_bootstrap_resamples_of_a_billion_are_refused_at_load_naming_the_limit():
    """The setting that was OOM-killed after both models were scored now fails before any work."""
    message = refused(None, EvalConfig, ["run=runs/x", "bootstrap.resamples=1000000000"])
    assert "bootstrap.resamples: Input should be less than or equal to 100,000 (got 1000000000)" in message


@pytest.mark.parametrize(("cls", "override", "limit"), [
    (TrainConfig, "max_steps=1000000000000", "100,000,000"),
    (TrainConfig, "lora.r=100000", "4,096"),
    (EvalConfig, "generation.max_new_tokens=10000000", "131,072"),
    (CurateConfig, "stages.near_dedup.ngram=1000", "100"),
])
def test_count_settings_over_their_maximum_are_refused_with_the_limit(cls, override, limit):
    required = {TrainConfig: ["card=c.json"], EvalConfig: ["run=r"], CurateConfig: ["sources=[{path: a.jsonl}]"]}
    message = refused(None, cls, [*required[cls], override])
    assert override.split("=")[0].split(".")[-1] in message and f"less than or equal to {limit}" in message


def _int_fields(model: type[StrictModel]):
    for name, field in model.model_fields.items():
        if field.annotation in (int, int | None):
            yield name, field


CONFIGS = [GatesConfig, TrainConfig, LoraSettings, EvalConfig, BootstrapSettings, GenerationSettings,
           *(stage.Config for stage in STAGES.values())]


@pytest.mark.parametrize("model", CONFIGS, ids=lambda m: m.__qualname__)
def test_every_integer_setting_has_an_upper_bound(model):
    """No integer setting of any config is unbounded above (a typo of extra zeros must fail at load)."""
    unbounded = [name for name, field in _int_fields(model)
                 if not any(hasattr(m, "le") or hasattr(m, "lt") for m in field.metadata)]
    assert unbounded == []


def test_readable_numbers():
    assert [readable(v) for v in (1_000_000_000, 1e9, 12345.678, 0.05, 2.5e-07, 7, None)] == [
        "1,000,000,000", "1,000,000,000", "12,345.7", "0.05", "2.5e-07", "7", "-"]


def test_console_tables_write_big_counts_with_separators():
    """The gate and stage tables print 1,000,000,000, not 1000000000 or 1e+09."""
    from tunesmith.artifacts import GateRecord, StageRecord
    from tunesmith.console import gate_table, stage_table

    console = Console(record=True, width=200)
    console.print(gate_table([GateRecord(name="min_rows", limit=1e9, value=1234567, passed=False)]))
    console.print(stage_table([StageRecord(name="validate", version="1", config={}, rows_in=1_000_000_000, rows_out=999_999_000,
                                           rows_rejected=1000, seconds=12.5, findings={})]))
    text = console.export_text()
    assert "1,000,000,000" in text and "1,234,567" in text and "999,999,000" in text and "1e+09" not in text
