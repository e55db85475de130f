"""The shipped demo dataset is reproducible from tunesmith.demo and holds exactly the problems PLANTED lists.

Counts are taken by parsing the shipped files, independently of the generator. Offline, about a second:
    pytest tests/test_demo.py -q
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

import pytest

from tunesmith import demo
from tunesmith.demo import ALPACA_FILE, CHAT_FILE, EVAL_FILE, KEYS, PLANTED, generate_demo, main

ASSETS = Path(demo.__file__).parent / "assets" / "demo"
VOCAB = json.loads(demo.VOCAB_PATH.read_text(encoding="utf-8"))


def _lines(name: str) -> list[str]:
    text = (ASSETS / name).read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    return text.split("\n")[:-1]


def _loads(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


@pytest.fixture(scope="module")
def chat_lines() -> list[str]:
    return _lines(CHAT_FILE)


@pytest.fixture(scope="module")
def chat_rows(chat_lines: list[str]) -> list[dict]:
    """Every line that parses to a JSON object (duplicates included)."""
    return [row for row in map(_loads, chat_lines) if isinstance(row, dict)]


def _contents(row: dict, role: str | None = None) -> list[str]:
    return [m["content"] for m in row["messages"] if role is None or m["role"] == role]


def _user(row: dict) -> str:
    return "\n".join(_contents(row, "user"))


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _count_rows(rows: list[dict], pattern: str) -> int:
    return sum(bool(re.search(pattern, _user(row))) for row in rows)


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return total % 10 == 0


def test_regenerating_with_defaults_matches_the_shipped_files(tmp_path: Path) -> None:
    paths = generate_demo(tmp_path)
    assert [p.name for p in paths] == [CHAT_FILE, ALPACA_FILE, EVAL_FILE]
    for path in paths:
        assert path.read_bytes() == (ASSETS / path.name).read_bytes(), path.name


def test_main_prints_only_the_written_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--seed", "3", "--rows", "600"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(tmp_path / name) for name in (CHAT_FILE, ALPACA_FILE, EVAL_FILE)]
    assert (tmp_path / CHAT_FILE).read_bytes() != (ASSETS / CHAT_FILE).read_bytes()


def test_row_counts(chat_lines: list[str]) -> None:
    assert len(chat_lines) == round(1500 * demo.CHAT_SHARE) == 1275
    assert len(_lines(EVAL_FILE)) == demo.EVAL_ROWS == 40
    with open(ASSETS / ALPACA_FILE, encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 1500 - 1275


def test_broken_lines(chat_lines: list[str]) -> None:
    parsed = [_loads(line) for line in chat_lines]
    assert sum(row is None for row in parsed) == PLANTED["malformed_lines"]
    assert sum(row is not None and not isinstance(row, dict) for row in parsed) == PLANTED["non_object_lines"]


def test_exact_duplicates(chat_lines: list[str]) -> None:
    assert len(chat_lines) - len(set(chat_lines)) == PLANTED["exact_duplicates"]


def test_near_duplicates_share_an_answer_and_most_word_5grams(chat_lines: list[str]) -> None:
    by_answer = defaultdict(list)
    for line in set(chat_lines):
        row = _loads(line)
        if isinstance(row, dict) and _contents(row, "assistant") and _contents(row, "assistant")[0].strip():
            by_answer[_contents(row, "assistant")[0]].append(row)
    groups = [rows for rows in by_answer.values() if len(rows) > 1]
    assert len(groups) == PLANTED["near_duplicates"] and all(len(g) == 2 for g in groups)
    for a, b in groups:
        text_a, text_b = "\n".join(_contents(a)), "\n".join(_contents(b))
        assert " ".join(text_a.lower().split()) != " ".join(text_b.lower().split())  # not exact after normalizing
        sa, sb = _shingles(text_a), _shingles(text_b)
        assert len(sa & sb) / len(sa | sb) >= 0.8


def test_pii(chat_rows: list[dict]) -> None:
    emails = _count_rows(chat_rows, r"[\w.+-]+@[\w-]+\.\w+")
    phones = _count_rows(chat_rows, r"\+\d{1,3}(?: \d{2,4}){3}")
    ipv4 = _count_rows(chat_rows, r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
    cards = [m for row in chat_rows for m in re.findall(r"\b(?:\d{4} ){3}\d{4}\b", _user(row))]
    assert (emails, phones, len(cards), ipv4) == tuple(
        PLANTED[k] for k in ("pii_email", "pii_phone", "pii_card", "pii_ipv4")
    )
    assert all(_luhn(card.replace(" ", "")) for card in cards)
    any_pii = r"@|\+\d|(?:\d{4} ){3}\d{4}|(?:\d{1,3}\.){3}\d{1,3}"
    assert _count_rows(chat_rows, any_pii) == PLANTED["pii_rows"] == emails + phones + len(cards) + ipv4


def test_answer_and_role_problems(chat_rows: list[dict]) -> None:
    empty = sum(any(not c.strip() for c in _contents(row, "assistant")) for row in chat_rows)
    missing = sum(not _contents(row, "assistant") for row in chat_rows)
    first_roles = [next(m["role"] for m in row["messages"] if m["role"] != "system") for row in chat_rows]
    assert empty == PLANTED["empty_answers"]
    assert missing == PLANTED["missing_assistant"]
    assert sum(role != "user" for role in first_roles) == PLANTED["roles_out_of_order"]


def test_over_long_and_control_characters(chat_rows: list[dict]) -> None:
    long_rows = sum(any(len(c) > demo.OVER_LONG_CHARS for c in _contents(row)) for row in chat_rows)
    assert long_rows == PLANTED["over_long_rows"]

    def has_control(text: str) -> bool:
        return any(unicodedata.category(c) == "Cc" and c not in "\n\t\r" for c in text)

    assert sum(any(has_control(c) for c in _contents(row)) for row in chat_rows) == PLANTED["control_char_rows"]


def test_identity_terms(chat_rows: list[dict]) -> None:
    terms = rf"\b(?:{'|'.join(VOCAB['identity_terms'])})\b"
    negative = rf"\b(?:{'|'.join(VOCAB['negative_words'])})\b"
    assert _count_rows(chat_rows, terms) == PLANTED["identity_negative_rows"]
    assert _count_rows(chat_rows, f"(?s){terms}.*{negative}") == PLANTED["identity_negative_rows"]
    he = sum(len(re.findall(r"\bhe\b", _user(row), re.I)) for row in chat_rows)
    she = sum(len(re.findall(r"\bshe\b", _user(row), re.I)) for row in chat_rows)
    assert she > 20 and 3.5 <= he / she <= 4.5


def _check_answer(answer: str, prompt: str, category: str) -> None:
    order = json.loads(answer)
    assert tuple(order) == KEYS
    assert json.dumps(order, ensure_ascii=False, separators=(",", ":")) == answer  # compact, one line
    assert order["customer"] in prompt and order["city"] in prompt
    assert isinstance(order["quantity"], int) and 1 <= order["quantity"] <= 12
    assert re.fullmatch(r"2026-\d\d-\d\d", order["deliver_by"])
    assert order["item"] in [singular for singular, _ in VOCAB["items"][category]]
    assert len(answer) < 160 and len(prompt) < 700


def test_every_clean_answer_is_compact_json_with_the_fixed_keys(chat_rows: list[dict]) -> None:
    clean = 0
    for row in chat_rows:
        answers = [a for a in _contents(row, "assistant") if a.strip()]
        if answers and len(_user(row)) <= demo.OVER_LONG_CHARS:
            _check_answer(answers[0], _user(row), row["category"])
            clean += 1
    assert clean > 1000
    assert {row["category"] for row in chat_rows} == set(VOCAB["items"])
    assert 0.2 < sum(row["messages"][0]["role"] == "system" for row in chat_rows) / len(chat_rows) < 0.4


def test_alpaca_csv() -> None:
    with open(ASSETS / ALPACA_FILE, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["instruction", "input", "output", "category"]
        rows = list(reader)
    placeholders = [row for row in rows if row["input"] in VOCAB["placeholders"]]
    assert len(placeholders) == PLANTED["alpaca_placeholder_inputs"]
    for row in rows:
        _check_answer(row["output"], row["instruction"] + "\n" + row["input"], row["category"])


def test_eval_file_overlaps_training_only_where_planted(chat_lines: list[str]) -> None:
    eval_lines = _lines(EVAL_FILE)
    assert len(set(eval_lines) & set(chat_lines)) == PLANTED["eval_overlap"]
    train_answers = {
        a for line in set(chat_lines) if isinstance(r := _loads(line), dict) for a in _contents(r, "assistant")
    }
    fresh = [json.loads(line) for line in eval_lines if line not in set(chat_lines)]
    assert not {_contents(row, "assistant")[0] for row in fresh} & train_answers
    for row in map(json.loads, eval_lines):
        _check_answer(_contents(row, "assistant")[0], _user(row), row["category"])
    with open(ASSETS / ALPACA_FILE, encoding="utf-8", newline="") as handle:
        prompts = [f"{row['instruction']}\n{row['input']}" for row in csv.DictReader(handle)]
    prompts += [_user(row) for row in map(_loads, chat_lines) if isinstance(row, dict)]
    train_13grams = set().union(*(_shingles(p, 13) for p in prompts))
    assert all(not _shingles(_user(row), 13) & train_13grams for row in fresh)  # held out under a 13-gram check
