"""End-to-end curation on the fixture file with the tiny tokenizer: card, versions, gates, diff, audit, CLI.

Run: .venv/bin/python -m pytest tests/curate/test_pipeline.py -q
"""

import json
from pathlib import Path

import pytest

from tunesmith.artifacts import read_card
from tunesmith.card_integrity import split_rows
from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.diff import diff_cards, verify_card
from tunesmith.curate.pipeline import GateFailure, run_curate

FIXTURE = Path(__file__).parent.parent / "fixtures" / "sft_tiny.jsonl"


def write_config(tmp_path: Path, tokenizer: Path, **extra) -> Path:
    config = {
        "name": "tiny",
        "output_dir": str(tmp_path / "out"),
        "tokenizer": str(tokenizer),
        "sources": [{"path": str(FIXTURE), "keep_columns": ["category"]}],
        "stages": [
            {"stage": "validate", "max_chars": 5000},
            {"stage": "exact_dedup"},
            {"stage": "near_dedup"},
            {"stage": "pii", "action": "mask", "allow_reserved": False},  # the fixture plants example.com PII
            {"stage": "bias_audit"},
            {"stage": "token_stats", "max_seq_len": 256},
            {"stage": "split", "ratios": {"train": 0.7, "validation": 0.15, "test": 0.15}},
            {"stage": "contamination"},
        ],
        "gates": {"min_rows": 5},
        **extra,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "curate.yaml"
    path.write_text(json.dumps(config))  # JSON is valid YAML
    return path


def curate(tmp_path, tokenizer, *overrides):
    return run_curate(load_config(CurateConfig, write_config(tmp_path, tokenizer), list(overrides)))


def test_curate_writes_a_complete_version(tmp_path, tiny_tokenizer_dir):
    result = curate(tmp_path, tiny_tokenizer_dir)
    version = result.directory
    assert version.name == "v1"
    assert {p.name for p in version.iterdir()} == {
        "card.json", "README.md", "report.html", "config.resolved.yaml", "rejected",
        "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet", "test-00000-of-00001.parquet",
    }  # Parquet shards by default; 21 rows fit in one shard per split
    card = read_card(version)
    by_name = {s.name: s for s in card.stages}
    for stage in card.stages:
        assert stage.rows_in == stage.rows_out + stage.rows_rejected
    assert card.stages[0].rows_in == 27
    reasons = by_name["validate"].findings["rejected_by_reason"]
    assert reasons == {"malformed_json": 1, "empty_turn": 1, "too_long": 1, "roles_out_of_order": 1}
    assert by_name["exact_dedup"].rows_rejected == 1
    assert by_name["near_dedup"].rows_rejected == 1
    assert by_name["pii"].findings["rows_with_pii"] == 1
    assert sum(s.rows for s in card.splits.values()) == by_name["contamination"].rows_out
    # every rejected row is written, with its reason
    rejected = [json.loads(line) for f in (version / "rejected").glob("*.jsonl") for line in f.open()]
    assert len(rejected) == sum(s.rows_rejected for s in card.stages)
    assert all(r["reason"] and r["where"] for r in rejected)
    malformed = next(r for r in rejected if r["reason"] == "malformed_json")
    assert malformed["where"].endswith("sft_tiny.jsonl:8")
    # PII was masked in the written splits (read back as training reads them)
    text = json.dumps([row for name, s in card.splits.items() for row in split_rows(version, s, name)])
    assert "ana.silva@example.com" not in text and "[EMAIL]" in text
    readme = (version / "README.md").read_text()
    assert readme.startswith("---\n") and "NEEDS INPUT" in readme and card.fingerprint in readme
    assert card.tokenizer.max_seq_len == 256


def test_same_inputs_same_fingerprint_and_new_version_on_change(tmp_path, tiny_tokenizer_dir):
    first = curate(tmp_path, tiny_tokenizer_dir)
    again = curate(tmp_path, tiny_tokenizer_dir)
    assert again.reused and again.card.fingerprint == first.card.fingerprint
    assert again.directory == first.directory
    changed = curate(tmp_path, tiny_tokenizer_dir, "stages.split.seed=5")
    assert not changed.reused and changed.directory.name == "v2"
    assert changed.card.fingerprint != first.card.fingerprint
    diff = diff_cards(first.directory, changed.directory)
    assert diff["rows_added"] == 0 and diff["rows_removed"] == 0 and diff["config_changed"]
    assert diff["rows_changed_split"] > 0


def test_fingerprint_is_identical_across_separate_output_dirs(tmp_path, tiny_tokenizer_dir):
    a = curate(tmp_path / "a", tiny_tokenizer_dir)
    b = curate(tmp_path / "b", tiny_tokenizer_dir)
    assert a.card.fingerprint == b.card.fingerprint
    for name, split in a.card.splits.items():
        ours, theirs = split.parts(), b.card.splits[name].parts()
        assert [p.file for p in ours] == [p.file for p in theirs]
        for part in ours:
            assert (a.directory / part.file).read_bytes() == (b.directory / part.file).read_bytes()


def test_failed_gate_writes_no_card(tmp_path, tiny_tokenizer_dir):
    with pytest.raises(GateFailure) as failure:
        curate(tmp_path, tiny_tokenizer_dir, "gates.min_rows=1000", "gates.max_pii_rows=0")
    failed = {g.name for g in failure.value.gates if not g.passed}
    assert failed == {"min_rows", "max_pii_rows"}
    assert not list((tmp_path / "out" / "tiny").glob("*/card.json"))
    assert (failure.value.kept_at / "rejected" / "validate.jsonl").exists()


def test_card_validate_detects_a_modified_split(tmp_path, tiny_tokenizer_dir):
    result = curate(tmp_path, tiny_tokenizer_dir)
    assert verify_card(result.directory / "card.json") == []
    shard = result.directory / "train-00000-of-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the shard
    shard.write_bytes(bytes(data))
    problems = verify_card(result.directory)
    assert len(problems) == 1 and shard.name in problems[0] and "sha256" in problems[0]
    assert main(["card", "validate", str(result.directory)]) == 2


def test_card_validate_detects_a_modified_jsonl_split(tmp_path, tiny_tokenizer_dir):
    result = curate(tmp_path, tiny_tokenizer_dir, "split_format=jsonl")
    assert {s.file for s in result.card.splits.values()} == {"train.jsonl", "validation.jsonl", "test.jsonl"}
    assert verify_card(result.directory / "card.json") == []
    with open(result.directory / "train.jsonl", "a") as handle:
        handle.write("{}\n")
    problems = verify_card(result.directory)
    assert len(problems) == 1 and "train.jsonl" in problems[0] and "sha256" in problems[0]
    assert main(["card", "validate", str(result.directory)]) == 2


def test_cli_curate_prints_report_path_and_gate_exit_code(tmp_path, tiny_tokenizer_dir, capsys):
    config = write_config(tmp_path, tiny_tokenizer_dir)
    assert main(["curate", str(config)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].endswith("tiny/v1/report.html") and Path(out[-1]).is_file()
    assert main(["curate", str(config), "gates.min_rows=10000"]) == 3
    assert main(["curate", str(config), "stages.near_dedup.treshold=0.5"]) == 2
    assert main(["card", "show", str(tmp_path / "out" / "tiny" / "v1")]) == 0
    assert main(["card", "diff", str(tmp_path / "out/tiny/v1"), str(tmp_path / "out/tiny/v1")]) == 0
    assert "identical fingerprints" in capsys.readouterr().out


def test_audit_command_writes_card_and_report(tmp_path, tiny_tokenizer_dir, capsys):
    out = tmp_path / "audit"
    code = main(["audit", str(FIXTURE), "--out", str(out), "--tokenizer", str(tiny_tokenizer_dir)])
    assert code == 0
    card = read_card(out)
    assert [s.name for s in card.stages] == ["validate", "exact_dedup", "near_dedup", "pii", "bias_audit",
                                             "token_stats"]
    assert list(card.splits) == ["all"]
    assert [(g.name, g.passed) for g in card.gates] == [("max_rejected_rate", True)]  # the one default audit gate
    assert card.verdict["fit"] is True
    assert (out / "report.html").is_file()
    assert capsys.readouterr().out.strip().endswith("report.html")


def test_report_escapes_injected_markup(tmp_path, tiny_tokenizer_dir):
    source = tmp_path / "evil.jsonl"
    payload = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    rows = [{"messages": [{"role": "user", "content": f"{payload} question {i}"},
                          {"role": "assistant", "content": f"answer {i} {payload}"}]} for i in range(6)]
    rows.append({"messages": [{"role": "user", "content": payload}]})  # rejected: no assistant turn
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    from tunesmith.curate.audit import run_audit

    out = run_audit(source, tmp_path / "audit", tokenizer=str(tiny_tokenizer_dir))
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert" in html


def test_override_reaches_default_stages(tmp_path, tiny_tokenizer_dir):
    path = tmp_path / "minimal.yaml"
    path.write_text(json.dumps({"sources": [{"path": str(FIXTURE)}], "tokenizer": str(tiny_tokenizer_dir)}))
    config = load_config(CurateConfig, path, ["stages.near_dedup.threshold=0.7", "stages.split.seed=3"])
    by_name = {e["stage"]: e for e in config.stages}
    assert by_name["near_dedup"]["threshold"] == 0.7 and by_name["split"]["seed"] == 3
    assert len(config.stages) == 8


def test_pii_drop_keeps_values_out_of_the_card(tmp_path):
    from tunesmith.curate.pii import Pii
    from tunesmith.curate.record import Example, Message
    from tunesmith.curate.stage import StageContext

    row = Example(id="s:0", source="s.jsonl", row=0, line=1,
                  messages=(Message("user", "mail me at ana.silva@example.com"), Message("assistant", "ok")))
    stage = Pii(Pii.Config(action="drop", allow_reserved=False))  # example.com counts here
    kept, record = stage.run([row], StageContext("pii", tmp_path / "rejected"))
    assert kept == [] and record.rows_rejected == 1
    assert "ana.silva@example.com" not in json.dumps(record.findings)
    assert "[EMAIL]" in json.dumps(record.findings["rejected_samples"])
    assert "ana.silva@example.com" in (tmp_path / "rejected" / "pii.jsonl").read_text()  # nothing lost


def test_demo_config_with_the_embedded_tokenizer(tmp_path):
    """The main job's curate step: the bundled demo data, the embedded SmolLM2 tokenizer, gates passing."""
    root = Path(__file__).parents[2]
    config = load_config(CurateConfig, root / "configs" / "curate" / "demo.yaml", [f"output_dir={tmp_path}"])
    config = config.model_copy(update={"sources": [s.model_copy(update={"path": str(root / s.path)})
                                                   for s in config.sources]})
    stages = [dict(e) for e in config.stages]
    stages[-1]["eval_files"] = [str(root / f) for f in stages[-1]["eval_files"]]
    config = config.model_copy(update={"stages": stages})
    result = run_curate(config)
    card = result.card
    by_name = {s.name: s for s in card.stages}
    assert all(g.passed for g in card.gates)
    assert by_name["exact_dedup"].rows_rejected == 40
    assert by_name["near_dedup"].rows_rejected == 30
    assert by_name["contamination"].findings["contaminated_rows"] == 3
    assert by_name["pii"].findings["rows_with_pii"] == 25
    assert card.tokenizer.name == "smollm2-135m-instruct"
    assert by_name["token_stats"].findings["zero_trainable_rows"] == 0
    assert (result.directory / "report.html").is_file()


def test_two_workers_give_the_card_of_one(tmp_path, tiny_tokenizer_dir):
    """Row stages in two forked workers, batches of 4: the same fingerprint and the same findings as one process."""
    two = curate(tmp_path / "two", tiny_tokenizer_dir, "stages.pii.action=report", "workers=2", "batch_size=4")
    one = curate(tmp_path / "one", tiny_tokenizer_dir, "stages.pii.action=report", "workers=1")
    assert two.card.fingerprint == one.card.fingerprint
    for a, b in zip(two.card.stages, one.card.stages):
        assert (a.name, a.rows_in, a.rows_out, a.findings) == (b.name, b.rows_in, b.rows_out, b.findings)
    for name in ("validate", "exact_dedup", "near_dedup"):
        assert ((two.directory / "rejected" / f"{name}.jsonl").read_bytes()
                == (one.directory / "rejected" / f"{name}.jsonl").read_bytes())


def test_a_failing_stage_stops_the_workers(tmp_path, tiny_tokenizer_dir, monkeypatch):
    import multiprocessing

    from tunesmith.curate.split import Split

    monkeypatch.setattr(Split, "mode", "whole")
    monkeypatch.setattr(Split, "process", lambda self, examples, ctx: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        curate(tmp_path, tiny_tokenizer_dir, "workers=2", "batch_size=4")
    assert multiprocessing.active_children() == []
