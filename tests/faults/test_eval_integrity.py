"""Evals that say what they scored: the base weights are part of the eval id and checked against the run, every
eval keeps its own folder, a non-test eval warns, and damaged or unwritable inputs and outputs end in one line.

One tiny run (on its own copy of the tiny base model, so the base can be changed) is trained per module; evals
score the 7 test examples (or 2) with 2-token answers. Run: .venv/bin/python -m pytest tests/faults/test_eval_integrity.py -q
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import pytest

from tests.evaluate.runs import FIXTURE, trained_run
from tests.reports.test_run_report import make_run
from tests.tiny_pipeline import write_pipeline_config
from tunesmith.artifacts import choose_eval, read_eval, read_run
from tunesmith.cli import main
from tunesmith.config import ConfigError, load_config
from tunesmith.errors import UsageError
from tunesmith.evaluate.config import EvalConfig
from tunesmith.evaluate.lineage import check_base, current_base
from tunesmith.evaluate.runner import eval_id, run_eval
from tunesmith.models import ModelError, base_identity, base_weights_sha256, load_tuned_model
from tunesmith.pipeline import load_run_config, run_pipeline
from tunesmith.reports.run_report import render_run_report

EVAL_CONFIG = Path(__file__).parents[2] / "configs" / "eval" / "default.yaml"


@pytest.fixture(scope="module", autouse=True)
def worker():
    """These tests run the CLI in-process: no forked CLI worker is needed (overrides the faults conftest's)."""
    yield None


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A private copy of the tiny base model, which the base-change test edits and restores."""
    target = tmp_path_factory.mktemp("base") / "tiny"
    shutil.copytree(tiny_model_dir, target)
    return target


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer_dir, base_dir) -> Path:
    return trained_run(tmp_path_factory.mktemp("evalfaults"), tiny_tokenizer_dir, base_dir, max_steps=2)


def flat(text: str) -> str:
    """Text without whitespace: the log wraps long lines, even inside a path."""
    return "".join(text.split())


def small_eval(run_dir: Path, **extra) -> EvalConfig:
    return EvalConfig(run=str(run_dir / "run.json"), generation={"max_new_tokens": 2, "batch_size": 4},
                      bootstrap={"resamples": 100}, general_text=None, **extra)


def test_the_eval_id_covers_the_base_weights(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    config = EvalConfig(run="r/run.json")
    assert eval_id(config, tmp_path, "ab" * 32, "1" * 64) != eval_id(config, tmp_path, "ab" * 32, "2" * 64)
    allowed = EvalConfig(run="r/run.json", allow_base_change=True)  # permission, not a measurement setting
    assert eval_id(allowed, tmp_path, "ab" * 32, "1" * 64) == eval_id(config, tmp_path, "ab" * 32, "1" * 64)


def test_sharded_base_weights_hash_every_shard(tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"one")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"two")
    before = base_weights_sha256(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"TWO")
    assert before is not None and base_weights_sha256(tmp_path) not in (None, before)


def test_the_base_identity_covers_config_tokenizer_files_and_every_shard_but_nothing_else(tmp_path):
    """The fingerprint changes with config.json, the chat template or a shard (the weights sha only with a shard);
    a README does not count; each file's own sha256 is kept so a refusal can name it; a hub id has no identity."""
    for name, text in (("config.json", "{}"), ("chat_template.jinja", "{{ x }}"),
                       ("model-00001-of-00002.safetensors", "one"), ("model-00002-of-00002.safetensors", "two")):
        (tmp_path / name).write_text(text)
    first = base_identity(tmp_path)
    assert sorted(first.files) == ["chat_template.jinja", "config.json", "model-00001-of-00002.safetensors",
                                   "model-00002-of-00002.safetensors"]
    (tmp_path / "README.md").write_text("notes")
    assert base_identity(tmp_path) == first
    seen = {first.fingerprint}
    for name, text in (("config.json", '{"rms_norm_eps": 1e-5}'), ("chat_template.jinja", "{{ y }}"),
                       ("added_tokens.json", "{}")):
        (tmp_path / name).write_text(text)
        now = base_identity(tmp_path)
        assert now.weights_sha256 == first.weights_sha256 and now.fingerprint not in seen, name
        seen.add(now.fingerprint)
    (tmp_path / "model-00002-of-00002.safetensors").write_text("TWO")
    assert base_identity(tmp_path).weights_sha256 != first.weights_sha256
    assert base_identity("HuggingFaceTB/not-local").fingerprint is None


def test_an_edited_base_config_is_refused_even_with_force_and_scored_under_a_new_id_when_allowed(
        run_dir, base_dir, capsys):
    """Same weights, another rms_norm_eps: eval refuses (reused or --force, API and CLI) with a hint for both
    commands; allowed, it is a new eval recording the new fingerprint and the run's as base_changed_from."""
    first = read_eval(run_eval(small_eval(run_dir)))
    trained_on = read_run(run_dir).base_model_fingerprint
    assert trained_on is not None and first.base_model_fingerprint == trained_on
    config_file = base_dir / "config.json"
    original = config_file.read_bytes()
    try:
        config_file.write_text(json.dumps({**json.loads(original), "rms_norm_eps": 0.5}))
        for reuse in (True, False):
            with pytest.raises(UsageError) as refused:
                run_eval(small_eval(run_dir), reuse=reuse)
            message = str(refused.value)
            assert message.startswith(f"{base_dir}: the base model's config or tokenizer files (not its weights) "
                                      "changed since run r was trained on them"), message
            assert "--allow-base-change" in message and "eval.allow_base_change=true" in message
        argv = ["eval", str(EVAL_CONFIG), "--force", f"run={run_dir}", "max_examples=2", "general_text=null"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert flat("config or tokenizer files (not its weights) changed") in flat(err) and "Traceback" not in err
        changed = read_eval(run_eval(small_eval(run_dir, allow_base_change=True), reuse=False))
        assert changed.eval_id != first.eval_id and changed.base_changed_from == trained_on
        assert changed.base_model_sha256 == first.base_model_sha256  # the weights are the same ones
        assert changed.base_model_fingerprint == base_identity(base_dir).fingerprint != trained_on
        assert read_eval(run_dir / "eval" / first.eval_id).created_at == first.created_at  # the old eval is kept
    finally:
        config_file.write_bytes(original)


def test_a_run_without_a_base_fingerprint_is_checked_by_its_weights_alone(run_dir, base_dir):
    """run.json files from before the fingerprint keep their meaning: an edited config passes, edited weights not."""
    old = read_run(run_dir).model_copy(update={"base_model_fingerprint": None})
    config_file, weights = base_dir / "config.json", base_dir / "model.safetensors"
    original_config, original_weights = config_file.read_bytes(), weights.read_bytes()
    try:
        config_file.write_text(json.dumps({**json.loads(original_config), "rms_norm_eps": 0.5}))
        assert check_base(old, current_base(old), allow_change=False) is None
        weights.write_bytes(original_weights[:-1] + bytes([original_weights[-1] ^ 1]))
        with pytest.raises(UsageError, match=r"model\.safetensors: the base weights changed.*recorded sha256"):
            check_base(old, current_base(old), allow_change=False)
    finally:
        config_file.write_bytes(original_config)
        weights.write_bytes(original_weights)


def test_a_changed_base_is_refused_and_scored_only_when_allowed_and_recorded(run_dir, base_dir, caplog):
    first = read_eval(run_eval(small_eval(run_dir)))
    recorded = read_run(run_dir).base_model_sha256
    assert first.base_model_sha256 == recorded is not None and first.base_changed_from is None
    weights = base_dir / "model.safetensors"
    original = weights.read_bytes()
    try:
        from safetensors.torch import load_file, save_file

        tensors = load_file(weights)
        name = next(iter(tensors))
        save_file({**tensors, name: tensors[name] + 0.01}, str(weights), metadata={"format": "pt"})
        for reuse in (True, False):  # neither reuse nor --force may score the new weights under the old run's record
            with pytest.raises(UsageError, match=r"model\.safetensors: the base weights changed.*--allow-base-change"):
                run_eval(small_eval(run_dir), reuse=reuse)
        with caplog.at_level(logging.WARNING):
            changed = read_eval(run_eval(small_eval(run_dir, allow_base_change=True), reuse=False))
        assert changed.eval_id != first.eval_id and changed.base_changed_from == read_run(run_dir).base_model_fingerprint
        assert changed.base_model_sha256 == base_weights_sha256(base_dir) != recorded
        assert any("allow_base_change" in w for w in changed.warnings)
        assert any(r.levelno == logging.WARNING and "NOT the ones" in r.getMessage() for r in caplog.records)
        assert read_eval(run_dir / "eval" / first.eval_id).created_at == first.created_at  # the old eval is kept
    finally:
        weights.write_bytes(original)


def test_an_eval_on_another_split_keeps_the_test_eval_and_is_flagged(run_dir, tmp_path, caplog, capsys):
    test_eval = read_eval(run_eval(small_eval(run_dir)))
    with caplog.at_level(logging.WARNING):
        other = read_eval(run_eval(small_eval(run_dir, split="train", max_examples=2)))
    assert other.split == "train" and other.eval_id != test_eval.eval_id
    assert [w.split(" ")[:4] for w in other.warnings] == [["scored", "on", "the", "'train'"],
                                                          ["only", "the", "first", "2"]]
    assert sum("'train' split" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    assert read_eval(run_dir / "eval" / test_eval.eval_id).created_at == test_eval.created_at  # not deleted
    assert read_eval(choose_eval(run_dir)).split == "test"  # readers pick the newest test-split eval

    default_page = render_run_report(run_dir, tmp_path / "default.html").read_text(encoding="utf-8")
    assert "held-out test" not in default_page.split('id="metrics"')[0]  # no warning over a test-split headline
    assert main(["report", str(run_dir), "--eval", other.eval_id, "--out", str(tmp_path / "train.html")]) == 0
    page = (tmp_path / "train.html").read_text(encoding="utf-8")
    headline = page.split('id="metrics"')[0]
    assert "Not the run&#39;s full held-out test" in headline and "&#39;train&#39; split" in headline
    assert main(["report", str(run_dir), "--eval", "nope", "--out", str(tmp_path / "x.html")]) == 2
    assert flat("no eval 'nope'") in flat(capsys.readouterr().err)


def test_eval_accepts_overrides_after_force(run_dir, capsys):
    argv = ["eval", str(EVAL_CONFIG), "--force", f"run={run_dir}", "max_examples=2", "generation.max_new_tokens=2",
            "bootstrap.resamples=100", "general_text=null"]
    assert main(argv) == 0
    printed = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert read_eval(printed).n_examples == 2 and printed.parent.parent == run_dir / "eval"


def test_old_runs_with_eval_json_directly_in_eval_still_read(tmp_path):
    run = make_run(tmp_path)  # the layout before one folder per eval id
    assert choose_eval(run) == run / "eval"
    assert "e" * 16 in render_run_report(run).read_text(encoding="utf-8")


@pytest.mark.parametrize(("line", "problem"), [
    (b"{broken\n", "not valid JSON"),
    (b'{"id": "x", "scores": ["rougeL"]}\n', "field scores"),
    (b"[1, 2]\n", "a list, not a JSON object"),
    (b'{"id": "\xff"}\n', "not valid UTF-8"),
])
def test_a_malformed_samples_file_is_one_line_naming_file_and_line(tmp_path, capsys, line, problem):
    run = make_run(tmp_path)
    samples = run / "eval" / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    samples.write_bytes(b"".join(lines[:2] + [line] + lines[3:]))
    assert main(["report", str(run)]) == 2
    err = flat(capsys.readouterr().err)
    assert flat(f"{samples}:3: {problem}") in err and "Traceback" not in err


@pytest.mark.parametrize(("edit", "words"), [
    ({"r": 8}, "does not match"),
    ({"target_modules": ["no_such_proj"]}, "does not match"),
    ({"target_modules": ["q_proj"]}, "stored tensor(s) unused"),
])
def test_an_adapter_config_that_does_not_fit_its_weights_is_a_model_error(run_dir, tmp_path, edit, words):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("eval"))
    config_file = copy / "adapter" / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **edit}))
    with pytest.raises(ModelError) as caught:
        load_tuned_model(copy)
    assert str(caught.value).startswith(f"{copy / 'adapter'}: adapter_config.json") and words in str(caught.value)


