"""Stage `pii`: find personal data and secrets in message text, then report, mask or drop the rows.

Detection lives in `pii_detectors` (what is a value), `pii_allow` (reserved and documentation values that
are found but never masked) and `pii_code` (code regions, skipped by default). Findings hold partially
masked values only, so the dataset card and the HTML report never repeat a full email, number or key.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from typing import Literal

import phonenumbers
from pydantic import Field, field_validator

from tunesmith.config import StrictModel
from tunesmith.curate.pii_allow import USER, AllowList
from tunesmith.curate.pii_detectors import PII_TYPES, Hit, Scanner, find_pii
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import Stage, StageContext, register_stage

__all__ = ["PII_TYPES", "Pii", "find_pii", "mask_text", "preview"]

log = logging.getLogger(__name__)

MAX_IDS = 50
MAX_REVIEW = 50
_CONTEXT = 100  # characters shown either side of a value in a review item

# (index into the row's turn list, field name, message, hits)
Found = tuple[int, str, Message, list[Hit]]


def mask_text(text: str, spans: list) -> str:
    """Replace each span (start, end, type, ...) with its placeholder, e.g. `[EMAIL]`."""
    parts, pos = [], 0
    for start, end, kind, *_ in spans:
        parts.append(text[pos:start])
        parts.append(f"[{kind.upper()}]")
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def preview(kind: str, value: str) -> str:
    """A partially masked value that a report may show: enough to recognise the kind, never the value."""
    digits = re.sub(r"\D", "", value)
    if kind == "email":
        local, _, domain = value.partition("@")
        name, _, tld = domain.rpartition(".")
        return f"{local[:1]}***@{name[:1]}{'*' * (len(name) - 1)}.{tld}"
    if kind == "credit_card":
        return "****-****-****-" + digits[-4:]
    if kind == "ssn":
        return "***-**-" + digits[-4:]
    if kind == "phone":
        return "*" * (len(digits) - 2) + digits[-2:]
    if kind == "iban":
        compact = value.replace(" ", "")
        return compact[:2] + "*" * (len(compact) - 4) + compact[-2:]
    if kind == "ip_address":
        if "." in value:
            return value.split(".")[0] + ".*.*.*"
        return value.split(":")[0] + ":****"
    return value[:4] + "*" * 8


def _shown(hit: Hit) -> str:
    """How a review item shows a value: built-in reserved values are public by definition; all else is masked."""
    return hit.value if hit.allowed and hit.allowed != USER else preview(hit.type, hit.value)


def _snippet(text: str, hit: Hit, hits: list[Hit]) -> str:
    """The text around a hit, every value in it shown as `_shown` gives, whitespace folded, at most 300 characters."""
    lo, hi = max(0, hit.start - _CONTEXT), min(len(text), hit.end + _CONTEXT)
    near = [h for h in hits if h.start < hi and lo < h.end]
    lo, hi = min(lo, *(h.start for h in near)), max(hi, *(h.end for h in near))
    parts, pos = [], lo
    for h in near:
        parts += [text[pos : h.start], _shown(h)]
        pos = h.end
    parts.append(text[pos:hi])
    return " ".join("".join(parts).split())[:300]


class _Tally:
    """Counts, examples and review items across rows, written as the stage's findings."""

    def __init__(self, max_examples: int):
        self.max_examples = max_examples
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.in_code: Counter[str] = Counter()
        self.allowlisted: dict[str, Counter[str]] = defaultdict(Counter)
        self.mask_counts: Counter[str] = Counter()
        self.rows = self.in_code_rows = 0
        self.ids: list[str] = []
        self.examples: list[dict[str, str]] = []
        self.review: dict[str, list[dict]] = {"pii_in_code": [], "pii_allowlisted": []}
        self.review_total = 0
        self.derived_regions: Counter[str] = Counter()  # rows in which a script added a phone region

    def add_regions(self, scanner: Scanner, example: Example) -> None:
        self.derived_regions.update({r for _, _, m in _turns(example) for r in scanner.extra_regions(m.content)})

    def add_pii(self, example: Example, found: list[Found]) -> None:
        self.rows += 1
        if len(self.ids) < MAX_IDS:
            self.ids.append(example.id)
        for _, field, message, hits in found:
            for hit in hits:
                self.counts[hit.type][message.role] += 1
                if len(self.examples) < self.max_examples:
                    self.examples.append({"id": example.id, "type": hit.type, "role": message.role,
                                          "field": field, "masked": preview(hit.type, hit.value)})  # fmt: skip

    def add_skipped(self, example: Example, found: list[Found], hits_of: dict[str, list[Hit]]) -> None:
        """Hits that are not masked: allow-listed values and would-be PII inside code."""
        if any(not h.allowed for *_, hits in found for h in hits):
            self.in_code_rows += 1
        for _, field, message, hits in found:
            for hit in hits:
                text, shown = _snippet(message.content, hit, hits_of[field]), _shown(hit)
                if hit.allowed:
                    self.allowlisted[hit.type][hit.allowed] += 1
                    self._review(example, field, "pii_allowlisted", text,
                                 f"{hit.type} {shown} is allow-listed ({hit.allowed}), so it is not counted or masked")
                else:
                    self.in_code[hit.type] += 1
                    self._review(example, field, "pii_in_code", text,
                                 f"{hit.type} {shown} found inside code; not masked (set scan_code: true to mask it)")

    def _review(self, example: Example, field: str, kind: str, text: str, detail: str) -> None:
        self.review_total += 1
        items = self.review[kind]
        if len(items) < MAX_REVIEW // 2:  # each kind gets half, so thousands of loopbacks cannot hide code hits
            items.append({"kind": kind, "id": example.id, "where": example.where, "field": field,
                          "text": text, "detail": detail})  # fmt: skip

    def write(self, ctx: StageContext, action: str, regions: list[str]) -> None:
        ctx.finding("counts", {kind: dict(self.counts[kind]) for kind in PII_TYPES if kind in self.counts})
        ctx.finding("rows_with_pii", self.rows)
        ctx.finding("rows_with_pii_ids", self.ids)
        ctx.finding("examples", self.examples)
        ctx.finding("action", action)
        if action == "mask":
            ctx.finding("mask_counts", dict(self.mask_counts))
        ctx.finding("in_code", {kind: self.in_code[kind] for kind in PII_TYPES if kind in self.in_code})
        ctx.finding("in_code_rows", self.in_code_rows)
        ctx.finding("allowlisted", {kind: dict(self.allowlisted[kind]) for kind in PII_TYPES if kind in self.allowlisted})
        ctx.finding("review", self.review["pii_in_code"] + self.review["pii_allowlisted"])
        ctx.finding("review_total", self.review_total)
        ctx.finding("phone_regions", list(regions))
        ctx.finding("phone_regions_from_script", dict(sorted(self.derived_regions.items())))
        ctx.finding("phone_coverage", _coverage(regions, self.derived_regions))
        warnings = []
        if self.in_code["api_key"]:
            warnings.append(f"{self.in_code['api_key']} API key(s) or token(s) were found inside code and left unmasked; "
                            "revoke them, or set scan_code: true to mask code too")  # fmt: skip
        for sentence in warnings:
            log.warning("%s: %s", ctx.stage_name, sentence)
        ctx.finding("warnings", warnings)


