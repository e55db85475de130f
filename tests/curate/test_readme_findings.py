"""The dataset README shows the verdict, review items, ignored columns and the column profile, escaped.

Run: .venv/bin/python -m pytest -q tests/curate/test_readme_findings.py
"""

import re

from tests.reports.test_audit_report import _card_with_new_findings
from tunesmith.curate.readme import render_readme


def test_readme_lists_verdict_review_items_ignored_columns_and_profile():
    """Each new finding is in the README, as literal text (no HTML or Markdown from the data gets through)."""
    readme = render_readme(_card_with_new_findings())
    assert "**Fitness:** Not fit to train on: &lt;script&gt;" in readme
    assert "Review items (for a person to look at):" in readme
    assert "`validate` `placeholder` at `data/chat.jsonl:4` (assistant): `Dear {{name}}, " in readme
    assert "`validate`: 6 more in `card.json`" in readme
    assert "Columns not read (ignored): `tools` (300 rows), `images` (6 rows)" in readme
    assert "| instruction (field) | 5000 | 0.0002 | 1 | `Translate " in readme
    outside_code = re.sub(r"`[^`\n]*`", "", readme)
    assert "<script" not in outside_code and "<img" not in outside_code  # data is raw only inside code spans
