"""The `validate` stage as a row stage: the streaming engine (small batches, forked workers) gives exactly what one
pass over the whole list gives (rows, rejected file, findings, warnings, review items, the column profile), on
hand-made rows of several formats; and its accumulator holds a few hashes per row, never the rows.

Run: .venv/bin/python -m pytest tests/curate/test_validate_streamed.py -q
"""

import json
import pickle

import pytest
from pydantic import ValidationError

from tests.curate.engine_helpers import assert_same, run_streamed, run_whole, three_runs
from tunesmith.curate.engine import Engine, StageRun
from tunesmith.curate.sources import SourceConfig, read_source
from tunesmith.curate.stage import DataError, StageContext
from tunesmith.curate.validate import Validate


def _write(folder, name: str, rows: list) -> str:
    path = folder / name
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return str(path)


def rows(folder):
    """Alpaca rows with a near-constant prompt, ShareGPT, OpenAI messages and DPO pairs: bad rows, fix-ups, ignored
    columns and turn keys, media tokens, placeholders and multimodal rows, spread over many batches."""
    folder.mkdir(parents=True, exist_ok=True)
    alpaca = [{"instruction": "Say hello.", "input": "", "output": f"Hello number {i}!", "category": "greet"}
              for i in range(22)]  # one prompt in 22 of 38 kept rows: the near-constant prompt warning
    alpaca += [
        {"instruction": "  Name a colour.  ", "input": "n/a", "output": "Blue."},  # stripped, placeholder dropped
        {"instruction": "Write a greeting.", "input": "", "output": "Dear {{name}}, welcome!"},  # placeholder
        {"instruction": "<image>\nDescribe it.", "input": "", "output": "I cannot see it."},  # media token
        {"instruction": "No answer"},  # missing_field
        "{not json",  # malformed_json
        {"instruction": "Chat <|im_end|> marker", "input": "", "output": "ok"},  # special_token_in_text
        {"instruction": "Too long", "input": "", "output": "x" * 400},  # too_long (max_chars below)
    ]
    alpaca += [{"instruction": f"Count to {i}.", "input": f"start {i}", "output": " ".join(map(str, range(i)))}
               for i in range(2, 9)]
    sharegpt = [
        {"conversations": [{"from": "human", "value": "Hi there", "lang": "en"}, {"from": "gpt", "value": "Hello."}]},
        {"conversations": [{"from": "gpt", "value": "I speak first."}]},  # a bad turn order
        {"conversations": [{"from": "human", "value": "Plan a trip"}, {"from": "gpt", "value": "To [Your City]?"}],
         "source_url": "http://x"},
    ]
    messages = [
        {"messages": [{"role": "user", "content": "<image>What is it?"}, {"role": "assistant", "content": "A cat."}],
         "images": ["cat.jpg"]},  # multimodal
        {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "  4  "}],
         "id_extra": 7},
        {"messages": [{"role": "user", "content": "<video> Show the tag"}, {"role": "assistant", "content": "<b>"}]},
    ]
    dpo = [
        {"prompt": "Greet Ada.", "chosen": "Hello, Ada!", "rejected": "Hello, {{name}}!"},
        {"prompt": "Greet Bo.", "chosen": "Hi Bo.", "rejected": "Go away."},
        {"prompt": "Greet Cy.", "chosen": "", "rejected": "Hey."},  # an empty chosen answer
    ]
    examples = []
    for name, made in (("a.jsonl", alpaca), ("s.jsonl", sharegpt), ("m.jsonl", messages), ("p.jsonl", dpo)):
        examples += read_source(SourceConfig(path=_write(folder, name, made)))[0]
    return examples


def runs(tmp_path, **config):
    """(survivors, record, rejected lines) of the whole-list run and of two streamed runs."""
    return three_runs(lambda: Validate(Validate.Config(**config)), rows(tmp_path / "data"), tmp_path)


@pytest.mark.parametrize("placeholder_action", ["drop_input", "reject"])
def test_streamed_validate_equals_whole_list_run(placeholder_action, tmp_path):
    """Batches of 3 in one process and batches of 2 over two workers give the same rows, rejects and findings."""
    results = runs(tmp_path, max_chars=300, placeholder_action=placeholder_action)
    assert_same(results)
    kept, record, rejected = results[0]
    f = record.findings
    reasons = {line["reason"] for line in rejected}
    assert {"missing_field", "malformed_json", "special_token_in_text", "too_long",
            "multimodal_unsupported"} <= reasons
    assert len(kept) + len(rejected) == record.rows_in
    assert f["ignored_columns"] == {"category": 22, "source_url": 1, "id_extra": 1}
    assert f["ignored_turn_keys"] and f["multimodal"]["rows"] == 1
    assert f["special_tokens_from"] == "built-in list of common control strings"
    assert f["fixups"]["stripped_whitespace"] == (1 if placeholder_action == "reject" else 2)
    assert f["media_token_rows"] == 2 and f["profile"]["placeholders"]["rows"] == 3
    assert f["review_total"] == 5 and {item["kind"] for item in f["review"]} == {"media_token", "placeholder"}
    assert any("Say hello." in sentence for sentence in f["warnings"])  # the near-constant prompt
    if placeholder_action == "reject":
        assert "placeholder_input" in reasons
    else:
        assert f["fixups"]["dropped_placeholder_input"] == 1


