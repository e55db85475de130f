"""The data commands through the CLI: the fitness verdict and its exit code, `card show|diff`, audit's
--columns/--stages/--config.

Run: .venv/bin/python -m pytest -q tests/test_data_cli.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from tunesmith.artifacts import read_card
from tunesmith.cli import main

WORDS = "river stone cloud maple lantern copper meadow harbor violet ember".split()
FAST_STAGES = [{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "split", "seed": 0}]


def _text(i: int) -> str:
    return f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} {WORDS[(i // 100) % 10]} item {i}"


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def alpaca(n: int, empty_answers: int = 0) -> list[dict]:
    """n alpaca rows; the first `empty_answers` have an empty output, which validate rejects."""
    return [{"instruction": f"Describe {_text(i)}.", "output": "" if i < empty_answers else f"It is {_text(i)}."}
            for i in range(n)]


def curate_config(tmp_path: Path, source: Path, tokenizer: Path, stages=FAST_STAGES, **extra) -> Path:
    config = {"name": "d", "output_dir": str(tmp_path / "out"), "tokenizer": str(tokenizer),
              "sources": [{"path": str(source)}], "stages": stages, **extra}
    path = tmp_path / f"curate-{len(list(tmp_path.glob('curate-*')))}.yaml"
    path.write_text(json.dumps(config))
    return path


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_audit_of_a_file_whose_rows_are_all_rejected_exits_3_with_the_verdict(tmp_path, tiny_tokenizer_dir):
    """The issue's case in a real process: 300 of 300 rows rejected is exit 3 and says why as its last line."""
    source = write_rows(tmp_path / "bad.jsonl", alpaca(300, empty_answers=300))
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", "audit", str(source), "--out", str(tmp_path / "a"),
                           "--tokenizer", str(tiny_tokenizer_dir), "--stages", "validate"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr
    assert _last_line(done.stderr).startswith("Not fit to train on: no usable row remains (300 of 300 input rows "
                                              "rejected (100%): validate empty_turn 300)")
    assert done.stdout.strip().endswith("report.html")  # the audit is still written, to be looked at
    verdict = read_card(tmp_path / "a").verdict
    assert verdict["fit"] is False and verdict["usable_rows"] == 0


def test_curate_of_a_file_whose_rows_are_all_rejected_exits_3_with_the_verdict(tmp_path, tiny_tokenizer_dir, capsys):
    """curate ends with the same verdict after the failed gates, and writes no version."""
    source = write_rows(tmp_path / "bad.jsonl", alpaca(300, empty_answers=300))
    assert main(["curate", str(curate_config(tmp_path, source, tiny_tokenizer_dir))]) == 3
    assert _last_line(capsys.readouterr().err).startswith("Not fit to train on: no usable row remains")
    assert not list((tmp_path / "out" / "d").glob("v*"))


def test_more_rejected_than_the_limit_is_unfit(tmp_path, tiny_tokenizer_dir, capsys):
    """60 of 100 rows rejected is above the default gates.max_rejected_rate of 50%: exit 3, naming the limit."""
    source = write_rows(tmp_path / "half.jsonl", alpaca(100, empty_answers=60))
    assert main(["curate", str(curate_config(tmp_path, source, tiny_tokenizer_dir))]) == 3
    last = _last_line(capsys.readouterr().err)
    assert last.startswith("Not fit to train on: 60 of 100 input rows rejected (60%)")
    assert "gates.max_rejected_rate" in last


def test_fit_data_says_so_and_stores_the_verdict(tmp_path, tiny_tokenizer_dir, capsys):
    """Small clean data passes with exit 0; the verdict on the card says it is small and why that matters."""
    source = write_rows(tmp_path / "ok.jsonl", alpaca(60, empty_answers=3))
    assert main(["curate", str(curate_config(tmp_path, source, tiny_tokenizer_dir))]) == 0
    assert _last_line(capsys.readouterr().err).startswith("Fit to train on, but small:")
    verdict = read_card(tmp_path / "out" / "d" / "v1").verdict
    assert verdict["fit"] and verdict["small"] and verdict["rejected_rows"] == 3
    assert verdict["top_reasons"] == [["validate empty_turn", 3]]


