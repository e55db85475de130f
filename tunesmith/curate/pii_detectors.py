"""The `pii` detectors: find candidate values in one text, then mark which are allow-listed or inside code.

Each detector answers one question (is this span a value of my type?) with a regex plus a validator (Luhn and
a card word nearby, an SSN word nearby, mod-97 for IBANs, `ipaddress` and version context for IPs,
`phonenumbers` for phones) and runs only where a cheap pre-screen says the text could match. `Scanner.scan`
returns every hit, classified: a hit that is neither allow-listed nor in code is personal data.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from tunesmith.curate.pii_allow import AllowList
from tunesmith.curate.pii_code import code_regions, in_code
from tunesmith.curate.pii_phones import DATE, Candidate, Phones, Window, script_regions

PII_TYPES = ("email", "phone", "credit_card", "ip_address", "iban", "ssn", "api_key")

# ASCII edges, not \w: Chinese or Japanese text runs straight into an address ("邮箱chen@163.com")
_EMAIL = re.compile(r"(?<![A-Za-z0-9_.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![A-Za-z0-9_-])")
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
# a card is 4-4-4-x or Amex 4-6-5 with one separator throughout, or a bare 13-19 digit run; none may sit inside a
# longer run of digits or digit groups, and every one needs a card word nearby (`_card_ok`)
_EDGE_BEFORE = r"(?<![\w.,-])(?<!\d[ -])"
_CARD_GROUPED = re.compile(
    _EDGE_BEFORE + r"[2-6]\d{3}(?P<s>[ -])(?:\d{4}(?P=s)\d{4}(?P=s)\d{1,4}|\d{6}(?P=s)\d{5})(?![\w-])(?!(?P=s)\d+(?![\d/]))"
)
_CARD_BARE = re.compile(_EDGE_BEFORE + r"[2-6]\d{12,18}(?![\w-])(?!\.\d)")
_CARD_WORDS = re.compile(
    r"\b(?:cards?|visa|master\s?card|mc|amex|american express|discover|diners|jcb|cc|credit|debit|payment|pay|"
    r"charge[ds]?|pan|cvv|cvc|exp|expir\w*|billing)\b",
    re.IGNORECASE,
)
_CARD_NEAR = 40  # characters either side of a card candidate searched for a card word
# a 3-2-4 number is an SSN only next to an SSN word: part numbers, ids and phone fragments share the shape
_SSN_WORDS = re.compile(r"\b(?:ssns?|ss#|social security|soc\.? ?sec\.?|tax ?id|tin|itin|taxpayer id\w*)", re.IGNORECASE)
_SSN_NEAR = 40
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# words after which a dotted quad is a version, section or identifier, not an address
_NOT_IP_BEFORE = re.compile(
    r"(?:\b(?:v|ver|version|versions|release|rel|build|tag|firmware|fw|driver|sdk|oid|section|sec|chapter|"
    r"step|rule|clause|figure|fig|table|item)\.?\s*[:=#]?\s*|[=<>~!]=\s*|§\s*)$",
    re.IGNORECASE,
)
# ... and words after which it is a version ("3.11.4.0 build", "1.2.3.4 release")
_NOT_IP_AFTER = re.compile(
    r"\s*(?:build|release|update|patch|hotfix|beta|alpha|rc\d*|final|ga|lts|version|edition)\b", re.IGNORECASE
)
# a version-like quad (small numbers: first <= 30, each <= 99) written directly after a name that is not first
# in its sentence ("with Python 3.11.4.0") is that product's version; network words ("Server 84.23.11.9",
# "IPv4 ..."), sentence starts ("Blocked 3.11.4.9 today") and address-like quads ("user Mallory 84.23.11.9")
# still read as addresses
_NAME_BEFORE = re.compile(r"(?<![\w.-])[A-Z][A-Za-z]*[a-z][A-Za-z0-9+#]* $")
_NETWORK_WORDS = frozenset(
    "ip ipv4 ipv6 address addr host hostname server servers peer client gateway router proxy dns vpn "
    "nat firewall subnet endpoint origin remote source destination src dst port ping".split()
)
# a digit-based value (card, SSN, IPv4, IBAN) always holds a digit run of at least 7 characters;
# detectors search only _PAD characters around such runs (the longest IBAN is 34 characters plus spaces)
_NUMERIC = re.compile(r"\d[\d\s().-]{5,}\d")
_PAD = 48
# phonenumbers costs ~0.3 ms a call, so it sees only runs that hold at least 7 digits in phone-like spacing
_PHONE_SCREEN = re.compile(r"\+?\(?\d[\d \t().\-/]{5,}\d")
_KEY_MARKERS = "AKIA ASIA ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ sk- sk_ xox AIza Bearer".split()



class Hit(NamedTuple):
    start: int
    end: int
    type: str
    value: str
    norm: str
    allowed: str | None = None  # why the value is allow-listed (reserved range, user entry); None = personal
    in_code: bool = False

    @property
    def is_pii(self) -> bool:
        return self.allowed is None and not self.in_code


def _luhn(digits: str) -> bool:
    """True if the digit string passes the Luhn checksum every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


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


