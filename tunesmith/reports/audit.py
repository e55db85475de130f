"""Render a dataset card as one self-contained, offline HTML audit report (`render_audit_report`).

Reads only the card and never recomputes. Each section has a small view-model builder that tolerates
missing findings (a section whose stage is absent is left out); the autoescaped Jinja template lays them
out with inline CSS, inline SVG (geometry from `svg.py`) and a little vanilla JS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from tunesmith.artifact_io import atomic_write_text
from tunesmith.artifacts import DatasetCard, StageRecord
from tunesmith.reports import svg

TEMPLATE = "audit.html.j2"
CLIP = 300  # characters of row text shown in tables; the tooltip holds up to TOOLTIP
TOOLTIP = 2000

SIDES = ["prompt", "response"]
REJECTION_FINDINGS = {"rejected_by_reason", "rejected_samples"}
GENERIC_FINDINGS = {"warnings", "review", "review_total"}  # any stage's; shown in "Warnings and review items"
REVIEW_KEYS = "kind id where field text detail"
_JSON_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def render_audit_report(card: DatasetCard, out_path: Path) -> Path:
    """Write the audit report for `card` to `out_path` (atomically) and return the path."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, render_audit_html(card))
    return out_path


def render_audit_html(card: DatasetCard) -> str:
    return _environment().get_template(TEMPLATE).render(**build_view(card))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tunesmith.reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,  # a typo in the template fails the tests instead of rendering blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = svg.fmt_number
    env.filters["pct"] = lambda v: f"{float(v):.1%}" if isinstance(v, (int, float)) else "–"
    env.filters["short"] = lambda v, n=12: str(v)[:n] if v else "–"
    return env


