"""`tunesmith score`: printed digits equal sacrebleu's and rouge_score's; bad files exit 2 naming file:line.

Runs the CLI in-process on files written to tmp_path. Offline, about a second:
    pytest tests/evaluate/test_score_cli.py -q
"""

from __future__ import annotations

import json
import re

import pytest
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU, CHRF

from tunesmith.cli import main
from tunesmith.evaluate.score_files import read_texts, score_files

PREDICTIONS = ["The cat sat on the mat.", "It is raining heavily in Paris today.", "Water boils at 100 degrees."]
REFS_A = ["The cat is sitting on the mat.", "Today it rains heavily in Paris.", "Water boils at 100 degrees C."]
REFS_B = ["A cat sat on a mat.", "Heavy rain in Paris today.", "At sea level, water boils at 100 degrees."]


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "pred.txt").write_text("\n".join(PREDICTIONS) + "\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("\r\n".join(REFS_A) + "\r\n", encoding="utf-8")  # CRLF endings are fine
    lines = [json.dumps({"reference": REFS_B[0]}), json.dumps({"text": REFS_B[1]}), json.dumps(REFS_B[2])]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def _table_values(out: str) -> dict[str, str]:
    """metric -> printed value, from the rows of the rich table."""
    rows = (re.match(r"\W*(\w+)\s*│\s*([\d.]+)\s*│", line) for line in out.splitlines())
    return {m.group(1): m.group(2) for m in rows if m}


def test_table_digits_equal_sacrebleu_and_rouge_score(files, capsys):
    code = main(
        [
            "score",
            "--predictions",
            str(files / "pred.txt"),
            "--references",
            str(files / "a.txt"),
            "--references",
            str(files / "b.jsonl"),
            "--metrics",
            "bleu,chrf,rouge1,rougeL",
        ]
    )
    assert code == 0
    printed = _table_values(capsys.readouterr().out)
    assert printed["bleu"] == BLEU().corpus_score(PREDICTIONS, [REFS_A, REFS_B]).format(score_only=True)
    assert printed["chrf"] == CHRF().corpus_score(PREDICTIONS, [REFS_A, REFS_B]).format(score_only=True)
    scorer = RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    for name in ("rouge1", "rougeL"):
        mean = sum(scorer.score_multi([a, b], p)[name].fmeasure for p, a, b in zip(PREDICTIONS, REFS_A, REFS_B)) / 3
        assert printed[name] == f"{100 * mean:.2f}"
    assert list(printed) == ["bleu", "chrf", "rouge1", "rougeL"]


def test_json_output_holds_metric_values(files, capsys):
    code = main(["score", "--predictions", str(files / "pred.txt"), "--references", str(files / "a.txt"), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"]
    assert data["bleu"]["value"] == BLEU().corpus_score(PREDICTIONS, [REFS_A]).score
    assert data["bleu"]["version"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert set(data["chrf"]) == {"name", "value", "higher_is_better", "version", "description"}


def test_jsonl_predictions_may_span_lines(tmp_path):
    rows = [{"prediction": "line one\nline two"}, {"text": "plain"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert read_texts(tmp_path / "p.jsonl", "prediction") == ["line one\nline two", "plain"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"fine"\n{"answer": "x"}\n', "bad.jsonl:2: no 'prediction' or 'text' field (fields: answer)"),
        ('"fine"\n"ok"\n{not json\n', "bad.jsonl:3: not valid JSON"),
        ('"fine"\n[1, 2]\n', "bad.jsonl:2: expected a JSON string or an object"),
        ('{"prediction": 3}\n', "bad.jsonl:1: field 'prediction' is a JSON int, not a string"),
        ('"fine"\n\n"ok"\n', "bad.jsonl:2: empty line"),
    ],
)
def test_bad_jsonl_exits_2_naming_file_and_line(files, capsys, content, message):
    (files / "bad.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        score_files(files / "bad.jsonl", [files / "a.txt"])
    assert main(["score", "--predictions", str(files / "bad.jsonl"), "--references", str(files / "a.txt")]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    assert "".join(message.split()) in "".join(captured.err.split())  # rich may wrap the log line


def test_mismatched_line_counts_and_bad_bytes_exit_2(files, capsys):
    (files / "short.txt").write_text("one line\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pred\.txt has 3 lines but .*short\.txt has 1"):
        score_files(files / "pred.txt", [files / "a.txt", files / "short.txt"])
    (files / "latin1.txt").write_bytes("ok\nok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt:3: not UTF-8"):
        score_files(files / "latin1.txt", [files / "a.txt"])
    assert main(["score", "--predictions", str(files / "pred.txt"), "--references", str(files / "short.txt")]) == 2
    assert (
        main(
            [
                "score",
                "--predictions",
                str(files / "pred.txt"),
                "--references",
                str(files / "a.txt"),
                "--metrics",
                "blue",
            ]
        )
        == 2
    )
    err = "".join(capsys.readouterr().err.split())
    assert "didyoumean'bleu'" in err and "Traceback" not in err
    assert main(["score", "--predictions", str(files / "missing.txt"), "--references", str(files / "a.txt")]) == 2
