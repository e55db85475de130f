"""Property tests: random rows never crash curation and never lose a row.

Random JSONL lines (nested dicts, lists, strings with lone surrogates and control characters, nulls, huge and
non-finite numbers, misspelt roles, rows of every format and of none, raw junk bytes) and random CSV tables
go through the real pipeline. The only exception allowed is SourceError for a file that cannot be read as a
whole (no rows, no detectable format); otherwise every line read is in a split or in rejected/, exactly once.

Run: .venv/bin/python -m pytest -q tests/robustness/test_validate_property.py
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.curate.card import write_splits
from tunesmith.curate.pipeline import read_sources, run_stages
from tunesmith.curate.sources import SourceError

from .corpus import assert_conserved, config, rejected_rows, split_rows

STAGES = [{"stage": "validate", "max_chars": 400, "max_turns": 6}, {"stage": "exact_dedup"}, {"stage": "near_dedup"},
          {"stage": "pii"}, {"stage": "split", "ratios": {"train": 0.5, "test": 0.5}}]
FORMATS = ["auto", "alpaca", "prompt_completion", "messages", "sharegpt"]
KEYS = ["prompt", "completion", "response", "instruction", "input", "output", "system", "messages", "conversations",
        "id", "text"]
ROLES = ["user", "assistant", "system", "human", "gpt", "asistant", "User", "ASSISTANT", "", "bot", "user "]
# any code point, lone surrogates and control characters included (json.dumps escapes them)
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
WORDS = st.lists(st.sampled_from(["the", "cat", "sat", "on", "a", "mat", "ana@example.com", "4111 1111 1111 1111",
                                  " ", "\n", "\u200b", "é", "😀"]), max_size=12).map(" ".join)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | TEXT | WORDS)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=4), max_leaves=12)


@st.composite
def turn(draw) -> dict:
    role_key, text_key = draw(st.sampled_from([("role", "content"), ("from", "value"), ("role", "value")]))
    out = {role_key: draw(st.sampled_from(ROLES) | JSON), text_key: draw(WORDS | JSON)}
    if draw(st.booleans()):
        out.pop(draw(st.sampled_from([role_key, text_key])))
    return out


@st.composite
def row(draw) -> dict:
    """An object shaped like one of the formats (often almost right), or any JSON object."""
    shape = draw(st.sampled_from(["pc", "alpaca", "messages", "sharegpt", "junk"]))
    value = WORDS | JSON
    if shape == "pc":
        out = {"prompt": draw(value), draw(st.sampled_from(["completion", "response"])): draw(value)}
    elif shape == "alpaca":
        out = {"instruction": draw(value), "input": draw(st.sampled_from(["", "<noinput>", "n/a"]) | value),
               "output": draw(value)}
    elif shape in ("messages", "sharegpt"):
        key = "messages" if shape == "messages" else "conversations"
        out = {key: draw(st.lists(turn(), max_size=8) | JSON)}
    else:
        return draw(st.dictionaries(st.sampled_from(KEYS) | TEXT, JSON, max_size=5))
    extra = draw(st.dictionaries(st.sampled_from(KEYS) | TEXT, JSON, max_size=2))
    return {**extra, **out} if draw(st.booleans()) else {**out, **extra}


def line(value) -> bytes:
    if isinstance(value, bytes):
        return value.replace(b"\n", b" ").replace(b"\r", b" ")  # raw junk, one line of it
    return json.dumps(value).encode("utf-8")  # json.dumps never writes a raw newline


LINES = st.lists(row() | JSON | st.binary(max_size=40) | st.just(b""), min_size=1, max_size=25)


def curate_file(path: Path, fmt: str) -> tuple[list[dict], list[dict]] | None:
    """Read, run the stages and write the splits (the pipeline minus the card, which costs 4x the rest).

    Returns the kept and rejected rows, or None when the file as a whole is refused with a SourceError.
    """
    work = Path(tempfile.mkdtemp(dir=path.parent))
    cfg = config(work, [{"path": str(path), "format": fmt}], STAGES)
    try:
        examples, sources = read_sources(cfg)
    except SourceError as err:
        assert str(path) in str(err)  # a file-level refusal names the file
        return None
    survivors, stages, _ = run_stages(cfg, examples, work)
    kept, rejected = split_rows(work, write_splits(survivors, work)), rejected_rows(work)
    assert_conserved({path.stem: sources[0].rows}, stages, kept, rejected)
    return kept, rejected


SETTINGS = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(lines=LINES, fmt=st.sampled_from(FORMATS))
def test_random_jsonl_never_crashes_and_conserves_rows(lines, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.jsonl"
        data = b"\n".join(line(v) for v in lines)
        path.write_bytes(data)
        result = curate_file(path, fmt)
        if result is None:
            return
        kept, rejected = result
        assert len(kept) + len(rejected) == sum(1 for raw in data.splitlines() if raw.strip())
        for r in rejected:
            assert r["where"].startswith(f"{path}:")  # JSONL rows are named by their line


CELLS = st.text(st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=20) | WORDS
HEADERS = st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True)


@SETTINGS
@given(header=HEADERS, rows=st.lists(st.lists(CELLS, max_size=5), min_size=1, max_size=12),
       junk=st.lists(st.text(max_size=20), max_size=3), fmt=st.sampled_from(FORMATS))
def test_random_csv_never_crashes_and_conserves_rows(header, rows, junk, fmt):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue() + "\n".join(junk)  # hand-written junk lines: stray quotes, wrong cell counts
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.csv"
        path.write_text(text, encoding="utf-8")
        curate_file(path, fmt)
