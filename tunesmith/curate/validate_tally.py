"""`validate`'s accumulator and findings: what it counts over rows, merged over batches and workers.

`ValidateTally` holds counters (fix-ups, formats, unread columns and turn keys, multimodal kinds), the first media
review items and the column profile. The driver's tally (the one that starts the stream) profiles rows as they
come; a worker's tally keeps its kept rows' small profile events (`profile_rows.RowEvent`, computed there), which
`merge` adds to the driver's profile in row order. So a streamed run's findings equal one pass over all rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tunesmith.config import readable
from tunesmith.curate.formats import MEDIA_COLUMNS, PLAIN_TEXT, media_token, read_columns, unread_turn_keys
from tunesmith.curate.preference import PREFERENCE_FORMATS, PREFERENCE_KEYS
from tunesmith.curate.profile import ColumnProfile
from tunesmith.curate.profile_rows import RowEvent, observe
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext, StageFindings
from tunesmith.curate.turn_checks import origin_of
from tunesmith.curate.turns import Origin

# columns each preference format reads: its identifying keys (preference.py) plus a system prompt
PREFERENCE_COLUMNS = {fmt: set().union(*(keys for name, keys in PREFERENCE_KEYS if name == fmt), {"system"})
                      for fmt in PREFERENCE_FORMATS}
REVIEW_CAP = 50


class ValidateFindings(StageFindings):
    special_tokens_from: str | None = None  # when special_tokens: reject
    fixups: dict[str, int]
    formats: dict[str, int]  # "source (format)" -> rows read, rejected ones included
    ignored_columns: dict[str, int]
    ignored_turn_keys: dict[str, int]
    multimodal: dict[str, Any] | None = None  # {"rows": n, "by_kind": {kind: n}}, when rows were multimodal
    profile: dict[str, Any]  # ColumnProfile.findings()
    media_token_rows: int
    review: list[dict[str, Any]] | None = None  # first REVIEW_CAP media-token and placeholder items
    review_total: int | None = None
    warnings: list[str]


class ValidateTally:
    """What validate counts across rows; `profile` is None in a worker, whose rows wait as `events`."""

    def __init__(self, profile: ColumnProfile | None) -> None:
        self.fixups: Counter = Counter()
        self.formats: Counter = Counter()
        self.ignored: Counter = Counter()
        self.turn_keys: Counter = Counter()
        self.multimodal: Counter = Counter()
        self.review: list[dict[str, Any]] = []
        self.media_rows = 0
        self.profile = profile
        self.events: list[RowEvent] = []

    def kept(self, example: Example, row: Example) -> None:
        """Profile a kept row (`example` as read, `row` as it leaves validate)."""
        if self.profile is not None:
            self.profile.add(example.fields, row.messages, row)
        else:
            self.events.append(observe(example.fields, row.messages, row))

    def merge(self, other: ValidateTally) -> ValidateTally:
        """This tally's rows followed by `other`'s: counters add, the first review items stay first."""
        for mine, theirs in ((self.fixups, other.fixups), (self.formats, other.formats),
                             (self.ignored, other.ignored), (self.turn_keys, other.turn_keys),
                             (self.multimodal, other.multimodal)):
            mine.update(theirs)
        self.review = (self.review + other.review)[:REVIEW_CAP]
        self.media_rows += other.media_rows
        if other.profile is not None and other.profile.rows:
            raise ValueError("validate: a tally that profiled its own rows can only start the stream, not follow")
        if self.profile is not None:
            for event in other.events:
                self.profile.take(event)
        else:
            self.events += other.events
        return self

    def column_profile(self) -> ColumnProfile:
        """The profile of every row this tally holds."""
        if self.profile is None:
            self.profile = ColumnProfile()
            for event in self.events:
                self.profile.take(event)
            self.events = []
        return self.profile

    def add(self, example: Example, reason: str | None = None) -> None:
        """Count a row's unread columns and turn keys (a rejected row's media columns and weights were read)."""
        self.formats[f"{example.source} ({example.format})"] += 1
        if example.fields is None:
            return
        fields, fmt = example.fields, example.format
        used = read_columns(fmt, fields) or PREFERENCE_COLUMNS.get(fmt, set())
        media_used = reason == "multimodal_unsupported"
        self.ignored.update(column for column in fields if column not in used and column not in example.meta
                            and not (media_used and column in MEDIA_COLUMNS))
        keys = unread_turn_keys(fmt, fields)
        if reason == "turn_weight_unsupported":
            keys = [key for key in keys if not key.endswith("[].weight")]
        self.turn_keys.update(keys)

    def media(self, example: Example, messages: list[Message], rejected: list[Message],
              origins: list[Origin] | None) -> None:
        """A review item for an `<image>`-style token in a row with no media: text, or media lost on export."""
        texts = [(m.content, origin_of(origins, i).content) for i, m in enumerate(messages)]
        texts += [(m.content, origin_of(None, i, "rejected").content) for i, m in enumerate(rejected)]
        for text, field in texts:
            kind = media_token(text)
            if kind is None:
                continue
            self.media_rows += 1
            if len(self.review) < REVIEW_CAP:
                self.review.append({
                    "kind": "media_token", "id": example.id, "where": example.where, "field": field,
                    "text": text[:300],
                    "detail": f"the text holds <{kind}>, the placeholder multimodal datasets put where {_a(kind)} {kind} "
                              f"goes, but the row has no {kind}: if its media were lost on export, the text refers "
                              f"to something the model never sees; if <{kind}> is literal text (HTML, code), ignore "
                              "this"})
            return

    def write(self, ctx: StageContext) -> list[str]:
        """Findings for what was not read (ignored columns and turn keys, multimodal and plain-text rows), the
        profile, and review items for media tokens and placeholders; returns the warning sentences."""
        ctx.finding("fixups", dict(self.fixups))
        ctx.finding("formats", dict(self.formats))
        ignored, multimodal = self.ignored, self.multimodal
        ctx.finding("ignored_columns", dict(ignored.most_common()))
        ctx.finding("ignored_turn_keys", dict(self.turn_keys.most_common()))
        ctx.extra["ignored_columns"] = dict(ignored)  # split names them when group_by/stratify asks for one
        warnings = [sentence] if (sentence := _ignored_sentence(ignored, self.turn_keys)) else []
        if multimodal:
            ctx.finding("multimodal", {"rows": sum(multimodal.values()), "by_kind": dict(multimodal.most_common())})
            kinds = ", ".join(f"{kind}: {readable(n)}" for kind, n in multimodal.most_common())
            warnings.append(f"{readable(sum(multimodal.values()))} rows hold images, audio or video ({kinds}) and were "
                            "rejected as multimodal_unsupported: tunesmith trains on text only")
        text_rows = ctx.counts["rejected:plain_text_unsupported"]
        if text_rows:
            warnings.append(f"{readable(text_rows)} rows were rejected as plain_text_unsupported: {PLAIN_TEXT}")
        profile = self.column_profile()
        ctx.finding("profile", profile.findings())
        ctx.finding("media_token_rows", self.media_rows)
        warnings += profile.warnings()
        review = self.review + profile.review_items()
        if review:
            ctx.finding("review", review[:REVIEW_CAP])
            ctx.finding("review_total", self.media_rows + profile.findings()["placeholders"]["rows"])
        ctx.finding("warnings", warnings)
        return warnings


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _ignored_sentence(columns: Counter, turn_keys: Counter) -> str | None:
    """One warning sentence naming the unread columns and per-turn keys, with the row count of each."""
    parts = []
    if columns:
        listed = ", ".join(f"{column} ({readable(rows)} rows)" for column, rows in columns.most_common(10))
        more = f" and {len(columns) - 10} more" if len(columns) > 10 else ""
        keep = ", ".join(column for column, _ in columns.most_common(3))
        parts.append(f"ignored columns: {listed}{more}; keep one with `keep_columns: [{keep}]` on the source")
    if turn_keys:
        listed = ", ".join(f"{key} ({readable(rows)} rows)" for key, rows in turn_keys.most_common(10))
        more = f" and {len(turn_keys) - 10} more" if len(turn_keys) > 10 else ""
        parts.append(f"ignored per-turn keys: {listed}{more} (a turn keeps only its role, text, tool calls, "
                     "tool_call_id and name)")
    return "; ".join(parts) or None
