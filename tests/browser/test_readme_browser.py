"""The version's README.md, rendered to HTML by a CommonMark renderer that lets raw HTML through, in headless
Chromium: payloads planted in source paths, names, findings and warnings stay text and never run.

The planted card comes from tests/security/test_readme_injection.py.
Run: .venv/bin/python -m pytest tests/browser/test_readme_browser.py -q
"""

from __future__ import annotations

from html import escape

from huggingface_hub import DatasetCard as HubCard

from tests.security.test_readme_injection import SECTIONS, planted_card, render
from tunesmith.curate.readme import render_readme

from .report_page import PWNED_FLAG, PWNED_PAYLOADS


def page_of(body_html: str, path):
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>README</title></head>"
                    f"<body>{body_html}</body></html>", encoding="utf-8")
    return path


def test_the_rendered_readme_runs_no_planted_payload_and_shows_it_as_text(open_report, tmp_path):
    card = planted_card(tmp_path)
    path = page_of(render(HubCard(render_readme(card)).text), tmp_path / "readme.html")
    report = open_report(path)
    report.assert_clean()  # the flag is undefined, no dialog, no request (an <img src=x> would make one)
    assert report.page.evaluate(f"typeof window.{PWNED_FLAG}") == "undefined"
    assert report.page.locator("img, svg, script, iframe, a").count() == 0
    assert report.visible_texts("h2") == SECTIONS
    shown = report.page.inner_text("body")
    for payload in PWNED_PAYLOADS:
        assert payload in shown
    report.screenshot("readme-planted-payloads")


def test_the_harness_catches_a_payload_that_is_not_escaped(open_report, tmp_path):
    """The same renderer and page with one raw payload: the flag is set, so the test above can fail."""
    raw = render(f"# title\n\n{PWNED_PAYLOADS[1]}\n")
    report = open_report(page_of(raw, tmp_path / "raw.html"))
    report.page.wait_for_load_state("networkidle")
    assert report.page.evaluate(f"typeof window.{PWNED_FLAG}") != "undefined"
    assert escape(PWNED_PAYLOADS[1]) not in raw
