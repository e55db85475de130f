"""The version's README.md (a Hugging Face dataset card) shows values from data, paths and config as text:
planted HTML, backticks and headings render, through a CommonMark renderer, as literal text and nothing else.

Run: .venv/bin/python -m pytest tests/security/test_readme_injection.py -q
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from huggingface_hub import DatasetCard as HubCard
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from tests.browser.report_page import PWNED_FLAG, PWNED_PAYLOADS
from tests.train.conftest import FIXTURE
from tunesmith.artifacts import TokenizerRecord, read_card
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.curate.readme import code, render_readme, text

SECTIONS = ["Motivation", "Composition", "Collection process", "Preprocessing, cleaning and labelling", "Uses",
            "Distribution", "Maintenance"]
FORGED = ["\n# Forged heading", "# forged", "1. forged item", "- forged", "x\n\n## Forged", "> quoted", "***",
          "[click](javascript:window.__tunesmith_pwned=1)", "a`b", "``", "` x `", "<!-- c", "x | y |"]


def render(markdown: str) -> str:
    """CommonMark with raw HTML allowed (as permissive renderers do) plus GFM tables: the strict test."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


class Page(HTMLParser):
    """The tags, headings and text of rendered HTML."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self._heading: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag.startswith("h") and tag[1:].isdigit() and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def planted_card(tmp_path):
    """A real curated card with every value the README shows replaced by a payload."""
    result = run_curate(CurateConfig(name="tiny", output_dir=str(tmp_path / "data"), sources=[{"path": str(FIXTURE)}],
                                     stages=[{"stage": "validate"}, {"stage": "bias_audit"},
                                             {"stage": "split", "ratios": {"train": 1.0}}], report=False))
    card = result.card
    payloads = PWNED_PAYLOADS + FORGED
    stages = [s.model_copy(update={"name": s.name if s.name == "bias_audit" else payloads[i % len(payloads)] + s.name,
                                   "findings": {**s.findings, "warnings": payloads,
                                                "languages": {p: 1 for p in payloads}}})
              for i, s in enumerate(card.stages)]
    findings = {"pii": {"rows_with_pii": PWNED_PAYLOADS[0], "action": PWNED_PAYLOADS[1]},
                "token_stats": {"length": {"p50": PWNED_PAYLOADS[2], "p99": FORGED[0], "max": PWNED_PAYLOADS[4]}}}
    stages += [stages[0].model_copy(update={"name": name, "findings": found}) for name, found in findings.items()]
    tokenizer = TokenizerRecord(name=PWNED_PAYLOADS[3] + "`", max_seq_len=256)
    split = card.splits["train"].model_copy(update={"file": "`" + PWNED_PAYLOADS[1] + "`"})
    sources = [card.sources[0].model_copy(update={"path": f"data/a`b{p}.jsonl", "format": p}) for p in payloads]
    return card.model_copy(update={"name": PWNED_PAYLOADS[1] + "\n# Forged", "version": PWNED_PAYLOADS[0],
                                   "stages": stages, "sources": sources, "splits": {PWNED_PAYLOADS[2]: split},
                                   "tokenizer": tokenizer})


def assert_only_text(html: str) -> Page:
    page = Page(html)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"img", "svg", "script", "iframe", "a", "blockquote", "hr", "ol"}, tags
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert PWNED_FLAG not in "".join(value or "" for _, attrs in page.tags for value in attrs.values())
    return page


def test_planted_payloads_render_as_text_and_forge_no_heading(tmp_path):
    card = planted_card(tmp_path)
    readme = render_readme(card)
    hub = HubCard(readme)  # the front matter parses as Hugging Face reads it, and ends where it should
    assert hub.data.pretty_name == card.name.replace("\n", "\\n")
    page = assert_only_text(render(hub.text))
    assert page.headings == [f"{card.name} ({card.version})".replace("\n", "\\n")] + SECTIONS
    shown = "".join(page.text)
    for payload in PWNED_PAYLOADS:  # each is on the page, as text
        assert payload in shown
    assert PWNED_PAYLOADS[0] in hub.data.language  # the front matter's language list came through YAML intact
    assert "data/a`b<img src=x onerror" in shown  # the backtick stayed inside its code span


def test_a_curated_version_with_a_hostile_source_path_writes_a_safe_readme(tmp_path):
    """End to end: a source file under folders named like payloads (a backtick included) through `curate`."""
    folder = tmp_path / "in`put" / "<img src=x onerror=\"window.__tunesmith_pwned=1\">" / "# heading"
    folder.mkdir(parents=True)
    source = folder / "<svg onload=x>`rows`.jsonl"
    source.write_bytes(FIXTURE.read_bytes())
    result = run_curate(CurateConfig(name="tiny", output_dir=str(tmp_path / "data"), sources=[{"path": str(source)}],
                                     stages=[{"stage": "validate"}], report=False))
    readme = (result.directory / "README.md").read_text(encoding="utf-8")
    page = assert_only_text(render(HubCard(readme).text))
    assert str(source) in "".join(page.text)
    assert read_card(result.directory).sources[0].path == str(source)


@pytest.mark.parametrize("value", PWNED_PAYLOADS + FORGED + ["", " ", "`", "```x``", "a\\", "&amp;", "&#60;"])
def test_a_code_span_shows_its_value_exactly(value):
    html = render(f"x {code(value)} y")
    page = assert_only_text(html)
    assert [tag for tag, _ in page.tags] == ["p", "code"]
    shown = value.replace("\n", "\\n") or " "  # a line break shows as \\n; an empty value as one space
    assert "".join(page.text).rstrip("\n") == f"x {shown} y"


one_line = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40)


@given(one_line.filter(lambda v: v == v.strip()))
def test_text_renders_back_to_its_value_at_line_start_and_mid_line(value):
    """Whatever the value, at the start of a block or inside a line, it is one paragraph of exactly itself."""
    for markdown, expected in ((text(value), value), (f"x {text(value)} y", f"x {value} y")):
        page = Page(render(markdown))
        assert [tag for tag, _ in page.tags] == ["p"], (value, markdown)
        assert "".join(page.text).strip("\n") == expected, (value, markdown)
