"""The version's README.md: a Hugging Face dataset card with Datasheets-for-Datasets sections.

Sections the pipeline measured are filled in; questions only a person can answer (motivation, consent,
funding) are marked NEEDS INPUT so nobody mistakes a blank for an answer. Every value that comes from data,
paths or config goes through `code` or `text`, so a file name or a finding cannot add HTML, links or headings
to a card that a browser renders.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import yaml
from huggingface_hub import DatasetCardData

from tunesmith.artifact_io import atomic_write_text
from tunesmith.artifacts import DatasetCard as Card

NEEDS_INPUT = "**NEEDS INPUT** — only the dataset's authors can answer this."
REVIEW_SHOWN = 10  # review items listed per stage; card.json and the report hold the rest

# a line break inside a value would end the paragraph, list item or table row it sits in, and the next line
# could open a heading; other control characters are shown escaped too
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# inline markup anywhere in a line (emphasis, code, links, strikethrough, table cells, math); & < > " ' are left
# to html.escape, since a backslash before an entity would show the entity's letters
_INLINE = re.compile(r"([\\`*_\[\]~|$])")
# block markup at the start of a line (heading, list item, setext underline, ordered list): escaped at the start
# of a value too, although no template puts a value first on its line
_LEADING = re.compile(r"^([#+\-=]|\d+[.)])")
_BACKTICKS = re.compile(r"`+")
_HF_SPLIT = re.compile(r"\w+(\.\w+)*")  # the split names `datasets` accepts (datasets.splits._split_re)


def _one_line(value: object) -> str:
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\u{ord(m.group()):04x}"), str(value))


def text(value: object) -> str:
    """`value` as literal inline Markdown text: one line, markup characters backslash-escaped, HTML-escaped."""
    escaped = _INLINE.sub(r"\\\1", _one_line(value))
    escaped = _LEADING.sub(lambda m: m.group()[:-1] + "\\" + m.group()[-1], escaped)
    return html.escape(escaped, quote=True)


def code(value: object) -> str:
    """`value` as a code span shown literally: the fence is longer than any run of backticks inside, and a value
    that starts or ends with a backtick or space is padded (CommonMark strips one space from each side unless
    the span is all spaces). An empty value shows as one space: a code span cannot be empty."""
    inner = _one_line(value) or " "
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(inner)), default=0) + 1)
    if inner.strip(" ") and (inner[0] in "` " or inner[-1] in "` "):
        inner = f" {inner} "
    return f"{fence}{inner}{fence}"


def _size_category(rows: int) -> str:
    for limit, label in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if rows < limit:
            return label
    return "n>1M"


def _stage_lines(card: Card) -> list[str]:
    lines = ["| stage | rows in | rows out | rejected | seconds |", "|---|---:|---:|---:|---:|"]
    for s in card.stages:
        lines.append(f"| {text(s.name)} | {s.rows_in} | {s.rows_out} | {s.rows_rejected} | {s.seconds:.2f} |")
    warnings = [(s.name, w) for s in card.stages if isinstance(s.findings.get("warnings"), list)
                for w in s.findings["warnings"]]
    if warnings:
        lines += ["", "Warnings:", ""] + [f"- {code(stage)}: {text(warning)}" for stage, warning in warnings]
    return lines + _review_lines(card) + _profile_lines(card)


def _review_lines(card: Card) -> list[str]:
    """The first review items of each stage: what was found, where, and the span that triggered it."""
    lines = []
    for s in card.stages:
        items = [i for i in s.findings.get("review") or [] if isinstance(i, dict)]
        total = s.findings.get("review_total", len(items))
        for item in items[:REVIEW_SHOWN]:
            field = f" ({text(item['field'])})" if item.get("field") else ""
            lines.append(f"- {code(s.name)} {code(item.get('kind', '?'))} at {code(item.get('where') or '?')}{field}: "
                         f"{code(str(item.get('text', ''))[:200])} — {text(item.get('detail', ''))}")
        if isinstance(total, int) and total > min(len(items), REVIEW_SHOWN):
            lines.append(f"- {code(s.name)}: {total - min(len(items), REVIEW_SHOWN)} more in `card.json` and the report")
    return ["", "Review items (for a person to look at):", "", *lines] if lines else []


def _profile_lines(card: Card) -> list[str]:
    """validate's column profile: how varied each raw field and role of the kept rows is."""
    stage = card.stage("validate")
    profile = stage.findings.get("profile") if stage else None
    if not isinstance(profile, dict):
        return []
    lines = ["", "Column profile of the kept rows:", "", "| column | rows | distinct ratio | top value share | top value |",
             "|---|---:|---:|---:|---|"]
    for kind in ("fields", "roles"):
        for name, summary in (profile.get(kind) or {}).items():
            if isinstance(summary, dict) and summary.get("rows"):
                top = summary.get("top_value")
                lines.append(f"| {text(name)} ({kind[:-1]}) | {_number(summary['rows'])} "
                             f"| {_number(summary.get('distinct_ratio'))} | {_number(summary.get('top_share'))} "
                             f"| {code(top) if top is not None else '–'} |")
    return lines


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else text(value)


