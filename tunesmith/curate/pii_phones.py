"""The `pii` phone detector: `phonenumbers` on pre-screened windows, tried in each configured region.

A number written with +country code is found for any country; one written in national format only in the
configured regions, plus the region a text's script implies (`script_regions`). Look-alikes are refused here:
ids after an id word, dates, counting sequences, thousands-separated counts, and runs inside longer digit runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import phonenumbers

from tunesmith.curate.pii_allow import reserved_phone

Window = tuple[int, int]
Candidate = tuple[int, int, str, str]  # start, end, value, normalised value (digits, E.164, lower case)

# words after which a number is an identifier, not a phone
_NOT_PHONE_BEFORE = re.compile(
    r"\b(?:id|ids|order|ref|reference|invoice|ticket|serial|isbn|sku|tracking|account|acct|po|case|item|"
    r"part|model|batch|lot)\s*(?:no\.?|number|#)?(?:\s+(?:is|was))?\s*[:#=]?\s*$",
    re.IGNORECASE,
)
DATE = re.compile(r"(?:19|20)\d\d[-./ ]\d\d?[-./ ]\d\d?|\d\d?[-./ ]\d\d?[-./ ](?:19|20)\d\d")
# groups of three after a first group of 1-3 digits, no leading 0 or +: a count with thousands separators
# ("1 234 567 890 people"); national phone formats start with a trunk 0 or are grouped 3-3-4 (NANP)
_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:[ \u00a0\u202f]\d{3}){2,}")
# national-format numbers are tried in the configured regions, plus a region a row's script implies
# (Chinese, Japanese and Korean text name their country's numbers without +86/+81/+82)
_SCRIPT_REGIONS = (
    (re.compile(r"[\u4e00-\u9fff]"), "CN"),
    (re.compile(r"[\u3040-\u30ff]"), "JP"),
    (re.compile(r"[\uac00-\ud7af]"), "KR"),
)


def script_regions(text: str) -> tuple[str, ...]:
    """Phone regions implied by the scripts in `text` (Han: CN, kana: JP, Hangul: KR)."""
    return tuple(region for pattern, region in _SCRIPT_REGIONS if pattern.search(text))


@dataclass(frozen=True)
class Phones:
    """Phone numbers by `phonenumbers`, tried in each region for numbers written without a country code.

    Matching is at POSSIBLE leniency so that numbers in reserved fiction ranges (UK 07700 900xxx, which the
    library's metadata does not count as valid) are found and can be reported as allow-listed; every other
    number must be VALID for its region.
    """

    regions: tuple[str, ...]
    type: str = "phone"
    screen: str = "phone"

    def find(self, text: str, screens: dict[str, list[Window]]) -> Iterator[Candidate]:
        seen: list[Window] = []
        for start, end in screens[self.screen]:
            chunk = text[start:end]
            for region in self.regions:
                for m in phonenumbers.PhoneNumberMatcher(chunk, region, leniency=phonenumbers.Leniency.POSSIBLE):
                    a, b = start + m.start, start + m.end
                    if any(s < b and a < e for s, e in seen) or not _phone_ok(text, a, m):
                        continue
                    seen.append((a, b))
                    yield a, b, m.raw_string, phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)


def _phone_ok(text: str, start: int, m: phonenumbers.PhoneNumberMatch) -> bool:
    raw = m.raw_string
    groups = re.findall(r"\d+", raw)
    # "1 2 3 4 5 6 7 8 9 10" parses as a US number; real numbers are written in groups of two or more digits
    if sum(len(g) == 1 for g in groups) > (1 if raw.startswith(("+", "1")) else 0) or DATE.search(raw):
        return False
    if _THOUSANDS.fullmatch(raw) or _in_longer_run(text, start, start + len(raw)):
        return False
    if _NOT_PHONE_BEFORE.search(text[max(0, start - 24) : start]):
        return False
    e164 = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
    return phonenumbers.is_valid_number(m.number) or reserved_phone(e164) is not None


def _in_longer_run(text: str, start: int, end: int) -> bool:
    """True if digit groups go on before or after the match ("4799 4471 5840 2826" holds no phone number)."""
    return bool(re.search(r"\d[ .-]$", text[max(0, start - 2) : start]) or re.match(r"[ .-]\d", text[end : end + 2]))
