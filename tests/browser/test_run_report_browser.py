"""The run report and the compare page in headless Chromium: they render, the console stays quiet, nothing
leaves the file, the example table sorts and filters, the downloads hold the run's JSON, and payloads
planted in the data and the model outputs stay text.

Run folders are written by hand (tests/reports/test_run_report.py:make_run); the example rows are
rewritten here with scrambled gains and script payloads in every text field.
Run: .venv/bin/python -m pytest tests/browser -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reports.test_run_report import HOSTILE, make_run, metric
from tunesmith.reports.run_report import render_compare_report, render_run_report

from .report_page import PWNED_PAYLOADS

EXAMPLES = 12
PAYLOAD = " ".join(PWNED_PAYLOADS)


def plant_examples(run_dir: Path) -> dict[str, float]:
    """Rewrite eval/samples.jsonl: 12 rows with gains in a scrambled order and payloads in every text field.
    Returns each row's gain (tuned - base ROUGE-L)."""
    path = run_dir / "eval" / "samples.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    template, gains, out = rows[0], {}, []
    for i in range(EXAMPLES):
        base, tuned = 40.0, 40.0 + ((i * 7) % EXAMPLES - 5) * 2.5  # gains -12.5 .. +15, none repeated
        row = dict(template, id=f"ex-{i}")
        row["prompt"] = [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": f"question number {i} {PAYLOAD}"}]
        row["references"] = [f"the total is {i} euros {PAYLOAD}"]
        row["base"] = f"perhaps {i} {PAYLOAD}"
        row["tuned"] = f"the total is {i} euros {PAYLOAD}"
        row["scores"] = {"rougeL": {"base": base, "tuned": tuned}}
        gains[row["id"]] = tuned - base
        out.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return gains


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    run_dir = make_run(tmp_path_factory.mktemp("browser-run"), run_id="run " + PAYLOAD, hostile=True)
    gains = plant_examples(run_dir)
    return render_run_report(run_dir), gains


def visible_ids(report) -> list[str]:
    return report.attribute_of_visible("#example-table tbody tr", "data-id")


def test_run_report_renders_cleanly_and_payloads_stay_text(open_report, hostile_run):
    path, _ = hostile_run
    report = open_report(path)
    report.assert_clean()
    report.assert_fits_width()
    page = report.page
    assert page.title() and page.locator("h1").inner_text().strip()
    headings = report.visible_texts("h2")
    assert {"Examples", "Training"} <= set(headings), headings
    charts = page.locator("svg").all()
    assert charts and all(chart.bounding_box()["width"] > 100 for chart in charts)
    table_text = page.locator("#example-table").inner_text()
    assert PWNED_PAYLOADS[0] in table_text and "<img src=x onerror" in table_text  # shown, as text
    assert HOSTILE.split()[0] in page.locator("body").inner_text()  # the run id's <script> is text too
    report.screenshot("run-report")


def test_example_table_sorts_by_gain_regression_id_and_back(open_report, hostile_run):
    path, gains = hostile_run
    report = open_report(path)
    page = report.page
    original = [f"ex-{i}" for i in range(EXAMPLES)]
    by_gain = sorted(gains, key=lambda i: -gains[i])
    assert visible_ids(report) == original

    page.click(".toolbar button[data-sort=gain]")
    assert visible_ids(report) == by_gain
    assert page.get_attribute(".toolbar button[data-sort=gain]", "aria-pressed") == "true"
    report.screenshot("run-report-sorted-by-gain")

    page.click(".toolbar button[data-sort=regression]")
    assert visible_ids(report) == by_gain[::-1]

    page.click("thead button[data-sort=gain]")  # the column header: first gain, then regression
    assert visible_ids(report) == by_gain
    page.click("thead button[data-sort=gain]")
    assert visible_ids(report) == by_gain[::-1]
    assert page.get_attribute("#example-table thead th:last-child", "aria-sort") == "ascending"

    page.click("thead button[data-sort=id]")  # numeric-aware: ex-2 before ex-10
    assert visible_ids(report) == original
    page.click(".toolbar button[data-sort=order]")
    assert visible_ids(report) == original
    report.assert_clean()


def test_example_search_filters_rows_and_counts_them(open_report, hostile_run):
    path, _ = hostile_run
    report = open_report(path)
    page = report.page
    box = page.locator("#example-filter")
    box.fill("question number 7 ")
    assert visible_ids(report) == ["ex-7"]
    assert page.inner_text("#example-count") == f"1 of {EXAMPLES} examples match"
    box.fill("EUROS")  # case-insensitive, searches references and outputs too
    assert len(visible_ids(report)) == EXAMPLES
    box.fill("<script>window")  # the payload text itself is searchable text
    assert len(visible_ids(report)) == EXAMPLES
    box.fill("no such words anywhere")
    assert visible_ids(report) == []
    assert page.inner_text("#example-count") == f"0 of {EXAMPLES} examples match"
    report.screenshot("run-report-search-empty")
    box.fill("")
    assert len(visible_ids(report)) == EXAMPLES and page.inner_text("#example-count") == f"{EXAMPLES} examples"

    page.click(".toolbar button[data-sort=regression]")  # sorting keeps the filter
    box.fill("question number 1")  # ex-1, ex-10, ex-11
    assert sorted(visible_ids(report)) == ["ex-1", "ex-10", "ex-11"]
    report.assert_clean()


def test_missing_words_toggle_and_downloads(open_report, hostile_run):
    path, _ = hostile_run
    report = open_report(path)
    page = report.page
    missing = page.locator("#example-table del.missing").first
    assert not missing.is_visible()
    page.check("#show-missing")
    assert missing.is_visible()
    page.uncheck("#show-missing")
    assert not missing.is_visible()

    run_dir = path.parent
    name, run_json = report.download_json("button[data-download=run]")
    assert name == "run.json" and run_json == json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    name, eval_json = report.download_json("button[data-download=eval]")
    assert name == "eval.json" and eval_json["eval_id"] == json.loads(
        (run_dir / "eval" / "eval.json").read_text(encoding="utf-8"))["eval_id"]
    report.assert_clean()


def test_compare_page_renders_and_warns_about_different_test_sets(open_report, tmp_path):
    a = make_run(tmp_path / "a", run_id="run-a")
    b = make_run(tmp_path / "b", run_id="run-b " + PAYLOAD, headline=metric("rougeL", 40.0, 45.0, 1.0, 9.0))
    c = make_run(tmp_path / "c", run_id="run-c", fingerprint="cd" * 32, split="validation")
    report = open_report(render_compare_report([a, b, c], tmp_path / "compare.html"))
    report.assert_clean()
    report.assert_fits_width()
    body = report.page.locator("body").inner_text()
    assert "run-a" in body and "run-c" in body and PWNED_PAYLOADS[0] in body
    assert "2 different test sets" in body and "not comparable" in body
    run_cells = report.page.locator("#metrics tbody td:first-child").all()
    assert run_cells and max(cell.bounding_box()["width"] for cell in run_cells) < 320  # a long id wraps
    assert report.page.locator("svg").count() >= 1
    name, data = report.download_json("button[data-download=all]")
    assert name == "runs.json" and len(json.dumps(data)) > 1000
    report.screenshot("compare-report")


def test_run_report_on_a_phone_width(open_report, hostile_run):
    path, _ = hostile_run
    report = open_report(path)
    report.assert_fits_phone("run-report-phone")
