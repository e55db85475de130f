"""The dataset audit report in headless Chromium: it renders every section, the console stays quiet, nothing
leaves the file, the rejected-rows filter works, the card download is the card, and payloads planted in the
data (file name, rows, findings) stay text.

The card is built by hand (tests/reports/test_audit_report.py), with script payloads added here.
Run: .venv/bin/python -m pytest tests/browser -q
"""

from __future__ import annotations

import json

import pytest

from tests.reports.test_audit_report import SECTION_HEADINGS, _card
from tunesmith.reports.audit import render_audit_report

from .report_page import PWNED_PAYLOADS

PAYLOAD = " ".join(PWNED_PAYLOADS)


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    card = _card(source_path=PAYLOAD + ".jsonl")
    validate = card.stages[0]
    validate.findings["rejected_samples"][0]["messages"][0]["content"] += " " + PAYLOAD
    validate.findings["warnings"] = [PAYLOAD]
    path = render_audit_report(card, tmp_path_factory.mktemp("audit") / "report.html")
    return path, card


def test_audit_report_renders_every_section_cleanly(open_report, audit):
    path, _ = audit
    report = open_report(path)
    report.assert_clean()
    report.assert_fits_width()
    assert report.visible_texts("h2") == SECTION_HEADINGS
    charts = report.page.locator("svg.chart").all()
    assert len(charts) >= 3 and all(chart.bounding_box()["height"] > 40 for chart in charts)
    nav = report.page.locator("nav a").all()
    assert nav and all(link.get_attribute("href").startswith("#") for link in nav)
    body = report.page.locator("body").inner_text()
    assert PWNED_PAYLOADS[0] in body and "<img src=x onerror" in body  # the payloads are shown, as text
    report.screenshot("audit-report")


def test_rejected_rows_filter(open_report, audit):
    path, _ = audit
    report = open_report(path)
    page = report.page
    rows = "table[data-group=rejected] tbody tr"
    page.evaluate("document.querySelectorAll('details.samples').forEach(d => d.open = true)")
    assert len(report.visible_texts(rows)) == 2
    page.fill("input[data-filter=rejected]", "MALFORMED")
    assert [text.split()[0] for text in report.visible_texts(rows)] == ["malformed_json"]
    assert page.inner_text("#rejected .filter-count") == "1 of 2 rows match"
    report.screenshot("audit-report-filtered")
    page.fill("input[data-filter=rejected]", "nothing matches this")
    assert report.visible_texts(rows) == [] and page.inner_text("#rejected .filter-count") == "0 of 2 rows match"
    page.fill("input[data-filter=rejected]", "")
    assert len(report.visible_texts(rows)) == 2 and page.inner_text("#rejected .filter-count") == ""
    report.assert_clean()


def test_card_download_is_the_card(open_report, audit):
    path, card = audit
    report = open_report(path)
    name, downloaded = report.download_json("#download-card")
    assert name == "card.json"
    assert downloaded == json.loads(card.model_dump_json())
    report.assert_clean()


def test_audit_report_on_a_phone_width(open_report, audit):
    path, _ = audit
    report = open_report(path)
    report.assert_fits_phone("audit-report-phone")
