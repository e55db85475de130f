"""Stage `pii`: find personal data and secrets in message text, then report, mask or drop the rows.

Each detector is a precompiled regex plus a validator (Luhn for cards, mod-97 for IBANs, `ipaddress` for
IPs), run only when a cheap pre-screen says the text could match. Findings hold partially masked values
only, so the dataset card and the HTML report never repeat a full email, number or key.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from tunesmith.config import StrictModel
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import Stage, StageContext, register_stage

log = logging.getLogger(__name__)

PII_TYPES = ("email", "phone", "credit_card", "ip_address", "iban", "ssn", "api_key")
MAX_IDS = 50

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
_API_KEY = re.compile(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b"
    r"|\bgithub_pat_[A-Za-z0-9_]{22,}"
    r"|\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{20,}"
    r"|\bsk_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\bxox[baprs]-[A-Za-z0-9-]{10,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\bBearer\s+(?P<v>[A-Za-z0-9._~+/-]{20,}=*)"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"(?<![\d-])(?<!\d )[2-6](?:[ -]?\d){12,18}(?![\d])(?![ -]\d)")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[\s.-])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,5}(?:[\s.-]?\d{1,5}){0,5}"  # +CC international
    r"|(?:1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"  # US 415-555-2671, (415) 555 2671
    r"|0[1-9]\d{0,3}[\s.-]\d{2,4}(?:[\s.-]\d{2,4}){1,3}"  # EU national with trunk 0: 030 1234 5678
    r")(?![\w])(?![.-]\d)"
)
_DATE = re.compile(r"(?:19|20)\d\d[-./ ]\d\d?[-./ ]\d\d?|\d\d?[-./ ]\d\d?[-./ ](?:19|20)\d\d")
# a digit-based value (phone, card, SSN, IPv4, IBAN) always holds a digit run of at least 7 characters;
# detectors search only _PAD characters around such runs (the longest IBAN is 34 characters plus spaces)
_NUMERIC = re.compile(r"\d[\d\s().-]{5,}\d")
_PAD = 48
_KEY_MARKERS = "AKIA ASIA ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ sk- sk_ xox AIza Bearer".split()


def _luhn(digits: str) -> bool:
    """True if the digit string passes the Luhn checksum every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _valid_card(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _valid_iban(value: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, read letters as 10..35, mod 97 == 1."""
    iban = value.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    # IPv6 needs three written groups, so code such as `x[::2]` or a time like 10:30 is not an address
    return "." in value or sum(1 for part in value.split(":") if part) >= 3


def _valid_phone(value: str) -> bool:
    digits = sum(ch.isdigit() for ch in value)
    return 9 <= digits <= 15 and not _DATE.search(value)


def _valid_key(value: str) -> bool:
    """OpenAI-style `sk-` keys hold digits; a hyphenated slug such as sk-some-long-name does not."""
    return not value.startswith("sk-") or any(ch.isdigit() for ch in value)


@dataclass(frozen=True)
class _Detector:
    type: str
    pattern: re.Pattern[str]
    screen: str  # which pre-screen picks the regions searched: "key", "at", "colon" or "numeric"
    valid: Callable[[str], bool] | None = None


# priority order: where two matches overlap, the earlier detector keeps the span
DETECTORS = (
    _Detector("api_key", _API_KEY, "key", _valid_key),
    _Detector("email", _EMAIL, "at"),
    _Detector("iban", _IBAN, "numeric", _valid_iban),
    _Detector("credit_card", _CARD, "numeric", _valid_card),
    _Detector("ssn", _SSN, "numeric"),
    _Detector("ip_address", _IPV4, "numeric", _valid_ip),
    _Detector("ip_address", _IPV6, "colon", _valid_ip),
    _Detector("phone", _PHONE, "numeric", _valid_phone),
)

Span = tuple[int, int, str, str]  # start, end, type, value


def _numeric_windows(text: str) -> list[tuple[int, int]]:
    """Merged regions around digit runs, padded so a whole value (an IBAN's letters too) fits inside."""
    windows: list[tuple[int, int]] = []
    for m in _NUMERIC.finditer(text):
        start, end = max(0, m.start() - _PAD), min(len(text), m.end() + _PAD)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def _screens(text: str) -> dict[str, list[tuple[int, int]]]:
    """Per pre-screen, the regions of `text` its detectors search; empty when the text cannot match."""
    whole = [(0, len(text))]
    return {
        "key": whole if any(marker in text for marker in _KEY_MARKERS) else [],
        "at": whole if "@" in text else [],
        "colon": whole if text.count(":") >= 2 else [],
        "numeric": _numeric_windows(text),
    }


def find_pii(text: str, detectors: tuple[_Detector, ...] = DETECTORS) -> list[Span]:
    """All non-overlapping PII matches in `text`, in order of position."""
    screens = _screens(text)
    spans: list[Span] = []
    for det in detectors:
        for window_start, window_end in screens[det.screen]:
            spans.extend(_matches(det, text, window_start, window_end, spans))
    return sorted(spans)


def _matches(det: _Detector, text: str, start: int, end: int, taken: list[Span]) -> list[Span]:
    """Valid matches of one detector inside text[start:end] that overlap no span already taken."""
    found: list[Span] = []
    for m in det.pattern.finditer(text, start, end):
        group = "v" if det.type == "api_key" and m.group("v") else 0
        a, b = m.span(group)
        value = m.group(group)
        if det.valid is not None and not det.valid(value):
            continue
        if any(a < e and s < b for s, e, _, _ in taken):
            continue
        found.append((a, b, det.type, value))
    return found


def mask_text(text: str, spans: list[Span]) -> str:
    """Replace each span with its placeholder, e.g. `[EMAIL]`."""
    parts, pos = [], 0
    for start, end, kind, _ in spans:
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


class _Tally:
    """Counts and examples across rows, written as the stage's findings."""

    def __init__(self, max_examples: int):
        self.max_examples = max_examples
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.mask_counts: Counter[str] = Counter()
        self.rows = 0
        self.ids: list[str] = []
        self.examples: list[dict[str, str]] = []

    def add(self, example: Example, hits: list[tuple[int, Message, list[Span]]]) -> None:
        self.rows += 1
        if len(self.ids) < MAX_IDS:
            self.ids.append(example.id)
        for index, message, spans in hits:
            for _, _, kind, value in spans:
                self.counts[kind][message.role] += 1
                if len(self.examples) < self.max_examples:
                    self.examples.append(
                        {
                            "id": example.id,
                            "type": kind,
                            "role": message.role,
                            "field": f"messages[{index}].content",
                            "masked": preview(kind, value),
                        }
                    )

    def write(self, ctx: StageContext, action: str) -> None:
        ctx.finding("counts", {kind: dict(self.counts[kind]) for kind in PII_TYPES if kind in self.counts})
        ctx.finding("rows_with_pii", self.rows)
        ctx.finding("rows_with_pii_ids", self.ids)
        ctx.finding("examples", self.examples)
        ctx.finding("action", action)
        if action == "mask":
            ctx.finding("mask_counts", dict(self.mask_counts))


def _detail(hits: list[tuple[int, Message, list[Span]]]) -> str:
    """`email in messages[1].content, phone in messages[0].content` (each type/field once)."""
    seen = dict.fromkeys(f"{kind} in messages[{i}].content" for i, _, spans in hits for _, _, kind, _ in spans)
    return ", ".join(seen)


@register_stage
class Pii(Stage):
    """Detect emails, phones, cards, IPs, IBANs, SSNs and API keys; report, mask or drop those rows."""

    name = "pii"
    version = "1"

    class Config(StrictModel):
        action: Literal["report", "mask", "drop"] = Field(
            "report", description="report: keep rows and record findings; mask: replace values; drop: reject rows."
        )
        types: list[str] = Field(default_factory=lambda: list(PII_TYPES), description="PII types to look for.")
        max_examples: int = Field(50, ge=0, le=10_000, description="How many masked examples the findings keep (at most 10,000).")

        @field_validator("types")
        @classmethod
        def _known(cls, types: list[str]) -> list[str]:
            unknown = sorted(set(types) - set(PII_TYPES))
            if unknown:
                raise ValueError(f"unknown PII types {unknown}; known: {', '.join(PII_TYPES)}")
            return types

    @property
    def inspector(self) -> bool:  # type: ignore[override]
        """Reporting changes no row, so the pipeline may run it in the background."""
        return self.config.action == "report"

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        action = self.config.action
        detectors = tuple(d for d in DETECTORS if d.type in set(self.config.types))
        tally = _Tally(self.config.max_examples)
        kept = []
        for example in examples:
            hits = [(i, m, spans) for i, m in enumerate(example.messages) if (spans := find_pii(m.content, detectors))]
            if not hits:
                kept.append(example)
                continue
            tally.add(example, hits)
            if action == "drop":
                masked = example.replace(messages=self._masked(example.messages, hits, Counter()), fields=None, raw=None)
                ctx.reject(example, "pii", detail=_detail(hits), field=f"messages[{hits[0][0]}].content", shown=masked)
            elif action == "mask":
                kept.append(example.replace(messages=self._masked(example.messages, hits, tally.mask_counts)))
            else:
                kept.append(example)
        tally.write(ctx, action)
        log.info("pii: %d of %d rows hold PII (action %s)", tally.rows, len(examples), action)
        return kept

    @staticmethod
    def _masked(messages: tuple[Message, ...], hits: list, mask_counts: Counter[str]) -> tuple[Message, ...]:
        """The messages with every match replaced by its placeholder."""
        out = list(messages)
        for index, message, spans in hits:
            out[index] = Message(message.role, mask_text(message.content, spans))
            mask_counts.update(kind for _, _, kind, _ in spans)
        return tuple(out)
