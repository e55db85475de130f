"""Stage `pii`: find personal data and secrets in message text, then report, mask or drop the rows.

Detection lives in `pii_detectors` (what is a value), `pii_allow` (reserved and documentation values that
are found but never masked) and `pii_code` (code regions, skipped by default). Findings hold partially
masked values only, so the dataset card and the HTML report never repeat a full email, number or key.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Literal

import phonenumbers
from pydantic import Field, field_validator

from tunesmith.config import StrictModel
from tunesmith.curate.pii_allow import AllowList
from tunesmith.curate.pii_detectors import PII_TYPES, Hit, Scanner, find_pii
from tunesmith.curate.pii_findings import Found, PiiFindings, PiiTally, preview
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import FilterStage, Reject, StageContext, register_stage

__all__ = ["PII_TYPES", "Pii", "find_pii", "mask_text", "preview"]

log = logging.getLogger(__name__)


def mask_text(text: str, spans: list) -> str:
    """Replace each span (start, end, type, ...) with its placeholder, e.g. `[EMAIL]`."""
    parts, pos = [], 0
    for start, end, kind, *_ in spans:
        parts.append(text[pos:start])
        parts.append(f"[{kind.upper()}]")
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


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
class Pii(FilterStage):
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

    Findings = PiiFindings

    @property
    def inspector(self) -> bool:  # type: ignore[override]
        """Reporting changes no row (mask and drop do)."""
        return self.config.action == "report"

    def setup(self, ctx: StageContext) -> None:
        """The scanner once per process: its detectors and allow-list are compiled from the config."""
        allow = AllowList(builtin=self.config.allow_reserved, entries=tuple(self.config.allowlist))
        self.scanner = Scanner(types=tuple(self.config.types), regions=tuple(self.config.regions), allow=allow,
                               from_script=self.config.regions_from_script)  # fmt: skip

    def open(self, ctx: StageContext) -> PiiTally:
        return PiiTally(self.config.max_examples)

    def keep(self, example: Example, tally: PiiTally, ctx: StageContext) -> Example | Reject:
        tally.seen += 1
        tally.add_regions(self.scanner, [m.content for _, _, m in _turns(example)])
        found, skipped, hits_of = self._scan(example)
        if skipped:
            tally.add_skipped(example, skipped, hits_of)
        if not found:
            return example
        tally.add_pii(example, found)
        if self.config.action == "drop":
            shown = self._masked(example, found, Counter()).replace(fields=None, raw=None)
            return Reject("pii", detail=_detail(found), field=found[0][1], shown=shown)
        if self.config.action == "mask":
            return self._masked(example, found, tally.mask_counts)
        return example

    def merge(self, state: PiiTally, other: PiiTally) -> PiiTally:
        return state.merge(other)

    def close(self, tally: PiiTally, ctx: StageContext) -> None:
        action = self.config.action
        for sentence in tally.write(ctx, action, self.config.regions if "phone" in self.config.types else []):
            log.warning("%s: %s", ctx.stage_name, sentence)
        log.info("pii: %d of %d rows hold PII (action %s); %d rows hold values inside code, not masked",
                 tally.rows, tally.seen, action, tally.in_code_rows)  # fmt: skip

    def _scan(self, example: Example) -> tuple[list[Found], list[Found], dict[str, list[Hit]]]:
        """The row's personal hits, its skipped ones (allow-listed, or in code while scan_code is off), all by field."""
        personal, skipped, hits_of = [], [], {}
        for index, field, message in _turns(example):
            hits = self.scanner.scan(message.content)
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

    @staticmethod
    def _masked(example: Example, found: list[Found], mask_counts: Counter[str]) -> Example:
        """The row with every personal value replaced by its placeholder, in messages and rejected turns."""
        messages = _masked(example.messages, found, "messages", mask_counts)
        rejected = _masked(example.rejected, found, "rejected", mask_counts) if example.rejected else example.rejected
        return example.replace(messages=messages, rejected=rejected)