def test_report_out_below_a_regular_file_is_one_line(run_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    assert main(["report", str(run_dir), "--out", str(tmp_path / "afile" / "sub" / "report.html")]) == 2
    err = flat(capsys.readouterr().err)
    assert flat(f"{tmp_path / 'afile'} is a file, not a folder") in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_report_out_never_overwrites_a_file_that_is_not_a_tunesmith_report(run_dir, tmp_path, capsys):
    """A user's file (or a split file: an input) at --out is refused and left byte for byte; an earlier report is
    replaced, for the run page and the compare page alike; a symlink at --out is refused, its target untouched."""
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(FIXTURE.read_bytes())
    for argv in (["report", str(run_dir)], ["report", "compare", str(run_dir)]):
        assert main([*argv, "--out", str(victim)]) == 2
        err = capsys.readouterr().err
        assert flat(f"{victim}: already exists and is not a tunesmith report") in flat(err) and "Traceback" not in err
        assert victim.read_bytes() == FIXTURE.read_bytes()
        page = tmp_path / f"{len(argv)}.html"
        assert main([*argv, "--out", str(page)]) == 0 and main([*argv, "--out", str(page)]) == 0  # replaced
        assert '<meta name="generator" content="tunesmith">' in page.read_text()
    link = tmp_path / "link.html"
    link.symlink_to(victim)
    assert main(["report", str(run_dir), "--out", str(link)]) == 2
    assert flat("is not a regular file") in flat(capsys.readouterr().err) and victim.read_bytes() == FIXTURE.read_bytes()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_report_out_on_a_full_or_read_only_disk_is_one_line(run_dir, tmp_path, capsys, monkeypatch, code):
    import tunesmith.reports.run_report as run_report

    def refuse(path, text):
        raise OSError(code, "simulated", str(path))

    monkeypatch.setattr(run_report, "atomic_write_text", refuse)
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 2
    err = flat(capsys.readouterr().err)
    assert flat(f"{out}: cannot write the report (simulated); choose another --out") in err and "Traceback" not in err


def test_run_refuses_a_bad_headline_or_missing_file_before_curating(tmp_path, tiny_tokenizer_dir, tiny_model_dir,
                                                                    capsys):
    pipeline = write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir)
    with pytest.raises(ConfigError, match=r"headline: 'rouge_l' is not a metric"):
        load_run_config(pipeline, ["eval.headline=rouge_l"])
    assert main(["run", str(pipeline), "eval.headline=general_text_perplexity", "eval.general_text=null"]) == 2
    assert "general_text_perplexity" in capsys.readouterr().err
    with pytest.raises(UsageError, match="eval.general_text"):
        run_pipeline(load_run_config(pipeline, [f"eval.general_text={tmp_path / 'missing.txt'}"]))
    assert not (tmp_path / "data").exists()  # curation never started
    with pytest.raises(ConfigError, match="headline"):  # `tunesmith eval` refuses it before loading any model
        load_config(EvalConfig, EVAL_CONFIG, ["run=r", "headline=bleu4"])
