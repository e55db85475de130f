"""Render a run's evaluation as one self-contained, offline HTML page, and several runs side by side.

`render_run_report(run_dir)` writes `runs/<id>/report.html`: the verdict in words, the metric table with
intervals, perplexity before and after (the forgetting check), loss curves, every test example side by side
with a word diff against the reference, the dataset card's audit summary and the lineage. It reads the
artifacts (`run_data.load_run`) and never recomputes a metric. `render_compare_report` is the compare page.
"""

from __future__ import annotations

import json
import statistics
from datetime import timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from tunesmith.artifact_io import atomic_write_text
from tunesmith.artifacts import EvalManifest, MetricComparison
from tunesmith.errors import EnvironmentProblem, OutputExistsError, UsageError
from tunesmith.reports import metric_text as mt
from tunesmith.reports import svg
from tunesmith.reports.audit import script_json
from tunesmith.reports.compare_view import build_compare_view
from tunesmith.reports.run_data import RunArtifacts, as_number, eval_warnings, load_run, points
from tunesmith.reports.word_diff import word_diff

REPORT_FILE = "report.html"
DEFAULT_HEADLINE = "rougeL"
PERPLEXITIES = ("response_perplexity", "sequence_perplexity", "general_text_perplexity")


def render_run_report(run_dir: Path, out_path: Path | None = None, eval_id: str | None = None) -> Path:
    """Write the report of one run (default `<run_dir>/report.html`, atomically) and return its path.

    It shows the eval named `eval_id`, else the run's newest eval on the test split.
    """
    art = load_run(Path(run_dir), eval_id=eval_id)
    out_path = Path(out_path) if out_path else art.run_dir / REPORT_FILE
    return _write(out_path, "run.html.j2", build_run_view(art))


def render_compare_report(run_dirs: list[Path], out_path: Path) -> Path:
    """Write a page comparing several runs (settings, metrics, eval-loss curves) and return its path."""
    if not run_dirs:
        raise UsageError("nothing to compare: give at least one run folder")
    runs = [load_run(Path(d), samples=False, adapter_hash=False) for d in run_dirs]
    return _write(Path(out_path), "compare.html.j2", build_compare_view(runs))


GENERATOR_MARK = '<meta name="generator" content="tunesmith">'
# reports written before the generator mark existed: their first lines say what they are
OLD_REPORT_TITLES = ("<title>Run report · ", "<title>Run comparison · ")


def refuse_foreign_file(out_path: Path) -> None:
    """A report replaces only an earlier tunesmith report: any other file at `--out` is the user's, never overwritten."""
    if not (out_path.exists() or out_path.is_symlink()):
        return
    if out_path.is_symlink() or not out_path.is_file():
        raise OutputExistsError(f"{out_path}: is not a regular file; a report is written only as a new file or over "
                                "an earlier tunesmith report; choose another --out")
    with open(out_path, "rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace")
    if GENERATOR_MARK not in head and not any(title in head for title in OLD_REPORT_TITLES):
        raise OutputExistsError(f"{out_path}: already exists and is not a tunesmith report; it is left as it is. "
                                "Choose another --out, or move that file away")


def _write(out_path: Path, template: str, view: dict[str, Any]) -> Path:
    page = _environment().get_template(template).render(**view)
    refuse_foreign_file(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_path, page)
    except OSError as err:  # a full disk, a read-only folder, a file where a folder should be, ...
        raise EnvironmentProblem(f"{out_path}: cannot write the report ({_why(err, out_path)}); choose another "
                                 "--out, in a writable folder with free space") from None
    return out_path


