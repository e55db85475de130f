"""The data commands through the CLI: the fitness verdict and its exit code, `card show|diff`, audit's
--columns/--keep-columns/--stages/--config and --help.

Run: .venv/bin/python -m pytest -q tests/test_data_cli.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from tunesmith.artifacts import read_card
from tunesmith.card_diff import config_changes
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
    assert "  stages.split.seed: 0 -> 7" in out  # the override form: stages.<stage>.<key>
    assert "  gates.min_rows: 1 -> 2" in out
    config_part, stats_part = out.split("statistics changed:")
    assert "rows." not in config_part and "stages." not in stats_part  # statistics under their own heading


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


def test_card_show_of_an_unfit_but_intact_audit_exits_0_and_shows_why(tmp_path, tiny_tokenizer_dir, capsys):
    """A failed max_rejected_rate gate is the card's verdict, not damage: `card show` prints it and exits 0;
    a damaged card still exits 2."""
    source = write_rows(tmp_path / "half.jsonl", alpaca(20, empty_answers=12))
    tokenizer = ["--tokenizer", str(tiny_tokenizer_dir)]
    assert main(["audit", str(source), "--out", str(tmp_path / "a"), *tokenizer, "--stages", "validate"]) == 3
    capsys.readouterr()
    assert main(["card", "show", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr()
    assert "quality gate max_rejected_rate failed" in shown.out and "Not fit to train on" in shown.out
    assert shown.err == ""
    (tmp_path / "a" / "all.jsonl").write_text("")  # now the card disagrees with its split file
    assert main(["card", "show", str(tmp_path / "a")]) == 2


def test_card_show_piped_does_not_wrap_the_fingerprint_line(tmp_path, tiny_tokenizer_dir):
    """Off a terminal (a pipe, COLUMNS unset) the name, full fingerprint and date stay on one line."""
    source = write_rows(tmp_path / "ok.jsonl", alpaca(20))
    assert main(["curate", str(curate_config(tmp_path, source, tiny_tokenizer_dir))]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run([sys.executable, "-m", "tunesmith.cli", "card", "show", str(tmp_path / "out" / "d" / "v1")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    fingerprint = read_card(tmp_path / "out" / "d" / "v1").fingerprint
    assert first.startswith(f"d v1  fingerprint {fingerprint}  created ")
    assert len(first) > 80


def _curate_rows(tmp_path, tokenizer, rows, name):
    source = write_rows(tmp_path / f"{name}.jsonl", rows)
    assert main(["curate", str(curate_config(tmp_path, source, tokenizer))]) == 0
    return sorted((tmp_path / "out" / "d").glob("v*"))[-1]


def test_card_diff_sees_a_changed_rejected_answer_and_a_flipped_kto_label(tmp_path, tiny_tokenizer_dir, capsys):
    """Preference rows differing only in `rejected`, KTO rows only in `label`: each change is a row removed
    and one added (the hash covers messages, rejected, label and tools)."""
    pref = [{"prompt": f"Describe {_text(i)}.", "chosen": f"It is {_text(i)}.", "rejected": f"No idea {i}."}
            for i in range(12)]
    a = _curate_rows(tmp_path, tiny_tokenizer_dir, pref, "pref_a")
    pref[3] = {**pref[3], "rejected": "A different wrong answer."}
    b = _curate_rows(tmp_path, tiny_tokenizer_dir, pref, "pref_b")
    capsys.readouterr()
    assert main(["card", "diff", str(a), str(b)]) == 0
    assert "rows added: 1  removed: 1" in capsys.readouterr().out
    kto = [{"prompt": f"Describe {_text(i)}.", "completion": f"It is {_text(i)}.", "label": i % 2 == 0}
           for i in range(12)]
    c = _curate_rows(tmp_path, tiny_tokenizer_dir, kto, "kto_a")
    kto[5] = {**kto[5], "label": not kto[5]["label"]}
    d = _curate_rows(tmp_path, tiny_tokenizer_dir, kto, "kto_b")
    capsys.readouterr()
    assert main(["card", "diff", str(c), str(d)]) == 0
    assert "rows added: 1  removed: 1" in capsys.readouterr().out


def test_config_changes_name_stages_by_name_and_see_order_and_added_stages():
    """Stage keys come out as stages.<name>.<key>; a reorder and an added stage are reported, not hidden."""
    old = {"stages": [{"stage": "validate"}, {"stage": "near_dedup", "threshold": 0.8}, {"stage": "split"}]}
    new = {"stages": [{"stage": "validate"}, {"stage": "split"}, {"stage": "near_dedup", "threshold": 0.7},
                      {"stage": "pii"}]}
    changes = {key: (a, b) for key, a, b in config_changes(old, new)}
    assert changes["stages.near_dedup.threshold"] == (0.8, 0.7)
    assert changes["stages (order)"] == (["validate", "near_dedup", "split"], ["validate", "split", "near_dedup"])
    assert changes["stages.pii"][1] == {"stage": "pii"} and repr(changes["stages.pii"][0]) == "(absent)"
    twice = {"stages": [{"stage": "pii"}, {"stage": "pii", "x": 1}]}
    assert [key for key, _, _ in config_changes(twice, {"stages": [{"stage": "pii"}, {"stage": "pii", "x": 2}]})] \
        == ["stages[1].x"]  # a stage named twice cannot be addressed by name: by position instead


def test_audit_help_lists_every_format(capsys):
    """`audit --help` names each format of sources.FORMATS (text, preference, kto ... included)."""
    from tunesmith.curate.sources import FORMATS

    try:
        code = main(["audit", "--help"])
    except SystemExit as done:
        code = done.code
    assert code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert all(f" {fmt} |" in out for fmt in FORMATS)


def test_audit_refuses_two_renames_onto_one_column(tmp_path, tiny_tokenizer_dir, capsys):
    """--columns question=prompt answer=prompt: one line naming both, exit 2, before anything is read."""
    source = write_rows(tmp_path / "qa.jsonl", [{"question": "Q?", "answer": "A."}])
    assert main(["audit", str(source), "--out", str(tmp_path / "a"), "--tokenizer", str(tiny_tokenizer_dir),
                 "--columns", "question=prompt", "answer=prompt"]) == 2
    err = capsys.readouterr().err
    assert "--columns: " in err and "renames 'question' and 'answer' both to 'prompt'" in err
    assert not (tmp_path / "a").exists()


def test_audit_config_with_a_misspelled_top_level_key_is_refused(tmp_path, tiny_tokenizer_dir, capsys):
    """`gate:` for `gates:` would run the audit without the gates asked for: exit 2, with did-you-mean."""
    source = write_rows(tmp_path / "ok.jsonl", alpaca(10))
    config = tmp_path / "typo.yaml"
    config.write_text("gate:\n  min_rows: 1000\n")
    assert main(["audit", str(source), "--out", str(tmp_path / "a"), "--tokenizer", str(tiny_tokenizer_dir),
                 "--config", str(config)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "'gate' is not a curate config key; did you mean 'gates'?" in err


def test_audit_keep_columns_carries_a_column_instead_of_ignoring_it(tmp_path, tiny_tokenizer_dir):
    """--keep-columns topic puts `topic` on each kept row as meta, as the ignored-columns warning advises."""
    rows = [{**row, "topic": f"t{i % 3}"} for i, row in enumerate(alpaca(12))]
    source = write_rows(tmp_path / "topics.jsonl", rows)
    assert main(["audit", str(source), "--out", str(tmp_path / "a"), "--tokenizer", str(tiny_tokenizer_dir),
                 "--stages", "validate", "--keep-columns", "topic"]) == 0
    kept = [json.loads(line) for line in (tmp_path / "a" / "all.jsonl").read_text().splitlines()]
    assert len(kept) == 12 and all(row["meta"]["topic"] == f"t{int(row['id'].split(':')[1]) % 3}" for row in kept)
    assert read_card(tmp_path / "a").config["sources"][0]["keep_columns"] == ["topic"]
