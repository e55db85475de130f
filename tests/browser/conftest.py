"""Headless Debian Chromium, driven by Playwright, for the report tests in this folder.

The browser is Debian's `chromium` (installed by `make test` through scripts/install-chromium), never a
downloaded build: Playwright only drives it. TUNESMITH_CHROMIUM=/path/to/chromium picks another binary.
Without a browser these tests fail; they do not skip.

Screenshots land in artifacts/browser/ (or $TUNESMITH_TEST_ARTIFACTS/browser/), one PNG per report state,
for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .report_page import ReportPage

REPO = Path(__file__).resolve().parents[2]
# The flags the project uses for every headless run: no first-run UI, no background traffic of its own
# (this machine's network is closed), a fresh profile per session.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str:
    chosen = os.environ.get("TUNESMITH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chosen or not os.access(chosen, os.X_OK):
        pytest.fail(
            "no Chromium for the browser tests: run `bash scripts/install-chromium` (Debian's chromium package) "
            "or set TUNESMITH_CHROMIUM=/path/to/chromium",
            pytrace=False,
        )
    return chosen


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    root = Path(os.environ.get("TUNESMITH_TEST_ARTIFACTS") or REPO / "artifacts")
    folder = root / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    """One Chromium for the session, with a fresh empty profile folder and downloads allowed."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def open_report(browser_context, screenshot_dir) -> Iterator:
    """open_report(path) -> ReportPage, watched for console errors, requests, dialogs and page errors."""
    pages: list[ReportPage] = []

    def opener(path: Path) -> ReportPage:
        report = ReportPage.open(browser_context, Path(path), screenshot_dir)
        pages.append(report)
        return report

    yield opener
    for report in pages:
        report.close()