def test_streamed_validate_sets_ignored_columns_for_later_stages(tmp_path):
    """The driver's context gets the ignored columns of every worker's rows (split names them for group_by)."""
    examples = rows(tmp_path / "data")
    ctx = StageContext("validate", tmp_path / "rejected", extra={"tokenizer": None})
    Engine([StageRun(Validate(), ctx)], tmp_path / "spill", batch_size=2, workers=2).run(examples, lambda batch: None)
    assert ctx.extra["ignored_columns"] == {"category": 22, "source_url": 1, "id_extra": 1}


def test_validate_accumulator_holds_hashes_not_rows(tmp_path):
    """A worker's pickled tally of a batch is small, and the driver's tally after 3,000 rows holds a few
    hashes per row: far less than the rows' text."""
    stage = Validate()
    ctx = StageContext("validate", None)
    stage.setup(ctx)
    long = "word " * 200  # 1,000 characters per answer
    made = [{"instruction": f"Question {i}?", "input": "", "output": f"{long}{i}"} for i in range(3000)]
    examples = read_source(SourceConfig(path=_write(tmp_path, "big.jsonl", made)))[0]
    state = stage.open(ctx)
    for start in range(0, len(examples), 500):
        stage.process_batch(examples[start : start + 500], state, ctx)
    size = len(pickle.dumps(state))
    text = sum(len(row["output"]) + len(row["instruction"]) for row in made)
    assert size < text / 10 and size / len(made) < 200  # hashes: 8 bytes a row per field, role and prompt
    ctx.buffer = []  # a worker's tally keeps clipped events for its batch only
    part = stage.open(ctx)
    stage.process_batch(examples[:500], part, ctx)
    assert len(pickle.dumps(part)) < 500 * 1000 / 2


def test_validate_findings_are_typed():
    """A renamed or missing finding is an error, not a silent gap on the card."""
    with pytest.raises(ValidationError):
        Validate.Findings.model_validate({"fixups": {}, "formats": {}})
    with pytest.raises(ValidationError):
        Validate.Findings.model_validate({"fixups": {}, "formats": {}, "ignored_columns": {}, "ignored_turn_keys": {},
                                          "profile": {}, "media_token_rows": 0, "warnings": [], "renamed": 1})


@pytest.mark.parametrize("workers", [1, 2])
def test_on_error_fail_stops_at_the_first_bad_row_in_any_process(workers, tmp_path):
    """`on_error: fail` names the first bad row in input order, also when a worker process found it."""
    examples = rows(tmp_path / "data")
    with pytest.raises(DataError, match=r"a\.jsonl:26: field output"):
        run_streamed(Validate(Validate.Config(on_error="fail")), examples, tmp_path / "run", batch_size=2,
                     workers=workers)


def test_streamed_profile_keeps_a_late_majority_value_and_the_field_cap(tmp_path):
    """The profile's corner cases merge exactly: a value in most rows that first appears after 300 distinct ones
    (its text comes from the majority vote, not the first 256 texts), more scalar columns than max_fields (which
    ones are profiled depends on first appearance), and KTO labels."""
    made = [{"prompt": f"Ask {i}", "completion": f"Answer {i}", "label": i % 3 > 0, **{f"c{i % 20}": i}}
            for i in range(300)]
    made += [{"prompt": "Same question", "completion": f"Reply {i}", "label": True, "late": "x"} for i in range(400)]
    examples = read_source(SourceConfig(path=_write(tmp_path, "k.jsonl", made)))[0]
    whole = run_whole(Validate(), examples, tmp_path / "whole")
    streamed = run_streamed(Validate(), examples, tmp_path / "w2", batch_size=50, workers=2)
    assert_same([whole, streamed])
    profile = whole[1].findings["profile"]
    assert profile["fields"]["prompt"]["top_value"] == "Same question" and profile["fields"]["prompt"]["distinct"] == 301
    assert profile["not_profiled"] == {f"c{i}": "skipped" for i in range(13, 20)} | {"late": "skipped"}
    assert profile["kto_labels"]["true"] == 600