def _valid_key(value: str) -> bool:
    """OpenAI-style `sk-` keys hold digits; a hyphenated slug such as sk-some-long-name does not."""
    return not value.startswith("sk-") or any(ch.isdigit() for ch in value)


def _phone_like(run: str) -> bool:
    """At least 7 digits outside dates: "2026-05-03" alone would send most order texts to phonenumbers."""
    return sum(ch.isdigit() for ch in DATE.sub("", run)) >= 7


def _windows(pattern: re.Pattern[str], text: str, pad: int, keep: Callable[[str], bool] | None = None) -> list[Window]:
    """Merged regions around the pattern's matches, padded so a whole value (an IBAN's letters too) fits."""
    windows: list[Window] = []
    for m in pattern.finditer(text):
        if keep is not None and not keep(m.group()):
            continue
        start, end = max(0, m.start() - pad), min(len(text), m.end() + pad)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def _screens(text: str) -> dict[str, list[Window]]:
    """Per pre-screen, the regions of `text` its detectors search; empty when the text cannot match."""
    whole = [(0, len(text))]
    numeric = _windows(_NUMERIC, text, _PAD)
    return {
        "key": whole if any(marker in text for marker in _KEY_MARKERS) else [],
        "at": whole if "@" in text else [],
        "colon": whole if text.count(":") >= 2 else [],
        "numeric": numeric,
        "phone": _windows(_PHONE_SCREEN, text, 4, _phone_like) if numeric else [],
    }


@dataclass(frozen=True)
class _Regex:
    """A detector made of a regex, the pre-screen whose windows it searches, and a check on each match."""

    type: str
    pattern: re.Pattern[str]
    screen: str
    check: Callable[[str, re.Match[str]], bool] | None = None

    def find(self, text: str, screens: dict[str, list[Window]]) -> Iterator[Candidate]:
        for start, end in screens[self.screen]:
            for m in self.pattern.finditer(text, start, end):
                group = "v" if self.type == "api_key" and m.group("v") else 0
                if self.check is None or self.check(text, m):
                    value = m.group(group)
                    yield m.start(group), m.end(group), value, _normalise(self.type, value)


def _normalise(kind: str, value: str) -> str:
    if kind in ("credit_card", "ssn", "iban"):
        return re.sub(r"[ -]", "", value)
    return value.lower() if kind in ("email", "ip_address") else value


def _near(text: str, m: re.Match[str], words: re.Pattern[str], reach: int) -> bool:
    """True if `words` occurs within `reach` characters before or after the match."""
    return words.search(text[max(0, m.start() - reach) : m.start()] + " " + text[m.end() : m.end() + reach]) is not None


def _card_ok(text: str, m: re.Match[str]) -> bool:
    """Luhn plus a card word nearby: 1 in 10 digit runs pass Luhn, and grouped 4x4 runs are also years, table
    rows and lottery draws ("grew in 2002 2003 2004 2005"), so the shape alone never makes a card."""
    return _luhn(re.sub(r"\D", "", m.group())) and _near(text, m, _CARD_WORDS, _CARD_NEAR)


def _ssn_ok(text: str, m: re.Match[str]) -> bool:
    return _near(text, m, _SSN_WORDS, _SSN_NEAR)