def _why(err: OSError, out_path: Path) -> str:
    blocking = next((p for p in out_path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        return f"{blocking} is a file, not a folder"
    return err.strerror or type(err).__name__


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tunesmith.reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = svg.fmt_number
    env.filters["short"] = lambda v, n=12: str(v)[:n] if v else "–"
    env.filters["seconds"] = lambda v: f"{v:,.1f} s" if isinstance(v, (int, float)) else "–"
    env.filters["when"] = lambda v: v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return env


def pretty(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def headline_metric(ev: EvalManifest | None) -> MetricComparison | None:
    """The metric the eval config names as headline, else ROUGE-L, else the first one evaluated."""
    if ev is None or not ev.metrics:
        return None
    by_name = {m.name: m for m in ev.metrics}
    wanted = ev.config.get("headline") if isinstance(ev.config, dict) else None
    return by_name.get(str(wanted)) or by_name.get(DEFAULT_HEADLINE) or ev.metrics[0]


def metric_row(m: MetricComparison) -> dict[str, Any]:
    digits, state = mt.places(m), mt.status(m)
    wtl = f"{m.wins} / {m.ties} / {m.losses}" if m.wins is not None else "–"
    return {
        "name": m.name,
        "label": mt.label(m.name),
        "group": m.group,
        "status": state,
        "status_text": mt.STATUS_TEXT[state],
        "better": "↑ higher" if m.higher_is_better else "↓ lower",
        "base": mt.number(m.base, digits),
        "tuned": mt.number(m.tuned, digits),
        "delta": mt.delta(m),
        "interval": mt.interval(m),
        "wtl": wtl,
        "n": m.n,
        "version": m.version,
        "glyph": svg.interval_glyph(m.ci_low, m.ci_high, m.delta, state),
    }


def build_run_view(art: RunArtifacts) -> dict[str, Any]:
    """Everything run.html.j2 needs; a section is None when its artifact is missing (the notice says why)."""
    ev, head = art.eval, headline_metric(art.eval)
    verdict = (
        {"sentence": mt.verdict(head), "status": mt.status(head), "name": head.name, "label": mt.label(head.name)}
        if head
        else None
    )
    embedded = {"run": art.run.model_dump(mode="json"), "eval": ev.model_dump(mode="json") if ev else None}
    return {
        "run": art.run,
        "eval": ev,
        "eval_warnings": eval_warnings(ev),
        "card": art.card,
        "notices": art.notices,
        "verdict": verdict,
        "metrics": [metric_row(m) for m in ev.metrics] if ev else [],
        "perplexity": _perplexity(ev),
        "training": _training(art),
        "examples": _examples(art, head),
        "dataset": _dataset(art),
        "lineage": _lineage(art),
        "settings": _settings(ev),
        "data_json": script_json(embedded),
    }


def _perplexity(ev: EvalManifest | None) -> dict[str, Any] | None:
    found = [m for m in (ev.metrics if ev else []) if m.name in PERPLEXITIES]
    if not found:
        return None
    found.sort(key=lambda m: PERPLEXITIES.index(m.name))
    chart = svg.bar_chart([(mt.label(m.name), [m.base, m.tuned]) for m in found], ["base", "tuned"])
    has_general = any(m.name == "general_text_perplexity" for m in found)
    return {
        "rows": [metric_row(m) for m in found],
        "sentences": [mt.perplexity_sentence(m) for m in found],
        "chart": chart,
        "has_general": has_general,
    }


def _training(art: RunArtifacts) -> dict[str, Any]:
    rows, final = art.metrics, art.run.final_metrics
    train, evals, lr = points(rows, "loss"), points(rows, "eval_loss"), points(rows, "lr")
    last_eval = evals.pop() if evals else None  # the very last eval line scores the adapter that was saved
    markers = [("final", *last_eval)] if last_eval else []
    speeds = [v for r in rows if (v := as_number(r.get("tokens_per_s"))) is not None]
    memory = [v for r in rows if (v := as_number(r.get("peak_memory_mb"))) is not None]
    best = min(evals + ([last_eval] if last_eval else []), key=lambda p: p[1], default=None)
    stats = [
        ("steps", svg.fmt_number(int(max((x for x, _ in train + evals), default=0)))),
        # the trainer's own train_loss is the mean over the whole run, so the last logged step is shown when there is one
        ("last train loss", _fmt(train[-1][1])) if train else ("mean train loss", _fmt(final.get("train_loss"))),
        ("final eval loss (saved adapter)", _fmt(last_eval[1] if last_eval else final.get("eval_loss"))),
        ("best eval loss", f"{_fmt(best[1])} @ step {svg.fmt_number(best[0])}" if best else "–"),
        ("median tokens/s", svg.fmt_number(round(statistics.median(speeds))) if speeds else "–"),
        ("peak memory", f"{svg.fmt_number(round(max(memory)))} MB" if memory else "–"),
        (
            "tokens seen",
            svg.fmt_number(int(final["num_input_tokens_seen"])) if "num_input_tokens_seen" in final else "–",
        ),
        ("wall time", f"{art.run.wall_seconds:,.1f} s"),
    ]
    series = [("train loss", train), ("eval loss", evals)]
    return {
        "loss_chart": svg.line_chart(series, "step", "loss", markers=markers, width=1000, height=320),
        "lr_chart": svg.line_chart([("learning rate", lr)], "step", "learning rate", width=1000, height=170),
        "stats": stats,
        "final_metrics": sorted(final.items()),
    }


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _prompt(sample: dict) -> tuple[str, list[tuple[str, str]]]:
    """The last user message (the short view) and every message of the prompt (the full view)."""
    prompt = sample.get("prompt")
    if not isinstance(prompt, list):
        return str(prompt or ""), []
    messages = [(str(m.get("role", "?")), str(m.get("content", ""))) for m in prompt if isinstance(m, dict)]
    last_user = next((content for role, content in reversed(messages) if role == "user"), "")
    return last_user or (messages[-1][1] if messages else ""), messages


def _example_metric(samples: list[dict], head: MetricComparison | None) -> str | None:
    """Per-example scores exist for generation metrics only; a perplexity headline falls back to ROUGE-L."""
    names = {name for s in samples for name in (s.get("scores") or {})}
    for candidate in (head.name if head else None, DEFAULT_HEADLINE, *sorted(names)):
        if candidate in names:
            return candidate
    return None


def _score(sample: dict, metric: str | None, which: str) -> float | None:
    scores = (sample.get("scores") or {}).get(metric) if metric else None
    return as_number(scores.get(which)) if isinstance(scores, dict) else None


def _examples(art: RunArtifacts, head: MetricComparison | None) -> dict[str, Any] | None:
    if not art.samples:
        return None
    metric = _example_metric(art.samples, head)
    higher = head.higher_is_better if head and head.name == metric else True
    rows = []
    for order, sample in enumerate(art.samples):
        refs = sample.get("references")
        refs = [str(r) for r in refs] if isinstance(refs, list) else [str(refs or "")]
        last_user, messages = _prompt(sample)
        base, tuned = str(sample.get("base") or ""), str(sample.get("tuned") or "")
        b, t = _score(sample, metric, "base"), _score(sample, metric, "tuned")
        change = t - b if b is not None and t is not None else None
        rows.append(
            {
                "order": order,
                "id": str(sample.get("id", order)),
                "prompt": last_user,
                "messages": messages,
                "references": refs,
                "base_diff": word_diff(base, refs),
                "tuned_diff": word_diff(tuned, refs),
                "base_score": mt.number(b),
                "tuned_score": mt.number(t),
                "delta": mt.number(change, signed=True),
                "gain": (change if higher else -change) if change is not None else 0.0,
            }
        )
    counts = {
        k: sum(1 for r in rows if cond(r["gain"]))
        for k, cond in (("better", lambda g: g > 0), ("same", lambda g: g == 0), ("worse", lambda g: g < 0))
    }
    label = mt.label(metric) if metric else "score"
    return {
        "rows": rows,
        "metric": label,
        "counts": counts,
        "fallback": bool(head and metric != head.name),
        "headline": mt.label(head.name) if head else None,
    }


def _dataset(art: RunArtifacts) -> dict[str, Any] | None:
    card = art.card
    if card is None:
        return None
    warnings = [f"{s.name}: {w}" for s in card.stages for w in s.findings.get("warnings") or [] if isinstance(w, str)]
    reasons = []
    for stage in card.stages:
        by_reason = stage.findings.get("rejected_by_reason")
        if isinstance(by_reason, dict) and by_reason:
            reasons.append((stage.name, ", ".join(f"{k} ({v})" for k, v in sorted(by_reason.items()))))
    audit = art.card_file.parent / REPORT_FILE if art.card_file else None
    return {
        "funnel": svg.funnel([(s.name, s.rows_in, s.rows_out) for s in card.stages]),
        "warnings": warnings,
        "reasons": reasons,
        "path": str(art.card_file),
        "audit_report": str(audit) if audit and audit.is_file() else None,
    }


def _lineage(art: RunArtifacts) -> dict[str, Any]:
    ev = art.eval
    return {
        "adapter_sha256": art.adapter_sha256,
        "train_config": art.train_config or pretty(art.run.config),
        "eval_config": (art.eval_config or pretty(ev.config)) if ev else None,
        "codes": [("run", art.run.code)] + ([("eval", ev.code)] if ev else []),
    }


def _settings(ev: EvalManifest | None) -> dict[str, Any] | None:
    if ev is None:
        return None
    timings = [(k.replace("_", " "), svg.fmt_number(v)) for k, v in ev.timings.items()]
    return {
        "generation": sorted((str(k), _setting(v)) for k, v in ev.generation.items()),
        "bootstrap": sorted((str(k), _setting(v)) for k, v in ev.bootstrap.items()),
        "versions": [(mt.label(m.name), m.version) for m in ev.metrics],
        "timings": timings,
    }


def _setting(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
