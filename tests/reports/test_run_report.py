"""The run report and the compare page: verdict wording, every metric and example shown, hostile text escaped,
nothing external, missing pieces (card, eval) reported instead of failing, different test sets flagged.

Offline and fast (no model): run folders are written by hand with the artifact classes.
Run: pytest tests/reports/test_run_report.py -q
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.reports.test_audit_report import _card, _stage
from tunesmith.artifacts import (
    CodeRecord,
    EvalManifest,
    MetricComparison,
    RunManifest,
    write_card,
    write_eval,
    write_run,
)
from tunesmith.reports import metric_text, svg
from tunesmith.reports.run_report import render_compare_report, render_run_report
from tunesmith.reports.word_diff import word_diff

from .html_tags import PageTags

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    "javascript:alert(1)",
    "<svg onload=alert(1)>",
]
HOSTILE = " ".join(PAYLOADS)
CODE = CodeRecord(package_version="0.1.0", git_sha="f" * 40, python="3.11", libraries={"torch": "2.4"})
WHEN = datetime(2026, 1, 2, tzinfo=timezone.utc)
GENERATION = ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"]
PERPLEXITY = ["response_perplexity", "sequence_perplexity", "general_text_perplexity"]


def metric(name: str, base: float, tuned: float, low: float, high: float, n: int = 130) -> MetricComparison:
    higher = name not in PERPLEXITY
    return MetricComparison(
        name=name,
        group="generation" if higher else "perplexity",
        higher_is_better=higher,
        version=f"{name}|nrefs:1|version:2.6.0",
        base=base,
        tuned=tuned,
        delta=tuned - base,
        ci_low=low,
        ci_high=high,
        confidence=0.95,
        excludes_zero=low > 0 or high < 0,
        wins=60 if higher else None,
        ties=50 if higher else None,
        losses=20 if higher else None,
        n=n,
    )


def all_metrics(headline: MetricComparison) -> list[MetricComparison]:
    out = [metric(name, 30.0, 33.0, 1.0, 5.0) for name in GENERATION if name != headline.name] + [headline]
    return out + [
        metric("response_perplexity", 8.0, 5.5, -3.0, -2.0),
        metric("sequence_perplexity", 6.0, 5.0, -1.5, -0.5),
        metric("general_text_perplexity", 20.0, 20.4, -0.2, 1.0, n=12),
    ]


def make_run(
    root: Path,
    run_id: str = "r1",
    fingerprint: str = "ab" * 32,
    split: str = "test",
    headline: MetricComparison | None = None,
    examples: int = 6,
    hostile: bool = False,
) -> Path:
    """A complete run folder: card (elsewhere), run.json, metrics.jsonl, config, eval/eval.json, eval/samples.jsonl."""
    card_dir = root / "data" / fingerprint[:8]
    card_dir.mkdir(parents=True, exist_ok=True)
    card = _card(
        stages=[
            _stage("validate", 120, 6, rejected_by_reason={"empty": 6}),
            _stage("exact_dedup", 114, 4, warnings=["4 duplicates " + HOSTILE]),
            _stage("split", 110),
        ]
    )
    write_card(card.model_copy(update={"fingerprint": fingerprint}), card_dir)
    run_dir = root / "runs" / (run_id if not hostile else "hostile")
    (run_dir / "eval").mkdir(parents=True)
    config = {"lora": {"r": 16, "alpha": 32}, "learning_rate": 2e-4, "max_steps": 40, "batch_size": 8, "note": HOSTILE}
    write_run(
        RunManifest(
            run_id=run_id,
            card_fingerprint=fingerprint,
            card_path=str(card_dir / "card.json"),
            base_model="tiny-llama",
            base_model_sha256="cd" * 32,
            quantization="nf4",
            device="cuda:0",
            config=config,
            final_metrics={"train_loss": 1.1, "num_input_tokens_seen": 51200.0},
            wall_seconds=61.5,
            created_at=WHEN,
            code=CODE,
        ),
        run_dir,
    )
    lines = [
        {"step": s, "epoch": s / 40, "loss": 2.5 - s * 0.03, "lr": 2e-4, "tokens_per_s": 900.0, "peak_memory_mb": 800}
        for s in range(1, 41)
    ]
    lines += [{"step": s, "eval_loss": 2.4 - s * 0.02} for s in (10, 20, 30, 40)] + [{"step": 40, "eval_loss": 1.6}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "{broken\n")
    (run_dir / "config.resolved.yaml").write_text("learning_rate: 0.0002\nnote: '" + HOSTILE + "'\n")
    headline = headline or metric("rougeL", 40.0, 52.3, 9.8, 14.9)
    text = HOSTILE if hostile else "ship it"
    samples = [
        {
            "id": f"ex-{i}",
            "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"question {i} {text}"}],
            "references": [f"the answer is {i} {text} https://evil.example/x.js"],
            "base": f"maybe {i} {text}",
            "tuned": f"the answer is {i} {text}",
            "scores": {"rougeL": {"base": 10.0 * i, "tuned": 20.0 + i}},
            "response_nll": {"base": 30.0, "tuned": 20.0, "tokens": 10},
        }
        for i in range(examples)
    ]
    (run_dir / "eval" / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    eval_config = {"headline": headline.name, "general_text": "builtin"}
    write_eval(
        EvalManifest(
            eval_id="e" * 16,
            run_id=run_id,
            run_path=str(run_dir),
            card_fingerprint=fingerprint,
            card_path=str(card_dir / "card.json"),
            split=split,
            n_examples=headline.n,
            base_model="tiny-llama",
            device="cuda:0",
            generation={"max_new_tokens": 64, "do_sample": False, "stop": text},
            bootstrap={"resamples": 1000, "confidence": 0.95, "seed": 0},
            metrics=all_metrics(headline),
            timings={"base_generation_seconds": 3.5, "tuned_generation_tokens_per_s": 420.0},
            config=eval_config,
            wall_seconds=12.5,
            created_at=WHEN,
            code=CODE,
        ),
        run_dir / "eval",
    )
    return run_dir




def _tags(page: str) -> PageTags:
    tags = PageTags()
    tags.feed(page)
    return tags


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    out = render_run_report(run_dir)
    assert out == run_dir / "report.html"
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory) -> str:
    run = make_run(tmp_path_factory.mktemp("hostile"), run_id=HOSTILE, hostile=True)
    return render_run_report(run, run.parent / "hostile.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("numbers", "sentence"),
    [
        ((40.0, 52.3, 9.8, 14.9), "tuned beats base on ROUGE-L by +12.3 [9.8, 14.9] (95% paired bootstrap, n=130)"),
        (
            (40.0, 35.9, -6.0, -2.2),
            "tuned is worse than base on ROUGE-L by −4.1 [−6.0, −2.2] (95% paired bootstrap, n=130)",
        ),
        (
            (40.0, 40.8, -1.2, 2.9),
            "no significant difference between tuned and base on ROUGE-L: +0.8 [−1.2, 2.9] (95% paired bootstrap, n=130)",
        ),
    ],
)
def test_verdict_sentence(numbers, sentence, tmp_path):
    assert metric_text.verdict(metric("rougeL", *numbers)) == sentence
    page = render_run_report(make_run(tmp_path, headline=metric("rougeL", *numbers))).read_text(encoding="utf-8")
    assert sentence in page


def test_verdict_respects_lower_is_better():
    better = metric("response_perplexity", 8.0, 5.5, -3.0, -2.0)
    assert metric_text.verdict(better).startswith("tuned beats base on response perplexity (lower is better) by −2.50")
    worse = metric("response_perplexity", 5.5, 8.0, 2.0, 3.0)
    assert metric_text.verdict(worse).startswith("tuned is worse than base on response perplexity")
    assert "sign of forgetting" in metric_text.perplexity_sentence(metric("general_text_perplexity", 20, 25, 3, 7))
    assert "no sign of forgetting" in metric_text.perplexity_sentence(
        metric("general_text_perplexity", 20, 20.4, -1, 1)
    )


def test_every_metric_and_example_shown(page):
    for label in metric_text.LABELS.values():
        assert f"<td>{label}" in page, label
    for i in range(6):
        assert f'data-id="ex-{i}"' in page
    assert "rougeLsum|nrefs:1|version:2.6.0" in page  # metric versions are visible
    assert "no sign of forgetting" in page  # the forgetting check is interpreted
    assert 'class="headline"' in page and "<polyline" in page  # headline row marked; loss curves drawn
    assert "1 line(s) of metrics.jsonl" in page  # the broken line is reported, not fatal
    assert ">1.3000</span><span class=\"stat-label\">last train loss" in page  # step 40, not the mean (1.1)
    assert page.count("<tr data-gain=") == 6
    assert 'data-gain="-25.0"' in page  # ex-5: base 50, tuned 25 -> a regression sorts last by gain
    assert "Stage funnel" in page and "4 duplicates" in page  # card summary with its audit findings
    assert "ee" * 8 in page and "cd" * 8 in page  # lineage: eval id, base model sha


def test_element_ids_are_unique_and_scripts_find_theirs(page):
    ids = [v for name, v in _tags(page).attrs if name == "id"]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for wanted in re.findall(r'getElementById\("([\w-]+)"\)', page):  # the inline scripts' targets all exist
        assert wanted in ids, wanted


def test_hostile_text_is_escaped_everywhere(hostile_page):
    assert "<script>alert" not in hostile_page and "<img" not in hostile_page and "<svg onload" not in hostile_page
    assert hostile_page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8  # shown as text in many places
    tags = _tags(hostile_page)
    assert "img" not in tags.names
    assert not [name for name, _ in tags.attrs if name.startswith("on")]  # no event-handler attribute anywhere
    assert not [v for _, v in tags.attrs if "javascript:" in v.lower()]
    assert [s.get("type") for s in tags.scripts] == ["application/json", None, None]  # no <script src>, no injected
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', hostile_page, re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    assert json.loads(block)["run"]["run_id"] == HOSTILE


def test_nothing_external(hostile_page):
    tags = _tags(hostile_page)
    assert {"link", "iframe", "object", "embed", "image", "use", "img"}.isdisjoint(tags.names)
    assert not [v for name, v in tags.attrs if name in ("src", "srcset", "xlink:href", "action", "poster")]
    assert all(v.startswith("#") for name, v in tags.attrs if name == "href")
    for needle in ("@import", "@font-face", "url("):
        assert needle not in hostile_page
    assert "https://evil.example/x.js" in hostile_page  # a URL in the data stays text


def test_missing_card_gives_notice(tmp_path):
    run = make_run(tmp_path)
    shutil.rmtree(tmp_path / "data")
    page = render_run_report(run).read_text(encoding="utf-8")
    assert "could not be read" in page and "moved or deleted" in page
    assert "Stage funnel" not in page and "tuned beats base" in page


def test_unevaluated_run_still_renders(tmp_path):
    run = make_run(tmp_path)
    shutil.rmtree(run / "eval")
    page = render_run_report(run, tmp_path / "out" / "r.html").read_text(encoding="utf-8")
    assert "has not been evaluated yet" in page and "<polyline" in page and 'id="examples"' not in page


def test_compare_flags_different_test_sets(tmp_path):
    a = make_run(tmp_path / "a", run_id="run-a")
    b = make_run(tmp_path / "b", run_id="run-b", headline=metric("rougeL", 40.0, 45.0, 1.0, 9.0))
    c = make_run(tmp_path / "c", run_id="run-c", fingerprint="cd" * 32, split="validation")
    same = render_compare_report([a, b], tmp_path / "same.html").read_text(encoding="utf-8")
    assert "different test sets" not in same and "run-a" in same and "run-b" in same
    assert same.count("★") >= 2  # best per metric marked (legend + at least one cell)
    best = re.search(r'<td class="num best"[^>]*>★ ([\d.,]+)', same)
    assert best and best.group(1) in {"52.3", "33.0", "5.50", "5.00", "20.40"}
    mixed = render_compare_report([a, b, c / "run.json"], tmp_path / "mixed.html").read_text(encoding="utf-8")
    assert "3 runs" in mixed and "2 different test sets" in mixed and "not comparable" in mixed
    tags = _tags(mixed)
    assert not [v for name, v in tags.attrs if name in ("src", "href") and not v.startswith("#")]


def test_word_diff_marks_and_escapes():
    html = str(word_diff("the <b>cat</b> sat", ["the dog sat", "zzz"]))
    assert html == 'the <del class="missing">dog </del><span class="extra">&lt;b&gt;cat&lt;/b&gt;</span> sat'
    assert str(word_diff("", ["x"])) == "" and str(word_diff("<i>", [])) == '<span class="extra">&lt;i&gt;</span>'


def test_line_chart_geometry():
    chart = svg.line_chart(
        [("train", [(1, 2.0), (2, float("nan")), (3, 1.0)]), ("eval", [])], markers=[("final", 3, 1)]
    )
    # the NaN point is dropped and the empty series skipped
    assert len(chart["paths"]) == 1 and chart["paths"][0]["points"].count(",") == 2
    assert any(d["cls"] == "marker" for d in chart["dots"])
    assert svg.line_chart([("x", [])]) is None
    assert svg.line_chart([("flat", [(0, 1.0), (5, 1.0)])]) is not None  # a flat line still gets an axis range


def test_step_axis_has_whole_number_ticks():
    def x_ticks(chart) -> list[str]:
        return [t["text"] for t in chart["texts"] if t["cls"] == "tick" and t["anchor"] == "middle"]

    assert x_ticks(svg.line_chart([("train", [(1, 5.11), (2, 5.10), (3, 5.08)])])) == ["1", "2", "3"]
    assert x_ticks(svg.line_chart([("train", [(7, 2.0)])])) == ["6", "7", "8"]  # one step still gets an axis
    epochs = svg.line_chart([("train", [(0.25, 2.0), (0.5, 1.5), (0.75, 1.2)])], x_label="epoch")
    assert "0.5" in x_ticks(epochs)  # fractional x keeps fractional ticks
