"""The `pii` allow-list: values that look personal but are reserved for documentation, fiction or tests.

Built-in entries come from `assets/pii_reserved.json` (each with the reason it is reserved); users add their own
(`allowlist` in the stage config). An allow-listed value is still found and reported, never masked.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
USER = "user allow-list"


@dataclass(frozen=True)
class Reserved:
    """The packaged table, parsed once."""

    networks: tuple[tuple[IpNetwork, str], ...]
    domains: tuple[tuple[str, str], ...]
    phones: tuple[tuple[re.Pattern[str], str], ...]
    cards: frozenset[str]
    card_why: str
    key_markers: tuple[tuple[str, str], ...]


@cache
def reserved() -> Reserved:
    raw = json.loads((resources.files("tunesmith") / "assets" / "pii_reserved.json").read_text(encoding="utf-8"))
    return Reserved(
        networks=tuple((ipaddress.ip_network(e["net"]), e["why"]) for e in raw["ip_networks"]),
        domains=tuple((e["domain"].lower(), e["why"]) for e in raw["email_domains"]),
        phones=tuple((re.compile(e["pattern"]), e["why"]) for e in raw["phone_e164"]),
        cards=frozenset(raw["test_cards"]["numbers"]),
        card_why=raw["test_cards"]["why"],
        key_markers=tuple((e["marker"], e["why"]) for e in raw["api_key_markers"]),
    )


def _domain_matches(domain: str, allowed: str) -> bool:
    """`a.example.com` matches `example.com`; a one-label entry such as `test` matches the top-level domain."""
    return domain == allowed or domain.endswith("." + allowed)


def reserved_phone(e164: str) -> str | None:
    """Why an E.164 number is a fiction/drama number, or None; the phone detector asks before masking."""
    return next((why for pattern, why in reserved().phones if pattern.match(e164)), None)


@dataclass(frozen=True)
class AllowList:
    """Decides whether a found value is allow-listed and why.

    Args:
        builtin: use the packaged reserved/documentation table.
        entries: the user's own entries: an IP or CIDR network (`10.20.0.0/16`), an email domain written
            `@corp.example` (subdomains included), or any other exact value (phone and card numbers compare
            by their digits, so `+1 800 555 0199` matches `1-800-555-0199`).
    """

    builtin: bool = True
    entries: tuple[str, ...] = ()
    _networks: tuple[IpNetwork, ...] = field(init=False, repr=False)
    _domains: tuple[str, ...] = field(init=False, repr=False)
    _values: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        networks, domains, values = [], [], set()
        for entry in (e.strip() for e in self.entries):
            if entry.startswith("@"):
                domains.append(entry[1:].lower())
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                values.add(_norm(entry))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_domains", tuple(domains))
        object.__setattr__(self, "_values", frozenset(values))

    def reason(self, kind: str, value: str, norm: str) -> str | None:
        """Why `value` (of PII type `kind`, normalised as `norm`) is allowed, or None when it is PII."""
        if self._values and (_norm(value) in self._values or _norm(norm) in self._values):
            return USER
        check = _CHECKS.get(kind)
        return check(self, value, norm) if check else None

    def _ip(self, value: str, norm: str) -> str | None:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return None
        if any(address in net for net in self._networks if net.version == address.version):
            return USER
        if self.builtin:
            return next((why for net, why in reserved().networks if net.version == address.version and address in net), None)
        return None

    def _email(self, value: str, norm: str) -> str | None:
        domain = value.rpartition("@")[2].lower()
        if any(_domain_matches(domain, d) for d in self._domains):
            return USER
        if self.builtin:
            return next((why for d, why in reserved().domains if _domain_matches(domain, d)), None)
        return None

    def _phone(self, value: str, norm: str) -> str | None:
        return reserved_phone(norm) if self.builtin else None

    def _card(self, value: str, norm: str) -> str | None:
        return reserved().card_why if self.builtin and norm in reserved().cards else None

    def _key(self, value: str, norm: str) -> str | None:
        if not self.builtin:
            return None
        return next((why for marker, why in reserved().key_markers if marker in value), None)


_CHECKS = {
    "ip_address": AllowList._ip,
    "email": AllowList._email,
    "phone": AllowList._phone,
    "credit_card": AllowList._card,
    "api_key": AllowList._key,
}


def _norm(value: str) -> str:
    """Digits for number-like values (so spacing does not matter), lower case for anything else."""
    digits = re.sub(r"\D", "", value)
    return digits if len(digits) >= 7 and len(digits) >= len(value.replace(" ", "")) // 2 else value.lower()