def test_card_show_prints_to_stdout_and_card_diff_lists_config_changes(tmp_path, tiny_tokenizer_dir, capsys):
    """`card show` output can be piped (stdout); `card diff` names each changed config key, old -> new."""
    source = write_rows(tmp_path / "ok.jsonl", alpaca(40))
    assert main(["curate", str(curate_config(tmp_path, source, tiny_tokenizer_dir))]) == 0
    changed = [*FAST_STAGES[:2], {"stage": "split", "seed": 7}]
    config = curate_config(tmp_path, source, tiny_tokenizer_dir, stages=changed, gates={"min_rows": 2})
    assert main(["curate", str(config)]) == 0
    capsys.readouterr()
    v1, v2 = tmp_path / "out" / "d" / "v1", tmp_path / "out" / "d" / "v2"
    assert main(["card", "show", str(v1)]) == 0
    shown = capsys.readouterr()
    assert "d v1  fingerprint" in shown.out and "exact_dedup" in shown.out and "train:" in shown.out
    assert "Fit to train on" in shown.out and shown.err == ""
    assert main(["card", "diff", str(v1), str(v2)]) == 0
    out = capsys.readouterr().out
    assert "config changed: yes" in out
    assert "  stages[2].seed: 0 -> 7" in out
    assert "  gates.min_rows: 1 -> 2" in out


def test_audit_columns_map_unknown_column_names(tmp_path, tiny_tokenizer_dir, capsys):
    """`--columns question=instruction answer=output` reads a file whose columns no format names."""
    rows = [{"question": f"Describe {_text(i)}.", "answer": f"It is {_text(i)}."} for i in range(30)]
    source = write_rows(tmp_path / "qa.jsonl", rows)
    base = ["audit", str(source), "--tokenizer", str(tiny_tokenizer_dir), "--stages", "exact_dedup"]
    assert main([*base, "--out", str(tmp_path / "no")]) == 2  # without the mapping the format is unknown
    assert main([*base, "--out", str(tmp_path / "yes"), "--columns", "question=instruction", "answer=output"]) == 0
    card = read_card(tmp_path / "yes")
    assert card.splits["all"].rows == 30 and card.config["sources"][0]["columns"] == {
        "question": "instruction", "answer": "output"}
    assert main([*base, "--out", str(tmp_path / "bad"), "--columns", "question"]) == 2
    assert "--columns 'question': give INPUT_COLUMN=FORMAT_COLUMN" in capsys.readouterr().err


def test_audit_stages_and_config(tmp_path, tiny_tokenizer_dir, capsys):
    """--stages picks the stages (validate first); --config brings a curate config's stage parameters and gates."""
    rows = alpaca(40) + alpaca(10)  # 10 exact duplicates: 20% of the input is rejected
    source = write_rows(tmp_path / "dup.jsonl", rows)
    tokenizer = ["--tokenizer", str(tiny_tokenizer_dir)]
    assert main(["audit", str(source), "--out", str(tmp_path / "a"), *tokenizer, "--stages", "exact_dedup,pii"]) == 0
    assert [s.name for s in read_card(tmp_path / "a").stages] == ["validate", "exact_dedup", "pii"]
    config = tmp_path / "strict.yaml"
    config.write_text(json.dumps({"sources": [{"path": "elsewhere.jsonl"}], "gates": {"max_rejected_rate": 0.1},
                                  "stages": [{"stage": "validate", "max_chars": 5000}, {"stage": "exact_dedup"}]}))
    capsys.readouterr()
    assert main(["audit", str(source), "--out", str(tmp_path / "b"), *tokenizer, "--config", str(config)]) == 3
    assert "more than the 10% that gates.max_rejected_rate allows" in _last_line(capsys.readouterr().err)
    card = read_card(tmp_path / "b")
    assert [s.name for s in card.stages] == ["validate", "exact_dedup"]
    assert card.config["stages"][0]["max_chars"] == 5000
    assert card.config["sources"][0]["path"] == str(source)  # the audited file, not the config's sources
    assert main(["audit", str(source), "--out", str(tmp_path / "c"), *tokenizer, "--stages", "exact_dedupe"]) == 2
    assert "did you mean 'exact_dedup'" in capsys.readouterr().err
