"""The view model of the compare page: one row per run (settings and metrics), overlaid loss curves, and flags.

Runs scored on different test sets (card fingerprint, split or size differ) are grouped and flagged, and the
best value per metric is marked within a test set only: numbers from different test sets do not compare.
"""

from __future__ import annotations

import string
from typing import Any

from tunesmith.artifacts import MetricComparison
from tunesmith.reports import metric_text as mt
from tunesmith.reports import svg
from tunesmith.reports.audit import script_json
from tunesmith.reports.run_data import RunArtifacts, eval_warnings, points


def _test_set(art: RunArtifacts) -> tuple[str, str, int] | None:
    ev = art.eval
    return (ev.card_fingerprint, ev.split, ev.n_examples) if ev else None


def _group_labels(runs: list[RunArtifacts]) -> dict[tuple[str, str, int], str]:
    labels: dict[tuple[str, str, int], str] = {}
    for art in runs:
        key = _test_set(art)
        if key is not None and key not in labels:
            letters = string.ascii_uppercase
            labels[key] = letters[len(labels) % 26] + (str(len(labels) // 26) if len(labels) >= 26 else "")
    return labels


def _settings(art: RunArtifacts) -> dict[str, str]:
    cfg = art.run.config
    lora = cfg.get("lora") if isinstance(cfg.get("lora"), dict) else {}
    steps = cfg.get("max_steps")
    return {
        "lora": f"r={lora.get('r', '–')} · α={lora.get('alpha', '–')}",
        "lr": f"{cfg['learning_rate']:g}" if isinstance(cfg.get("learning_rate"), (int, float)) else "–",
        "steps": f"{steps:,}" if isinstance(steps, int) else f"{cfg.get('epochs', '–')} epoch(s)",
        "batch": f"{cfg.get('batch_size', '–')} × {cfg.get('grad_accumulation', 1)}",
    }


def _cell(m: MetricComparison) -> dict[str, Any]:
    state = mt.status(m)
    return {
        "tuned": mt.number(m.tuned, mt.places(m)),
        "delta": mt.delta(m),
        "interval": mt.interval(m),
        "status": state,
        "status_text": mt.STATUS_TEXT[state],
        "best": False,
        "value": m.tuned,
        "higher": m.higher_is_better,
    }


def _mark_best(rows: list[dict[str, Any]], names: list[str]) -> None:
    """Mark the best tuned value per metric among runs on the same test set (when at least two compete)."""
    for name in names:
        by_group: dict[str, list[dict]] = {}
        for row in rows:
            if name in row["cells"]:
                by_group.setdefault(row["test_set"], []).append(row["cells"][name])
        for cells in by_group.values():
            if len(cells) < 2:
                continue
            pick = max if cells[0]["higher"] else min
            best = pick(c["value"] for c in cells)
            if all(c["value"] == best for c in cells):
                continue  # a tie across the board marks nothing
            for cell in cells:
                cell["best"] = cell["value"] == best


def _flags(runs: list[RunArtifacts], groups: dict[tuple[str, str, int], str], names: list[str]) -> list[str]:
    flags = []
    if len(groups) > 1:
        sets = "; ".join(f"{label}: card {fp[:12]}, split {split}, n={n}" for (fp, split, n), label in groups.items())
        flags.append(
            f"These runs were evaluated on {len(groups)} different test sets ({sets}). Scores from "
            "different test sets are not comparable: a higher score may only mean an easier test set. "
            "Best values are marked within each test set only."
        )
    for name in names:
        versions = {m.version for art in runs if art.eval for m in art.eval.metrics if m.name == name}
        if len(versions) > 1:
            flags.append(
                f"{mt.label(name)} was computed with different settings across runs (its version "
                f"strings differ: {' | '.join(sorted(versions))})."
            )
    for art in runs:
        flags += [f"{art.run.run_id}: {warning}." for warning in eval_warnings(art.eval)]
    missing = [art.run.run_id for art in runs if art.eval is None]
    if missing:
        flags.append(f"Not evaluated, so no metrics: {', '.join(missing)}.")
    return flags


def build_compare_view(runs: list[RunArtifacts]) -> dict[str, Any]:
    groups = _group_labels(runs)
    groups_of = {m.name: m.group for art in runs if art.eval for m in art.eval.metrics}
    names = list(groups_of)
    rows = []
    for art in runs:
        ev, key = art.eval, _test_set(art)
        evals = points(art.metrics, "eval_loss")
        rows.append(
            {
                "run_id": art.run.run_id,
                "fingerprint": art.run.card_fingerprint,
                "card": f"{art.card.name} {art.card.version}" if art.card else None,
                "test_set": groups.get(key) if key else None,
                "split": ev.split if ev else None,
                "n": ev.n_examples if ev else None,
                "base_model": art.run.base_model,
                "quantization": art.run.quantization,
                "settings": _settings(art),
                "eval_loss": f"{evals[-1][1]:.4f}" if evals else "–",
                "wall": art.run.wall_seconds,
                "cells": {m.name: _cell(m) for m in ev.metrics} if ev else {},
            }
        )
    _mark_best(rows, names)
    base_models = {art.run.base_model for art in runs}
    embedded = [
        {"run": a.run.model_dump(mode="json"), "eval": a.eval.model_dump(mode="json") if a.eval else None}
        for a in runs
    ]
    return {
        "rows": rows,
        "metric_groups": [
            (title, [(name, mt.label(name)) for name in names if groups_of[name] == group])
            for group, title in (("generation", "Generated answers"), ("perplexity", "Perplexity (lower is better)"))
            if group in groups_of.values()
        ],
        "flags": _flags(runs, groups, names),
        "mixed_base": len(base_models) > 1,
        "eval_chart": svg.line_chart(
            [(a.run.run_id, points(a.metrics, "eval_loss")) for a in runs], "step", "eval loss", width=1000, height=320
        ),
        "train_chart": svg.line_chart(
            [(a.run.run_id, points(a.metrics, "loss")) for a in runs], "step", "train loss", width=1000, height=260
        ),
        "data_json": script_json(embedded),
    }
