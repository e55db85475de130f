"""Reports written by a real `tunesmith run` (tiny model, fixture data), opened in headless Chromium: the
audit report of the card and the run report, then a compare page of two real runs.

Run: .venv/bin/python -m pytest tests/browser -q
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.artifacts import read_run
from tunesmith.cli import main

from ..tiny_pipeline import write_pipeline_config

STAGES = [{"stage": "validate"}, {"stage": "exact_dedup"}, {"stage": "near_dedup"}, {"stage": "pii"},
          {"stage": "token_stats", "max_seq_len": 256},
          {"stage": "split", "ratios": {"train": 0.6, "validation": 0.1, "test": 0.3}}]


def test_reports_of_a_real_run_render_cleanly(open_report, tmp_path, tiny_tokenizer_dir, tiny_model_dir, capsys):
    config = write_pipeline_config(tmp_path, tiny_tokenizer_dir, tiny_model_dir, STAGES)
    assert main(["run", str(config)]) == 0
    run_report = Path(capsys.readouterr().out.strip().splitlines()[-1])
    audit_reports = list((tmp_path / "data").rglob("report.html"))
    assert len(audit_reports) == 1

    audit = open_report(audit_reports[0])
    audit.assert_clean()
    audit.assert_fits_width()
    assert "Funnel" in audit.visible_texts("h2")
    audit.screenshot("pipeline-audit-report")

    run = open_report(run_report)
    run.assert_clean()
    run.assert_fits_width()
    rows = run.page.locator("#example-table tbody tr")
    assert rows.count() > 0 and run.page.locator("svg polyline").count() >= 1
    run.page.click(".toolbar button[data-sort=gain]")
    gains = [float(g) for g in run.attribute_of_visible("#example-table tbody tr", "data-gain")]
    assert gains == sorted(gains, reverse=True)
    run.screenshot("pipeline-run-report")

    assert main(["run", str(config), "train.max_steps=2"]) == 0
    other = Path(capsys.readouterr().out.strip().splitlines()[-1]).parent
    compare = tmp_path / "compare.html"
    assert main(["report", "compare", str(run_report.parent), str(other), "--out", str(compare)]) == 0
    page = open_report(compare)
    page.assert_clean()
    body = page.page.locator("body").inner_text()
    assert read_run(run_report.parent).run_id in body and read_run(other).run_id in body
    assert "different test sets" not in body
    page.screenshot("pipeline-compare-report")