def _coverage(regions: list[str], derived: Counter[str]) -> str:
    """One sentence on where phone numbers were looked for, so a user knows what a count of 0 means."""
    if not regions:
        return "Phone numbers were not searched (phone is not in types)."
    extra = "".join(f", and as {r} numbers in {n} row(s) written in its script" for r, n in sorted(derived.items()))
    return (f"Phone numbers written without a +country code were searched as {', '.join(regions)} numbers{extra}; "
            "such numbers of other countries (French 06 12 34 56 78, Australian 0412 345 678) are not found, "
            "so add their regions to `regions`. Numbers written with +country code are found for every country.")


def _detail(found: list[Found]) -> str:
    """`email in messages[1].content, phone in messages[0].content` (each type/field once)."""
    return ", ".join(dict.fromkeys(f"{h.type} in {field}" for _, field, _, hits in found for h in hits))


def _turns(example: Example) -> list[tuple[int, str, Message]]:
    """Every turn the stage reads: the messages, then a preference row's rejected answer."""
    turns = [(i, f"messages[{i}].content", m) for i, m in enumerate(example.messages)]
    return turns + [(i, f"rejected[{i}].content", m) for i, m in enumerate(example.rejected)]


def _masked(turns: tuple[Message, ...], found: list[Found], prefix: str, mask_counts: Counter[str]) -> tuple[Message, ...]:
    """The turns with every personal value replaced by its placeholder."""
    out = list(turns)
    for index, field, message, hits in found:
        if field.startswith(prefix):
            out[index] = message._replace(content=mask_text(message.content, hits))  # keeps tool_calls
            mask_counts.update(h.type for h in hits)
    return tuple(out)


