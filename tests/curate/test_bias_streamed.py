"""bias_audit as a row stage: the streaming engine (small batches, forked workers) gives the same rows and
findings as one pass over the list, with id lists and review items cut to their first N in row order, and the
language sample is the same rows whatever the batching or the row order.

Run: .venv/bin/python -m pytest tests/curate/test_bias_streamed.py -q
"""

import random

from tests.curate.engine_helpers import comparable, run_streamed, run_whole
from tests.curate.rows import chat_row
from tunesmith.curate.bias import MAX_REVIEW, BiasAudit

CONFIG = {"language_sample": 9, "min_pronoun_count": 3}
TEXTS = [
    ("He said he would call him later.", "She agreed with his plan."),
    ("Immigrants are lazy and dangerous, they say.", "That stereotype is false."),
    ("Women are too emotional and weak to lead.", "That is a stereotype, not a fact."),
    ("What the hell is this shit?", "Let me explain the error."),
    ("Pouvez-vous m'expliquer pourquoi le ciel est bleu pendant la journée ?", "La lumière est diffusée."),
    ("Kannst du mir bitte erklären, warum der Himmel am Tag blau ist?", "Das Licht wird gestreut."),
    ("Sky 0?", "Ok."),
    ("Can you explain how photosynthesis works in the leaves of plants?", "Plants turn light into energy."),
]


def rows(n: int = 200) -> list:
    return [chat_row(i, *TEXTS[i % len(TEXTS)]) for i in range(n)]


def runs(examples, tmp_path, **config):
    out = []
    for name, run in (("whole", lambda s, f: run_whole(s, examples, f)),
                      ("batch3", lambda s, f: run_streamed(s, examples, f, 3, 1)),
                      ("batch2x2", lambda s, f: run_streamed(s, examples, f, 2, 2))):
        kept, record, lines = run(BiasAudit(BiasAudit.Config(**config)), tmp_path / name)
        out.append(([ex.to_json() for ex in kept], lines, comparable(record)))
    return out


def test_streamed_runs_equal_the_whole_run(tmp_path):
    """Batches of 3 in one process and batches of 2 over two workers keep every row and write the same findings:
    counters summed, the first example ids and review items in row order, the same language sample, warnings."""
    examples = rows()
    whole, *streamed = runs(examples, tmp_path, **CONFIG)
    for other in streamed:
        assert other == whole
    kept, lines, record = whole
    findings = record["findings"]
    assert kept == [ex.to_json() for ex in examples] and lines == []
    assert findings["toxicity"]["rows"] == 25
    assert findings["toxicity"]["example_ids"] == [f"s:{i}" for i in range(3, 80, 8)]
    assert findings["cooccurrence"]["gender"]["example_ids"] == ["s:2", "s:10", "s:18", "s:26", "s:34"]
    assert findings["review_total"] > MAX_REVIEW == len(findings["review"])
    assert [item["id"] for item in findings["review"][:3]] == ["s:1", "s:1", "s:2"]
    assert findings["language_sample_size"] == 9 and findings["language_sample_method"].startswith("the 9 rows")
    assert any(w.startswith("gender:") for w in findings["warnings"])


def test_the_language_sample_is_the_same_rows_in_any_order(tmp_path):
    """The sample is the rows with the smallest seeded id hashes: shuffling the input picks the same rows (same
    language counts), and a sample as big as the data takes every row."""
    examples = rows(40)
    shuffled = random.Random(1).sample(examples, len(examples))
    first = run_whole(BiasAudit(BiasAudit.Config(**CONFIG)), examples, tmp_path / "a")[1].findings
    second = run_streamed(BiasAudit(BiasAudit.Config(**CONFIG)), shuffled, tmp_path / "b", 4, 2)[1].findings
    keys = ("languages", "language_too_short", "language_sample_size", "language_sample_method")
    assert {k: first[k] for k in keys} == {k: second[k] for k in keys}
    everything = run_whole(BiasAudit(BiasAudit.Config(language_sample=100)), examples, tmp_path / "c")[1].findings
    assert everything["language_sample_size"] == 40 and everything["language_too_short"] == 5
    assert everything["languages"] == {"en": 25, "de": 5, "fr": 5}
