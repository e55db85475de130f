"""The version's README.md: a Hugging Face dataset card with Datasheets-for-Datasets sections.

Sections the pipeline measured are filled in; questions only a person can answer (motivation, consent,
funding) are marked NEEDS INPUT so nobody mistakes a blank for an answer.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from tunesmith.artifacts import DatasetCard as Card

NEEDS_INPUT = "**NEEDS INPUT** — only the dataset's authors can answer this."


def _size_category(rows: int) -> str:
    for limit, label in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if rows < limit:
            return label
    return "n>1M"


def _stage_lines(card: Card) -> list[str]:
    lines = ["| stage | rows in | rows out | rejected | seconds |", "|---|---:|---:|---:|---:|"]
    for s in card.stages:
        lines.append(f"| {s.name} | {s.rows_in} | {s.rows_out} | {s.rows_rejected} | {s.seconds:.2f} |")
    return lines


def _composition(card: Card) -> list[str]:
    lines = [f"- **{name}**: {split.rows} rows (`{split.file}`, sha256 `{split.sha256[:12]}…`)"
             for name, split in card.splits.items()]
    findings = {s.name: s.findings for s in card.stages}
    langs = findings.get("bias_audit", {}).get("languages")
    if langs:
        lines.append(f"- Languages (sampled): {', '.join(f'{k}: {v}' for k, v in sorted(langs.items()))}")
    if "pii" in findings:
        lines.append(f"- Rows with personal information found by `pii`: {findings['pii'].get('rows_with_pii', 0)} "
                     f"(action: {findings['pii'].get('action', 'report')})")
    tokens = findings.get("token_stats", {}).get("length")
    if tokens:
        lines.append(f"- Tokens per row ({card.tokenizer.name if card.tokenizer else '?'}): "
                     f"median {tokens.get('p50')}, p99 {tokens.get('p99')}, max {tokens.get('max')}")
    return lines


def render_readme(card: Card) -> str:
    total = sum(s.rows for s in card.splits.values())
    langs = card.stage("bias_audit").findings.get("languages", {}) if card.stage("bias_audit") else {}
    data = DatasetCardData(
        pretty_name=card.name, license="other", language=sorted(langs, key=langs.get, reverse=True)[:5] or None,
        task_categories=["text-generation"], size_categories=[_size_category(total)],
        tags=["sft", "tunesmith", f"fingerprint:{card.fingerprint[:16]}"],
    )
    sources = [f"- `{s.path}` ({s.format}, {s.rows} rows, sha256 `{(s.sha256 or 'n/a')[:12]}`)" for s in card.sources]
    body = [
        f"# {card.name} ({card.version})", "",
        f"Curated by tunesmith {card.code.package_version}; fingerprint `{card.fingerprint}`; "
        f"created {card.created_at.isoformat()}. The machine-readable record is `card.json`.", "",
        "## Motivation", "", NEEDS_INPUT + " Why was the dataset created, for which task, and by whom?", "",
        "## Composition", "", *_composition(card), "",
        "## Collection process", "", *sources, "", "Consent and collection: " + NEEDS_INPUT, "",
        "## Preprocessing, cleaning and labelling", "", *_stage_lines(card), "",
        "Rejected rows and their reasons are in `rejected/<stage>.jsonl`; the audit report is `report.html`.", "",
        "## Uses", "", NEEDS_INPUT + " Intended uses and uses to avoid.", "",
        "## Distribution", "", "License: " + NEEDS_INPUT, "",
        "## Maintenance", "", "Maintainer and funding: " + NEEDS_INPUT, "",
    ]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)


def write_dataset_readme(card: Card, path: Path) -> None:
    DatasetCard(render_readme(card)).save(str(path))