def script_json(data: Any) -> Markup:
    """JSON safe inside `<script type="application/json">`: no `<`, `>`, `&` or line separators survive raw,
    so `</script>` or `<!--` in the data cannot end the block. The only place this module marks text safe."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    for char, escaped in _JSON_SCRIPT_ESCAPES.items():
        text = text.replace(char, escaped)
    return Markup(text)


def build_view(card: DatasetCard) -> dict[str, Any]:
    """Everything the template needs; a section is None (or empty) when the card has nothing for it."""
    stages = {s.name: s for s in card.stages}
    view = {name: build(stages[name]) if name in stages else None for name, (build, _) in SECTIONS.items()}
    return view | {
        "card": card,
        "funnel_chart": svg.funnel([(s.name, s.rows_in, s.rows_out) for s in card.stages]),
        "rejections": _rejections(card),
        "review": _review(card),
        "verdict": _verdict(card),
        "other": _other_findings(card),
        "config_json": _pretty(card.config),
        "card_json": script_json(card.model_dump(mode="json")),
    }


# -- small coercions: findings are free-form JSON, so never trust their shape ----------------------------


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _num(value: Any, default: float | None = 0) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _dicts(value: Any) -> list[dict]:
    return [item for item in _list(value) if isinstance(item, dict)]


def _pick(item: dict, keys: str) -> dict[str, str]:
    return {k: _clip(item.get(k, "")) for k in keys.split()}


def _nums(findings: dict, keys: str) -> dict[str, float]:
    return {k: _num(findings.get(k)) for k in keys.split()}


def _clip(text: Any, limit: int = CLIP) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pretty(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _by_count(counts: Any) -> list[tuple[str, float]]:
    return sorted(((str(k), _num(v)) for k, v in _dict(counts).items()), key=lambda kv: (-kv[1], kv[0]))


# -- section builders ------------------------------------------------------------------------------------


def _row_text(sample: dict) -> str:
    """The rejected row as a person would read it: its messages, else the raw line, else the parsed fields."""
    messages = _dicts(sample.get("messages"))
    if messages:
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in messages)
    if sample.get("raw") is not None:
        return str(sample["raw"])
    fields = sample.get("fields")
    if not isinstance(fields, dict):
        return "" if fields is None else str(fields)
    turns = [t for key in ("messages", "conversations") for t in _dicts(fields.get(key))]
    if turns:  # a chat row that failed validation: show its turns as they read, not as JSON
        return "\n".join(f"{t.get('role', t.get('from', '?'))}: {t.get('content', t.get('value', ''))}" for t in turns)
    return json.dumps(fields, ensure_ascii=False, default=str)


def _rejections(card: DatasetCard) -> list[dict[str, Any]]:
    out = []
    for stage in card.stages:
        reasons = _by_count(stage.findings.get("rejected_by_reason"))
        samples = _dicts(stage.findings.get("rejected_samples"))
        if not reasons and not samples:
            continue
        rows = [
            _pick(s, "id reason where")
            | {"detail": _clip(s.get("detail")) + (f" (field {s['field']})" if s.get("field") else "")}
            | {"content": _clip(_row_text(s)), "full": _clip(_row_text(s), TOOLTIP)}
            for s in samples
        ]
        view = {"stage": stage.name, "total": stage.rows_rejected, "file": stage.rejected_file, "reasons": reasons}
        out.append(view | {"samples": rows})
    return out


def _exact_dedup(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    groups = []
    for g in _dicts(f.get("groups")):
        dropped = [str(i) for i in _list(g.get("dropped"))]
        groups.append({"kept": str(g.get("kept", "")), "dropped": dropped, "more": _more(g, "dropped_total", dropped)})
    return {
        "duplicates": _num(f.get("duplicates"), stage.rows_rejected),
        "groups": groups,
        "file": stage.rejected_file or "rejected/exact_dedup.jsonl",
        "key_fields": [str(k) for k in _list(f.get("key_fields"))],
        "warnings": _list(f.get("warnings")),
    }


def _near_dedup(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    clusters = []
    for c in _dicts(f.get("clusters")):
        texts = _dict(c.get("member_texts"))
        members = [
            _pick(m, "id") | {"jaccard": _num(m.get("jaccard"), None), "text": _clip(texts.get(m.get("id")))}
            for m in _dicts(c.get("members"))
        ]
        clusters.append({"kept": str(c.get("kept", "")), "kept_text": _clip(c.get("kept_text")), "members": members,
                         "more": _more(c, "members_total", members)})
    return {
        "num_clusters": _num(f.get("num_clusters"), len(clusters)),
        "clusters": clusters,
        "clusters_file": f.get("clusters_file") if isinstance(f.get("clusters_file"), str) else None,
        "duplicate_rows": _num(f.get("duplicate_rows"), stage.rows_rejected),
        "params": sorted(_dict(f.get("params")).items()),
    }


def _more(group: dict, total_key: str, listed: list) -> int:
    """How many members the card left out of a group (it lists the first few; cards before the cap list all)."""
    return max(int(_num(group.get(total_key), len(listed))) - len(listed), 0)


def _pii(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    counts = {str(t): _dict(by_role) for t, by_role in _dict(f.get("counts")).items()}
    roles = sorted({str(r) for by_role in counts.values() for r in by_role})
    table = [
        {"type": t, "cells": [_num(by_role.get(r)) for r in roles], "total": sum(_num(v) for v in by_role.values())}
        for t, by_role in sorted(counts.items())
    ]
    examples = [_pick(e, "id type role field masked") for e in _dicts(f.get("examples"))]
    # values left unmasked: would-be PII inside code, and allow-listed values with the reason
    skipped = [(str(t), "inside code", _num(n)) for t, n in sorted(_dict(f.get("in_code")).items())]
    skipped += [(str(t), str(why), _num(n)) for t, by_why in sorted(_dict(f.get("allowlisted")).items())
                for why, n in sorted(_dict(by_why).items())]  # fmt: skip
    return _nums(f, "rows_with_pii in_code_rows") | {
        "roles": roles,
        "table": table,
        "examples": examples,
        "skipped": skipped,
        "action": str(f.get("action") or "–"),
        "phone_coverage": f.get("phone_coverage") if isinstance(f.get("phone_coverage"), str) else None,
    }


def _terms(block: Any, *counts: str) -> dict[str, Any]:
    """A bias-audit block: some counts, top terms (or term+negative pairs) and example ids."""
    block = _dict(block)
    top = block.get("top_terms", block.get("pairs"))
    return {k: _num(block.get(k)) for k in counts} | {
        "top_terms": _by_count(top)[:10],
        "example_ids": _list(block.get("example_ids"))[:10],
    }


def _bias(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    terms = sorted(_dict(f.get("identity_terms")).items())
    categories = [{"name": str(k)} | _terms(v, "prompt", "response", "rows") for k, v in terms]
    cooccurrence = [{"name": str(k)} | _terms(v, "rows") for k, v in sorted(_dict(f.get("cooccurrence")).items())]
    pronouns = _dict(f.get("pronouns"))
    sides = [_dict(pronouns.get(side)) for side in ("prompt", "response")]
    pronoun_rows = [(p, [_num(side.get(p)) for side in sides]) for p in ("he", "she", "they")]
    tox = _dict(f.get("toxicity"))
    return {
        "warnings": _list(f.get("warnings")),
        "categories": categories,
        "category_chart": svg.bar_chart([(c["name"], [c["prompt"], c["response"]]) for c in categories], SIDES),
        "pronoun_chart": svg.bar_chart(pronoun_rows, SIDES) if pronouns else None,
        "he_she_ratio": pronouns.get("he_she_ratio"),
        "cooccurrence": cooccurrence,
        "toxicity": _terms(tox, "rows") | {"rate": _num(tox.get("rate"), None)} if tox else None,
        "languages": _by_count(f.get("languages")),
        "language_sample_size": f.get("language_sample_size"),
        "language_too_short": _num(f.get("language_too_short"), None),
        "coverage": f.get("coverage") if isinstance(f.get("coverage"), str) else None,
    }


def _tokens(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    hist, max_len = _dict(f.get("histogram")), f.get("max_seq_len")
    length, trainable = _dict(f.get("length")), _dict(f.get("trainable_tokens"))
    rejected = _dict(f.get("rejected_answers"))
    return _nums(f, "truncated_rows zero_trainable_rows cut_answer_rows tool_rows") | {
        "cut_ids": _list(f.get("cut_answer_example_ids"))[:20],
        "counting": _dict(f.get("counting")).get("method"),
        "rejected_answers": _nums(rejected, "rows truncated_rows cut_answer_rows") if rejected else None,
        "tokenizer": f.get("tokenizer"),
        "max_seq_len": max_len,
        "length": [(k, length[k]) for k in ("min", "mean", "p50", "p90", "p99", "max") if k in length],
        "histogram": svg.histogram(_list(hist.get("edges")), _list(hist.get("counts")), _num(max_len, None)),
        "truncated_ids": _list(f.get("truncated_example_ids"))[:20],
        "trainable": [(k, trainable[k]) for k in ("total", "mean", "min", "max") if k in trainable],
    }


def _split(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    sizes = [(str(k), _num(v)) for k, v in _dict(f.get("sizes")).items()]
    strata = {str(k): _dict(v) for k, v in _dict(f.get("strata")).items()}
    values = sorted({str(v) for per_split in strata.values() for v in per_split})
    return {
        "sizes": sizes,
        "chart": svg.bar_chart([(k, [v]) for k, v in sizes], ["rows"]),
        "groups": f.get("groups"),
        "stratify": f.get("stratify"),
        "strata_values": values,
        "strata": [(s, [_num(per.get(v)) for v in values]) for s, per in sorted(strata.items())],
        "ratios": [(str(k), _nums(_dict(v), "asked achieved rows")) for k, v in _dict(f.get("ratios")).items()],
    }


def _contamination(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    pairs = [_pick(p, "a a_split b b_split kind span") for p in _dicts(f.get("pairs"))]
    rates = [(str(k), _nums(_dict(v), "rows contaminated rate")) for k, v in _dict(f.get("rates")).items()]
    return _nums(f, "contaminated_rows") | {"ngram": f.get("ngram"), "pairs": pairs, "rates": rates,
                                            "rate": _num(f.get("contamination_rate"), None)}


def _validate(stage: StageRecord) -> dict[str, Any]:
    f = stage.findings
    profile = _dict(f.get("profile"))
    identical = _dict(profile.get("identical_responses"))
    return {
        "fixups": _by_count(f.get("fixups")),
        "formats": sorted((str(k), str(v)) for k, v in _dict(f.get("formats")).items()),
        "ignored_columns": _by_count(f.get("ignored_columns")),
        "multimodal": _by_count(_dict(f.get("multimodal")).get("by_kind")),
        "profile": _profile_rows(profile),
        "placeholders": _by_count(_dict(profile.get("placeholders")).get("by_kind")),
        "identical_share": _num(identical.get("share"), None),
    }


def _verdict(card: DatasetCard) -> dict[str, Any] | None:
    verdict = _dict(card.verdict)
    if not verdict.get("sentence"):
        return None
    return {"fit": verdict.get("fit") is True, "sentence": _clip(verdict["sentence"], TOOLTIP)}


def _review(card: DatasetCard) -> list[dict[str, Any]]:
    """Every stage's warnings and review items (the shared findings convention), one block per stage."""
    out = []
    for stage in card.stages:
        warnings = [_clip(w, TOOLTIP) for w in _list(stage.findings.get("warnings"))]
        items = [_pick(item, REVIEW_KEYS) for item in _dicts(stage.findings.get("review"))]
        if not warnings and not items:
            continue
        total = int(_num(stage.findings.get("review_total"), len(items)))
        out.append({"stage": stage.name, "warnings": warnings, "entries": items, "more": max(total - len(items), 0)})
    return out