@register_stage
class Pii(Stage):
    """Detect emails, phones, cards, IPs, IBANs, SSNs and API keys; report, mask or drop those rows."""

    name = "pii"
    version = "3"

    class Config(StrictModel):
        action: Literal["report", "mask", "drop"] = Field(
            "report", description="report: keep rows and record findings; mask: replace values; drop: reject rows."
        )
        types: list[str] = Field(default_factory=lambda: list(PII_TYPES), description="PII types to look for.")
        max_examples: int = Field(50, ge=0, le=10_000, description="How many masked examples the findings keep (at most 10,000).")
        scan_code: bool = Field(
            False, description="Also detect and mask inside code: fenced blocks, indented blocks with a line that "
            "looks like code (= { } calls, $ or >>> prompts, def/class/import/SELECT...; an indented contact card "
            "is prose), and inline spans holding more than the value itself. Found there, values are otherwise "
            "only reported as review items and code is never changed."
        )
        allow_reserved: bool = Field(
            True, description="Treat reserved and documentation values (loopback/private/documentation IPs, "
            "public DNS resolvers such as 8.8.8.8 and 1.1.1.1, example.com and .test domains, placeholder domains "
            "such as domain.com and yourcompany.com, 555-01xx and Ofcom drama phone numbers, published test card "
            "numbers) as not personal: reported as allow-listed, never masked."
        )
        allowlist: list[str] = Field(
            default_factory=list, description="More values that are not personal: an IP or CIDR network "
            "(10.20.0.0/16), an email domain written @corp.example, or an exact value (numbers compare by digits)."
        )
        regions: list[str] = Field(
            default_factory=lambda: ["US", "GB"], min_length=1, description="Regions (ISO 3166 codes) in which a "
            "phone number written without +country code is tried, in order. Numbers written with +country code "
            "are found for every country; national-format numbers of other countries (French 06 12 34 56 78, "
            "Australian 0412 345 678) are NOT found: add their regions here (FR, AU, ...). The findings record "
            "the regions searched (phone_regions, phone_coverage)."
        )
        regions_from_script: bool = Field(
            True, description="Also try CN, JP or KR for national-format numbers in a text written in Chinese, "
            "Japanese or Korean script (a script names its country; Latin-script languages do not)."
        )

        @field_validator("types")
        @classmethod
        def _known(cls, types: list[str]) -> list[str]:
            unknown = sorted(set(types) - set(PII_TYPES))
            if unknown:
                raise ValueError(f"unknown PII types {unknown}; known: {', '.join(PII_TYPES)}")
            return types

        @field_validator("regions")
        @classmethod
        def _regions(cls, regions: list[str]) -> list[str]:
            unknown = sorted({r.upper() for r in regions} - phonenumbers.SUPPORTED_REGIONS)
            if unknown:
                raise ValueError(f"unknown phone regions {unknown}; use ISO 3166 codes such as US, GB, DE")
            return [r.upper() for r in regions]

    @property
    def inspector(self) -> bool:  # type: ignore[override]
        """Reporting changes no row, so the pipeline may run it in the background."""
        return self.config.action == "report"

    def _scanner(self) -> Scanner:
        allow = AllowList(builtin=self.config.allow_reserved, entries=tuple(self.config.allowlist))
        return Scanner(types=tuple(self.config.types), regions=tuple(self.config.regions), allow=allow,
                       from_script=self.config.regions_from_script)

    def _scan(self, scanner: Scanner, example: Example) -> tuple[list[Found], list[Found], dict[str, list[Hit]]]:
        """The row's personal hits, its skipped ones (allow-listed, or in code while scan_code is off), all by field."""
        personal, skipped, hits_of = [], [], {}
        for index, field, message in _turns(example):
            hits = scanner.scan(message.content)
            if not hits:
                continue
            hits_of[field] = hits
            mine = [h for h in hits if h.allowed is None and (self.config.scan_code or not h.in_code)]
            rest = [h for h in hits if h.allowed is not None or (h.in_code and not self.config.scan_code)]
            if mine:
                personal.append((index, field, message, mine))
            if rest:
                skipped.append((index, field, message, rest))
        return personal, skipped, hits_of

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        action, scanner = self.config.action, self._scanner()
        tally = _Tally(self.config.max_examples)
        kept = []
        for example in examples:
            tally.add_regions(scanner, example)
            found, skipped, hits_of = self._scan(scanner, example)
            if skipped:
                tally.add_skipped(example, skipped, hits_of)
            if not found:
                kept.append(example)
                continue
            tally.add_pii(example, found)
            if action == "drop":
                shown = self._masked(example, found, Counter()).replace(fields=None, raw=None)
                ctx.reject(example, "pii", detail=_detail(found), field=found[0][1], shown=shown)
            elif action == "mask":
                kept.append(self._masked(example, found, tally.mask_counts))
            else:
                kept.append(example)
        tally.write(ctx, action, self.config.regions if "phone" in self.config.types else [])
        log.info("pii: %d of %d rows hold PII (action %s); %d rows hold values inside code, not masked",
                 tally.rows, len(examples), action, tally.in_code_rows)  # fmt: skip
        return kept

    @staticmethod
    def _masked(example: Example, found: list[Found], mask_counts: Counter[str]) -> Example:
        """The row with every personal value replaced by its placeholder, in messages and rejected turns."""
        messages = _masked(example.messages, found, "messages", mask_counts)
        rejected = _masked(example.rejected, found, "rejected", mask_counts) if example.rejected else example.rejected
        return example.replace(messages=messages, rejected=rejected)
