"""The dataset audit report: sections present, hostile data escaped, nothing external, partial cards render.

Offline and fast (no model, no pipeline run): the card is built by hand.
Run: pytest tests/reports -q
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from tunesmith.artifacts import (
    CodeRecord,
    DatasetCard,
    GateRecord,
    SourceRecord,
    SplitRecord,
    StageRecord,
    TokenizerRecord,
)
from tunesmith.reports import svg
from tunesmith.reports.audit import SECTIONS, render_audit_html, render_audit_report, script_json

from .html_tags import PageTags

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
SECTION_HEADINGS = [
    "Overview",
    "Warnings and review items",
    "Funnel",
    "Rejected rows",
    "Exact duplicates",
    "Near duplicates",
    "PII",
    "Bias audit",
    "Token statistics",
    "Split",
    "Contamination",
    "Validation",
    "Other findings",
    "Configuration",
]


def _stage(name: str, rows_in: int, rejected: int = 0, **findings) -> StageRecord:
    return StageRecord(
        name=name,
        version="1",
        config={},
        rows_in=rows_in,
        rows_out=rows_in - rejected,
        rows_rejected=rejected,
        seconds=0.25,
        findings=findings,
        rejected_file=f"rejected/{name}.jsonl" if rejected else None,
    )


def _card(stages: list[StageRecord] | None = None, source_path: str = "data/chat.jsonl") -> DatasetCard:
    return DatasetCard(
        name="support-chat",
        version="v1",
        fingerprint="ab" * 32,
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        config={"seed": 0, "stages": [{"stage": "validate"}], "note": XSS},
        sources=[SourceRecord(path=source_path, format="alpaca", rows=120, sha256="cd" * 32)],
        stages=_all_stages() if stages is None else stages,
        splits={
            "train": SplitRecord(file="train.jsonl", rows=81, sha256="11" * 32),
            "val": SplitRecord(file="val.jsonl", rows=10, sha256="22" * 32),
            "test": SplitRecord(file="test.jsonl", rows=10, sha256="33" * 32),
        },
        tokenizer=TokenizerRecord(name="embedded:smollm2-135m", chat_template_sha256="ef" * 32, max_seq_len=512),
        gates=[
            GateRecord(name="max_rejected_fraction", limit=0.2, value=0.16, passed=True),
            GateRecord(name="max_contaminated_rows", limit=0, value=2, passed=False),
        ],
        code=CodeRecord(package_version="0.1.0", git_sha=None, python="3.11", libraries={}),
    )


def _all_stages() -> list[StageRecord]:
    rejected_sample = {
        "stage": "validate",
        "reason": "empty_response",
        "detail": "assistant turn is empty",
        "where": "data/chat.jsonl:7",
        "field": "output",
        "id": "chat-7",
        "source": "data/chat.jsonl",
        "row": 6,
        "messages": [{"role": "user", "content": "Say " + XSS + " please"}, {"role": "assistant", "content": ""}],
    }
    malformed = {
        "stage": "validate",
        "reason": "malformed_json",
        "detail": "Expecting ',' delimiter",
        "where": "data/chat.jsonl:9",
        "id": "chat-9",
        "messages": [],
        "raw": '{"instruction": </script> "x"',
    }
    return [
        _stage(
            "validate",
            120,
            6,
            fixups={"stripped_whitespace": 12, "alpaca_to_messages": 114},
            formats={"data/chat.jsonl": "alpaca"},
            rejected_by_reason={"empty_response": 4, "malformed_json": 2},
            rejected_samples=[rejected_sample, malformed],
        ),
        _stage(
            "exact_dedup",
            114,
            4,
            duplicates=4,
            key_fields=["prompt", "response"],
            groups=[{"kept": "chat-1", "dropped": ["chat-40", "chat-41"]}, {"kept": "chat-3", "dropped": ["chat-77"]}],
            warnings=["3 of 4 duplicates come from one source: data/chat.jsonl"],
            rejected_by_reason={"exact_duplicate": 4},
        ),
        _stage(
            "near_dedup",
            110,
            5,
            num_clusters=2,
            duplicate_rows=5,
            params={"threshold": 0.8, "num_perm": 128, "shingle": 5},
            clusters=[
                {
                    "kept": "chat-5",
                    "kept_text": "How do I reset my password? " + XSS,
                    "members": [{"id": "chat-50", "jaccard": 0.91}, {"id": "chat-51", "jaccard": 0.84}],
                    "member_texts": {"chat-50": "How do I reset the password?", "chat-51": "Reset password how?"},
                }
            ],
            rejected_by_reason={"near_duplicate": 5},
        ),
        _stage(
            "pii",
            105,
            counts={"email": {"user": 3, "assistant": 1}, "phone": {"user": 2}},
            rows_with_pii=5,
            action="mask",
            examples=[
                {
                    "id": "chat-12",
                    "type": "email",
                    "role": "user",
                    "field": "content",
                    "masked": "write to j***@***.com " + XSS,
                }
            ],
        ),
        _stage(
            "bias_audit",
            105,
            identity_terms={
                "gender": {
                    "prompt": 14,
                    "response": 22,
                    "rows": 20,
                    "top_terms": {"woman": 9, "man": 7},
                    "example_ids": ["chat-2", "chat-8"],
                },
                "religion": {"prompt": 3, "response": 1, "rows": 4, "top_terms": {"muslim": 2}, "example_ids": []},
            },
            pronouns={
                "prompt": {"he": 10, "she": 4, "they": 7},
                "response": {"he": 12, "she": 5, "they": 9},
                "he_she_ratio": 2.44,
            },
            cooccurrence={"gender": {"rows": 2, "example_ids": ["chat-8"], "pairs": {"woman+weak": 1}}},
            toxicity={"rows": 1, "rate": 0.0095, "example_ids": ["chat-30"], "top_terms": {"idiot": 1}},
            languages={"en": 48, "de": 2},
            language_sample_size=50,
            warnings=["he/she ratio 2.44 is above 2.0"],
        ),
        _stage(
            "token_stats",
            105,
            2,
            tokenizer="embedded:smollm2-135m",
            max_seq_len=512,
            length={"min": 12, "mean": 143.2, "p50": 120, "p90": 300, "p99": 600, "max": 640},
            histogram={
                "edges": [0, 64, 128, 192, 256, 320, 384, 448, 512, 576, 640],
                "counts": [10, 30, 25, 15, 10, 6, 3, 2, 2, 2],
            },
            truncated_rows=4,
            truncated_example_ids=["chat-90", "chat-91"],
            trainable_tokens={"total": 7400, "mean": 72.5, "min": 0, "max": 300},
            zero_trainable_rows=1,
            rejected_by_reason={"too_long": 2},
        ),
        _stage(
            "split",
            103,
            sizes={"train": 83, "val": 10, "test": 10},
            groups=97,
            stratify="source",
            strata={"train": {"data/chat.jsonl": 83}, "val": {"data/chat.jsonl": 10}},
        ),
        _stage(
            "contamination",
            103,
            2,
            ngram=13,
            contaminated_rows=2,
            pairs=[
                {
                    "a": "chat-60",
                    "a_split": "test",
                    "b": "chat-61",
                    "b_split": "train",
                    "kind": "ngram",
                    "span": "the quick brown fox </script> jumps",
                }
            ],
            rejected_by_reason={"contaminated": 2},
            extra_metric={"why": XSS},
        ),
    ]


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> str:
    card = _card(source_path=XSS + ".jsonl")
    out = render_audit_report(card, tmp_path_factory.mktemp("report") / "nested" / "audit.html")
    assert out.is_file()
    return out.read_text(encoding="utf-8")




def _json_block(page: str) -> str:
    match = re.search(r'<script type="application/json" id="card-data">(.*?)</script>', page, re.S)
    assert match, "embedded card JSON missing"
    return match.group(1)


def test_every_section_heading_present(html):
    for heading in SECTION_HEADINGS:
        assert f"<h2>{heading}</h2>" in html, heading
    assert 'title="' + "ab" * 32 + '"' in html and "abababababab<" in html  # short fingerprint, full in title
    assert "✗ fail" in html and "✓ pass" in html
    assert "rejected/validate.jsonl" in html
    assert "3 of 4 duplicates come from one source" in html
    assert "the quick brown fox" in html


def test_hostile_text_is_escaped_everywhere(html):
    assert "<script>alert" not in html
    assert "<img" not in html
    assert "onerror=alert(1)&gt;" in html  # the payload is shown, as text
    # one escaped copy per place it was planted: rejected sample (cell + tooltip), cluster, PII, source, config,
    # and the generic findings dump
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 7
    assert html.count("<script") == 2  # the JSON block and the inline script, nothing else


def test_json_block_cannot_break_out(html):
    block = _json_block(html)
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert data["sources"][0]["path"] == XSS + ".jsonl"
    spans = [p["span"] for s in data["stages"] for p in s["findings"].get("pairs", [])]
    assert spans == ["the quick brown fox </script> jumps"]


def test_script_json_escapes_line_separators():
    text = str(script_json({"x": "a\u2028b\u2029</script><!--&"}))
    assert "\u2028" not in text and "\u2029" not in text and "<" not in text and "&" not in text
    assert json.loads(text) == {"x": "a\u2028b\u2029</script><!--&"}


def test_nothing_external(html):
    for needle in ("http://", "https://", "//cdn", "<link", "@import", "<iframe", "<object", "@font-face"):
        assert needle not in html.lower(), needle
    style = html[html.index("<style>") : html.index("</style>")]
    assert "url(" not in style
    tags = PageTags()
    tags.feed(html)
    assert {"img", "link", "iframe", "object", "embed", "image", "use"}.isdisjoint(tags.names)
    assert not [v for name, v in tags.attrs if name in ("src", "srcset", "xlink:href", "action", "poster")]
    assert all(v.startswith("#") for name, v in tags.attrs if name == "href")  # only in-page anchors
    assert tags.scripts == [{"type": "application/json", "id": "card-data"}, {}]  # no <script src>


def test_histogram_marks_truncation_limit():
    chart = svg.histogram([0, 64, 128, 192, 256], [4, 8, 2, 1], marker=512, marker_label="truncation")
    marker = [line for line in chart["lines"] if line["cls"] == "marker"]
    assert len(marker) == 1
    assert marker[0]["x1"] == max(line["x2"] for line in chart["lines"] if line["cls"] == "axis")  # at the far end
    assert any(t["text"] == "truncation (512)" for t in chart["texts"])
    # bins are drawn left of the marker and none past it is marked "over"
    assert all(r["cls"] == "s0" for r in chart["rects"])


def test_histogram_in_page_has_marker_and_over_limit_bins(html):
    tokens = html[html.index('id="tokens"') : html.index('id="split"')]
    assert 'class="marker"' in tokens and "truncation (512)" in tokens
    assert tokens.count('class="over"') == 2  # bins 512-576 and 576-640


def test_bar_chart_scales_to_largest_value():
    chart = svg.bar_chart([("gender", [10, 20]), ("religion", [5, 0])], ["prompt", "response"])
    widths = [r["width"] for r in chart["rects"] if r["title"].startswith(("gender", "religion"))]
    assert widths[1] == pytest.approx(2 * widths[0]) and widths[2] == pytest.approx(widths[0] / 2) and widths[3] == 0
    assert svg.bar_chart([], ["x"]) is None and svg.histogram([], []) is None and svg.funnel([]) is None


def test_minimal_card_with_only_validate_stage(tmp_path):
    card = _card(stages=[_stage("validate", 3, fixups={"stripped_whitespace": 1})])
    page = render_audit_report(card, tmp_path / "audit.html").read_text(encoding="utf-8")
    assert "<h2>Validation</h2>" in page and "<h2>Funnel</h2>" in page
    for absent in (
        "Rejected rows",
        "Exact duplicates",
        "Near duplicates",
        "Bias audit",
        "Token statistics",
        "Contamination",
        "Other findings",
    ):
        assert f"<h2>{absent}</h2>" not in page, absent


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_stage_with_empty_or_odd_findings_renders(name):
    odd = {key: "not-what-you-expect" for key in SECTIONS[name][1].split()} | {"rejected_samples": [None, "x"]}
    odder = {key: {"x": ["y", None]} for key in SECTIONS[name][1].split()} | {"histogram": {"edges": ["a", 1]}}
    for findings in ({}, odd, odder):
        page = render_audit_html(_card(stages=[_stage(name, 5, **findings)]))
        assert "<h2>Overview</h2>" in page


def test_unknown_findings_go_to_generic_dump(html):
    other = html[html.index('id="other"') : html.index('id="config"')]
    assert "contamination: extra_metric" in other and "&lt;img src=x" in other


def test_empty_stage_list_renders():
    page = render_audit_html(_card(stages=[]))
    assert "<h2>Funnel</h2>" not in page and "<h2>Configuration</h2>" in page


def test_funnel_scales_to_first_input_and_marks_drops():
    chart = svg.funnel([("validate", 100, 80), ("split", 80, 80)])
    kept = [r for r in chart["rects"] if r["cls"] == "s0"]
    rejected = [r for r in chart["rects"] if r["cls"] == "rejected"]
    assert len(rejected) == 1 and rejected[0]["title"] == "validate: 20 rejected"
    assert kept[0]["width"] == pytest.approx(0.8 * rejected[0]["width"]) and kept[1]["width"] == kept[0]["width"]


def _card_with_new_findings() -> DatasetCard:
    profile = {
        "rows": 5000, "profiled_rows": 5000,
        "fields": {"instruction": {"rows": 5000, "distinct": 1, "distinct_ratio": 0.0002, "top_share": 1.0,
                                   "top_count": 5000, "top_value": "Translate " + XSS}},
        "roles": {"assistant": {"rows": 5000, "distinct": 4990, "distinct_ratio": 0.998, "top_share": 0.001}},
        "placeholders": {"rows": 1, "by_kind": {"double_brace": 1}},
        "identical_responses": {"rows": 20, "share": 0.004},
    }
    review = [{"kind": "placeholder", "id": "chat-3", "where": "data/chat.jsonl:4", "field": "assistant",
               "text": "Dear {{name}}, " + XSS, "detail": "the answer holds an unfilled template placeholder"}]
    validate = _stage("validate", 5000, warnings=["instruction is one value in all 5,000 rows: " + XSS],
                      review=review, review_total=7, ignored_columns={"tools": 300, "images": 6},
                      profile=profile)
    card = _card(stages=[validate])
    return card.model_copy(update={"verdict": {"fit": False, "sentence": "Not fit to train on: " + XSS}})


def test_warnings_review_items_verdict_and_profile_are_rendered_escaped():
    """Every stage's warnings and review items (with the triggering span), the verdict, ignored columns and the
    column profile are shown, escaped, and none of them lands in "Other findings"."""
    page = render_audit_html(_card_with_new_findings())
    review = page[page.index('<section id="review">') : page.index('<section id="funnel">')]
    assert "instruction is one value in all 5,000 rows" in review
    assert "Dear {{name}}, &lt;script&gt;" in review and "data/chat.jsonl:4" in review and "placeholder" in review
    assert "and 6 more review items" in review
    overview = page[page.index('<section id="overview">') : page.index('<section id="review">')]
    assert "✗ Not fit to train on: &lt;script&gt;" in overview
    validation = page[page.index('<section id="validate">') :]
    assert "<td>tools</td><td class=\"num\">300</td>" in validation
    assert "Column profile" in validation and "Translate &lt;script&gt;" in validation and "100.0%" in validation
    assert "double_brace" in validation
    assert '<section id="other">' not in page  # review, review_total, ignored_columns, profile are all consumed
    assert "<script>alert" not in page and "<img" not in page


def test_new_measurements_have_their_place_in_the_stage_sections():
    """Cut answers, tool rows, asked vs achieved split shares, contamination rates, the lexicons' language note and
    what each gate measures are shown in their sections, not dumped under "Other findings"."""
    stages = [
        _stage("token_stats", 10, tokenizer="t", max_seq_len=64, cut_answer_rows=3, cut_answer_example_ids=["c:7"],
               tool_rows=2, counting={"method": "chunked"}, rejected_answers={"rows": 4, "truncated_rows": 1,
                                                                             "cut_answer_rows": 1}),
        _stage("split", 10, sizes={"train": 8, "test": 2}, ratios={"train": {"asked": 0.9, "achieved": 0.8, "rows": 8},
                                                                    "test": {"asked": 0.1, "achieved": 0.2, "rows": 2}}),
        _stage("contamination", 10, contaminated_rows=1, contamination_rate=0.5,
               rates={"held_out": {"rows": 2, "contaminated": 1, "rate": 0.5}}),
        _stage("bias_audit", 10, coverage="The lexicons are English-only.", languages_covered=["en"]),
    ]
    card = _card(stages).model_copy(update={"gates": [
        GateRecord(name="min_trainable_tokens", limit=5, value=9, passed=True, measures="train split")]})
    page = render_audit_html(card)
    tokens = page[page.index('<section id="tokens">') : page.index('<section id="split">')]
    assert "answers cut by max_seq_len" in tokens and "c:7" in tokens and "rows with tools" in tokens
    assert "Rejected answers of preference rows: 4 counted" in tokens
    split = page[page.index('<section id="split">') : page.index('<section id="contamination">')]
    assert "Asked and achieved shares" in split and "90.0%" in split and "80.0%" in split
    contamination = page[page.index('<section id="contamination">') :]
    assert "held_out" in contamination and "50.0%" in contamination
    assert "The lexicons are English-only." in page
    assert "<td>train split</td>" in page
    assert '<section id="other">' not in page  # every one of these findings is consumed by its section
