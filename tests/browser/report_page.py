"""One report file open in Chromium, with everything the page did recorded: console messages, uncaught
errors, every network request, every dialog (an injected alert() would open one).

A report is self-contained, so the only request it may make is for its own file (data: and blob: URLs are
in-page). Anything else means a resource leaked out of the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A script of the page sets this when it runs; injected payloads in the tests set it too (see PWNED_PAYLOADS).
PWNED_FLAG = "__tunesmith_pwned"
PWNED_PAYLOADS = [
    f"<script>window.{PWNED_FLAG}=1</script>",
    f"<img src=x onerror=\"window.{PWNED_FLAG}=1\">",
    f"</script><script>window.{PWNED_FLAG}=1</script>",
    f"javascript:window.{PWNED_FLAG}=1",
    f"<svg onload=\"window.{PWNED_FLAG}=1\"><script>window.{PWNED_FLAG}=1</script></svg>",
]


@dataclass
class ReportPage:
    page: Any
    path: Path
    screenshot_dir: Path
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, context, path: Path, screenshot_dir: Path) -> ReportPage:
        report = cls(context.new_page(), path.resolve(), screenshot_dir)
        page = report.page
        page.on("console", lambda message: report.console.append((message.type, message.text)))
        page.on("pageerror", lambda error: report.errors.append(str(error)))
        page.on("request", lambda request: report.requests.append(request.url))
        page.on("dialog", report._dismiss)
        page.goto(report.url, wait_until="load")
        return report

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def _dismiss(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def assert_clean(self) -> None:
        """No console error or warning, no uncaught error, no dialog, no injected script ran, no request
        outside the file itself."""
        self.page.wait_for_load_state("networkidle")
        noisy = [(kind, text) for kind, text in self.console if kind in ("error", "warning", "assert")]
        assert not noisy, f"console messages in {self.path.name}: {noisy}"
        assert not self.errors, f"uncaught errors in {self.path.name}: {self.errors}"
        assert not self.dialogs, f"dialogs opened by {self.path.name} (an injected script ran): {self.dialogs}"
        assert self.page.evaluate(f"typeof window.{PWNED_FLAG}") == "undefined", "an injected payload ran"
        outside = [url for url in self.requests if url != self.url and not url.startswith(("data:", "blob:"))]
        assert not outside, f"{self.path.name} requested something outside the file: {outside}"
        resources = self.page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert not resources, f"{self.path.name} loaded resources: {resources}"

    def assert_fits_width(self) -> None:
        """The page never scrolls sideways: wide tables scroll inside their own box."""
        widths = self.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{self.path.name} is {widths[0]}px wide in a {widths[1]}px window"

    def assert_fits_phone(self, screenshot_name: str) -> None:
        """At a phone's width (390 px) the page still never scrolls sideways; keep a screenshot of it."""
        self.page.set_viewport_size({"width": 390, "height": 844})
        self.assert_fits_width()
        self.screenshot(screenshot_name)

    def visible_texts(self, selector: str) -> list[str]:
        return [text.strip() for text in self.page.locator(selector).filter(visible=True).all_inner_texts()]

    def attribute_of_visible(self, selector: str, name: str) -> list[str]:
        return self.page.eval_on_selector_all(
            selector, f"els => els.filter(e => !e.hidden && e.offsetParent !== null).map(e => e.getAttribute({name!r}))"
        )

    def download_json(self, selector: str) -> tuple[str, Any]:
        """Click a download button; return the suggested file name and the parsed JSON it saved."""
        with self.page.expect_download() as pending:
            self.page.click(selector)
        download = pending.value
        return download.suggested_filename, json.loads(Path(download.path()).read_text(encoding="utf-8"))

    def screenshot(self, name: str) -> Path:
        out = self.screenshot_dir / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=True)
        assert out.stat().st_size > 10_000, f"screenshot {out} is nearly empty"
        return out

    def close(self) -> None:
        self.page.close()