def _ip_ok(text: str, m: re.Match[str]) -> bool:
    if not _valid_ip(m.group()):
        return False
    if "." not in m.group():
        return True
    start = m.start()
    if _NOT_IP_BEFORE.search(text[max(0, start - 20) : start]) or _NOT_IP_AFTER.match(text, m.end()):
        return False
    return not _after_product_name(text, start, m.group())


def _after_product_name(text: str, start: int, quad: str) -> bool:
    """True for "... with Python 3.11.4.0": a name, not a network word, directly before and not first in its sentence."""
    parts = [int(p) for p in quad.split(".")]
    if parts[0] > 30 or max(parts) > 99:
        return False
    name = _NAME_BEFORE.search(text, max(0, start - 40), start)
    if name is None or name.group().strip().lower() in _NETWORK_WORDS:
        return False
    before = text[max(0, name.start() - 80) : name.start()].rstrip(" \t")
    return bool(before) and before[-1] not in ".!?:;\n\"'(["


# priority order: where two matches overlap, the earlier detector keeps the span
def _detectors(regions: tuple[str, ...]) -> tuple[_Regex | Phones, ...]:
    return (
        _Regex("api_key", _API_KEY, "key", lambda text, m: _valid_key(m.group())),
        _Regex("email", _EMAIL, "at"),
        _Regex("iban", _IBAN, "numeric", lambda text, m: _valid_iban(m.group())),
        _Regex("credit_card", _CARD_GROUPED, "numeric", _card_ok),
        _Regex("credit_card", _CARD_BARE, "numeric", _card_ok),
        _Regex("ssn", _SSN, "numeric", _ssn_ok),
        _Regex("ip_address", _IPV4, "numeric", _ip_ok),
        _Regex("ip_address", _IPV6, "colon", _ip_ok),
        Phones(regions),
    )


class Scanner:
    """Finds PII in texts with the chosen types, phone regions and allow-list.

    Args:
        regions: where a phone number written without +country code is tried, in order.
        from_script: also try the regions a text's script implies (`script_regions`).
    """

    def __init__(self, types: tuple[str, ...] = PII_TYPES, regions: tuple[str, ...] = ("US", "GB"),
                 allow: AllowList | None = None, from_script: bool = True) -> None:  # fmt: skip
        self.types, self.regions, self.from_script = types, regions, from_script
        self.detectors = tuple(d for d in _detectors(regions) if d.type in types)
        self.allow = allow or AllowList()
        self._by_extra: dict[tuple[str, ...], tuple[_Regex | Phones, ...]] = {}

    def extra_regions(self, text: str) -> tuple[str, ...]:
        """The regions tried in `text` beyond the configured ones."""
        if not self.from_script or "phone" not in self.types:
            return ()
        return tuple(r for r in script_regions(text) if r not in self.regions)

    def _detectors_for(self, text: str) -> tuple[_Regex | Phones, ...]:
        extra = self.extra_regions(text)
        if not extra:
            return self.detectors
        if extra not in self._by_extra:
            self._by_extra[extra] = tuple(d for d in _detectors(self.regions + extra) if d.type in self.types)
        return self._by_extra[extra]

    def scan(self, text: str) -> list[Hit]:
        """Every hit in `text`, in order of position, each marked allow-listed and/or inside code."""
        screens = _screens(text)
        taken: list[Candidate] = []
        kinds: list[str] = []
        for det in self._detectors_for(text):
            for cand in det.find(text, screens):
                if not any(cand[0] < e and s < cand[1] for s, e, _, _ in taken):
                    taken.append(cand)
                    kinds.append(det.type)
        if not taken:
            return []
        regions = code_regions(text)
        hits = [
            Hit(a, b, kind, value, norm, self.allow.reason(kind, value, norm),
                in_code(text, regions, a, b))
            for (a, b, value, norm), kind in zip(taken, kinds)
        ]
        return sorted(hits)


DEFAULT_SCANNER = Scanner()


def find_pii(text: str, scanner: Scanner = DEFAULT_SCANNER) -> list[tuple[int, int, str, str]]:
    """The personal-data spans (start, end, type, value) in `text`: not allow-listed, not inside code."""
    return [(h.start, h.end, h.type, h.value) for h in scanner.scan(text) if h.is_pii]
