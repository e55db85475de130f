"""The `pii` stage's findings: masked previews of values, review items, and the tally that streams.

`PiiTally` is the stage's accumulator: counters plus the first few ids, examples and review items, so it stays
small whatever the row count, and tallies of consecutive batches merge into the tally of all their rows.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from tunesmith.curate.pii_allow import USER
from tunesmith.curate.pii_detectors import PII_TYPES, Hit, Scanner
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext, StageFindings

MAX_IDS = 50
MAX_REVIEW = 50
_CONTEXT = 100  # characters shown either side of a value in a review item

# (index into the row's turn list, field name, message, hits)
Found = tuple[int, str, Message, list[Hit]]


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


class PiiTally:
    """Counts, examples and review items over the rows one accumulator saw, written as the stage's findings.

    Small by construction (counters over types, roles and reasons; the first few ids, examples and review items),
    so it streams: `merge` adds the counters and keeps the first items of the earlier rows, then the later ones.
    """

    def __init__(self, max_examples: int):
        self.max_examples = max_examples
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.in_code: Counter[str] = Counter()
        self.allowlisted: dict[str, Counter[str]] = defaultdict(Counter)
        self.mask_counts: Counter[str] = Counter()
        self.seen = self.rows = self.in_code_rows = 0
        self.ids: list[str] = []
        self.examples: list[dict[str, str]] = []
        self.review: dict[str, list[dict]] = {"pii_in_code": [], "pii_allowlisted": []}
        self.review_total = 0
        self.derived_regions: Counter[str] = Counter()  # rows in which a script added a phone region

    def merge(self, other: PiiTally) -> PiiTally:
        """This tally's rows followed by `other`'s (Counter.update keeps first-seen key order, as one pass does)."""
        for mine, theirs in ((self.counts, other.counts), (self.allowlisted, other.allowlisted)):
            for kind, counter in theirs.items():
                mine[kind].update(counter)
        for mine_c, theirs_c in ((self.in_code, other.in_code), (self.mask_counts, other.mask_counts),
                                 (self.derived_regions, other.derived_regions)):  # fmt: skip
            mine_c.update(theirs_c)
        self.seen += other.seen
        self.rows += other.rows
        self.in_code_rows += other.in_code_rows
        self.review_total += other.review_total
        self.ids = (self.ids + other.ids)[:MAX_IDS]
        self.examples = (self.examples + other.examples)[: self.max_examples]
        for kind, items in self.review.items():
            self.review[kind] = (items + other.review[kind])[: MAX_REVIEW // 2]
        return self

    def add_regions(self, scanner: Scanner, texts: list[str]) -> None:
        """Count the row once for each phone region its scripts add (the texts are all of one row's turns)."""
        self.derived_regions.update({r for text in texts for r in scanner.extra_regions(text)})

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

    def write(self, ctx: StageContext, action: str, regions: list[str]) -> list[str]:
        """Every finding of the rows tallied; returns the warnings, for the stage to log."""
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
        ctx.finding("warnings", warnings)
        return warnings


class PiiFindings(StageFindings):
    """What `pii` records (`rows_with_pii_ids`, `examples` and `review` hold the first few; the counts are totals)."""

    counts: dict[str, dict[str, int]]
    rows_with_pii: int
    rows_with_pii_ids: list[str]
    examples: list[dict[str, str]]
    action: str
    mask_counts: dict[str, int] | None = None  # only with action mask
    in_code: dict[str, int]
    in_code_rows: int
    allowlisted: dict[str, dict[str, int]]
    review: list[dict]
    review_total: int
    phone_regions: list[str]
    phone_regions_from_script: dict[str, int]
    phone_coverage: str
    warnings: list[str]


def _coverage(regions: list[str], derived: Counter[str]) -> str:
    """One sentence on where phone numbers were looked for, so a user knows what a count of 0 means."""
    if not regions:
        return "Phone numbers were not searched (phone is not in types)."
    extra = "".join(f", and as {r} numbers in {n} row(s) written in its script" for r, n in sorted(derived.items()))
    return (f"Phone numbers written without a +country code were searched as {', '.join(regions)} numbers{extra}; "
            "such numbers of other countries (French 06 12 34 56 78, Australian 0412 345 678) are not found, "
            "so add their regions to `regions`. Numbers written with +country code are found for every country.")