def _profile_rows(profile: dict) -> list[dict[str, Any]]:
    """validate's column profile as table rows: each raw field, then each role."""
    rows = []
    for kind, key in (("field", "fields"), ("role", "roles")):
        for name, summary in _dict(profile.get(key)).items():
            summary = _dict(summary)
            rows.append({"kind": kind, "name": str(name), "top_value": _clip(summary.get("top_value"))}
                        | _nums(summary, "rows distinct distinct_ratio top_share"))
    return rows


def _other_findings(card: DatasetCard) -> list[dict[str, str]]:
    out = []
    for stage in card.stages:
        known = set(SECTIONS.get(stage.name, (None, ""))[1].split()) | REJECTION_FINDINGS | GENERIC_FINDINGS
        rest = {k: v for k, v in stage.findings.items() if k not in known}
        if rest:
            out.append({"stage": stage.name, "names": ", ".join(sorted(rest)), "json": _pretty(rest)})
    return out


# Stage name -> (section builder, the findings it renders); a stage's other findings go to "Other findings".
SECTIONS: dict[str, tuple[Callable[[StageRecord], dict[str, Any]], str]] = {
    "validate": (_validate, "fixups formats ignored_columns multimodal profile"),
    "exact_dedup": (_exact_dedup, "duplicates groups key_fields warnings conflicting_labels"),
    "near_dedup": (_near_dedup, "num_clusters duplicate_rows params clusters clusters_file"),
    "pii": (_pii, "counts rows_with_pii examples action in_code in_code_rows allowlisted phone_regions phone_regions_from_script phone_coverage"),
    "bias_audit": (_bias, "identity_terms pronouns cooccurrence toxicity languages language_sample_size warnings coverage languages_covered language_too_short"),
    "token_stats": (
        _tokens,
        "tokenizer max_seq_len length histogram truncated_rows truncated_example_ids trainable_tokens zero_trainable_rows "
        "cut_answer_rows cut_answer_example_ids counting rejected_answers tool_rows",
    ),
    "split": (_split, "sizes groups stratify strata ratios"),
    "contamination": (_contamination, "ngram contaminated_rows pairs rates contamination_rate"),
}