def _composition(card: Card) -> list[str]:
    lines = [f"- **{text(name)}**: {split.rows} rows ({_files(split)}, sha256 {code(split.sha256[:12])}…)"
             for name, split in card.splits.items()]
    findings = {s.name: s.findings for s in card.stages}
    langs = findings.get("bias_audit", {}).get("languages")
    if langs:
        shown = ", ".join(f"{text(k)}: {text(v)}" for k, v in sorted(langs.items(), key=lambda kv: str(kv[0])))
        lines.append(f"- Languages (sampled): {shown}")
    if "pii" in findings:
        lines.append(f"- Rows with personal information found by `pii`: "
                     f"{text(findings['pii'].get('rows_with_pii', 0))} "
                     f"(action: {text(findings['pii'].get('action', 'report'))})")
    ignored = findings.get("validate", {}).get("ignored_columns")
    if isinstance(ignored, dict) and ignored:
        shown = ", ".join(f"{code(k)} ({text(v)} rows)" for k, v in ignored.items())
        lines.append(f"- Columns not read (ignored): {shown}; `keep_columns` on a source keeps them")
    tokens = findings.get("token_stats", {}).get("length")
    if tokens:
        lines.append(f"- Tokens per row ({code(card.tokenizer.name) if card.tokenizer else '?'}): "
                     f"median {text(tokens.get('p50'))}, p99 {text(tokens.get('p99'))}, max {text(tokens.get('max'))}")
    return lines


def _files(split) -> str:
    if split.shards is None:
        return code(split.file)
    count = len(split.shards)
    return f"{count} Parquet shard{'s' if count > 1 else ''} from {code(split.shards[0].file)}"


def data_configs(card: Card) -> list[dict] | None:
    """The `configs:` entry that lets `datasets.load_dataset(<card folder>)` read the splits (and nothing else
    in the folder: rejected rows, card.json). Files are listed by name, not by glob, since one split's name may
    begin another's. None when a split name is one `datasets` refuses (it takes word characters and dots)."""
    if not all(_HF_SPLIT.fullmatch(name) for name in card.splits):
        return None
    files = [{"split": name, "path": [part.file for part in split.parts()]} for name, split in card.splits.items()]
    return [{"config_name": "default", "data_files": files}]


def front_matter(card: Card) -> str:
    """The YAML metadata block; every value one line and quoted by yaml.safe_dump where YAML needs it."""
    total = sum(s.rows for s in card.splits.values())
    stage = card.stage("bias_audit")
    langs = stage.findings.get("languages", {}) if stage else {}
    data = DatasetCardData(
        pretty_name=_one_line(card.name), license="other",
        language=[_one_line(k) for k in sorted(langs, key=langs.get, reverse=True)[:5]] or None,
        task_categories=["text-generation"], size_categories=[_size_category(total)],
        tags=["sft", "tunesmith", f"fingerprint:{_one_line(card.fingerprint[:16])}"],
    )
    metadata = data.to_dict()
    configs = data_configs(card)
    if configs is not None:
        metadata["configs"] = configs
    dumped = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=float("inf"))
    return f"---\n{dumped}---\n"


def render_readme(card: Card) -> str:
    sources = [f"- {code(s.path)} ({text(s.format)}, {s.rows} rows, sha256 {code((s.sha256 or 'n/a')[:12])})"
               for s in card.sources]
    body = [
        f"# {text(card.name)} ({text(card.version)})", "",
        f"Curated by tunesmith {text(card.code.package_version)}; fingerprint {code(card.fingerprint)}; "
        f"created {card.created_at.isoformat()}. The machine-readable record is `card.json`.", "",
        *([f"**Fitness:** {text(card.verdict['sentence'])}", ""] if (card.verdict or {}).get("sentence") else []),
        "## Motivation", "", NEEDS_INPUT + " Why was the dataset created, for which task, and by whom?", "",
        "## Composition", "", *_composition(card), "",
        "## Collection process", "", *sources, "", "Consent and collection: " + NEEDS_INPUT, "",
        "## Preprocessing, cleaning and labelling", "", *_stage_lines(card), "",
        "Rejected rows and their reasons are in `rejected/<stage>.jsonl`; the audit report is `report.html`.", "",
        "## Uses", "", NEEDS_INPUT + " Intended uses and uses to avoid.", "",
        "## Distribution", "", "License: " + NEEDS_INPUT, "",
        "## Maintenance", "", "Maintainer and funding: " + NEEDS_INPUT, "",
    ]
    return front_matter(card) + "\n" + "\n".join(body)


def write_dataset_readme(card: Card, path: Path) -> None:
    atomic_write_text(path, render_readme(card))
