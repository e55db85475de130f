"""The parts of `validate`'s column profile that look at one row (`observe`) and one column (`Column`).

`observe` does the costly work of a kept row (hashing every field and turn, searching the answers for template
placeholders) and returns a small `RowEvent`: digests, values clipped to CLIP characters and the placeholder hits.
A forked worker observes its rows and hands the events back; the driver's `ColumnProfile.take` adds them in row
order, so the profile of a streamed run is, value for value, the profile of one pass over all rows.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from typing import Any, NamedTuple

from tunesmith.curate.placeholders import find_placeholders

CLIP = 80  # characters of a value shown in findings and sentences
ANSWER_ROLES = ("assistant",)

Hits = tuple[tuple[str, str], ...]  # (placeholder kind, matched span), in text order


def digest_of(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def clip(text: str) -> str:
    return text if len(text) <= CLIP else text[: CLIP - 3] + "..."


class RowEvent(NamedTuple):
    """What one kept row adds to a profile."""

    label: bool | None  # a KTO row's label
    fields: tuple[tuple[str, Any, str], ...]  # (name, digest, clipped value), or (name, "list"/"dict", "")
    roles: tuple[tuple[str, int, str], ...]  # (role, digest, clipped text) per role, turns of one role joined
    prompt: tuple[int, str]  # every non-answer turn joined: digest, clipped text
    answer_words: int | None  # words of the answer turns; None when the row has no answer
    placeholders: tuple[tuple[str, Hits], ...]  # ("assistant" | "rejected", hits) for each side with hits
    who: tuple[str | None, str | None] | None  # the row's id and where, when it has placeholders (review items)


def _field_keys(fields: dict[str, Any] | None) -> tuple[tuple[str, Any, str], ...]:
    """Scalar fields hashed, lists and dicts named by kind (they are profiled through their roles), None skipped."""
    keys = []
    for name, value in (fields or {}).items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            keys.append((name, type(value).__name__, ""))
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        keys.append((name, digest_of(text), clip(text)))
    return tuple(keys)


def observe(fields: dict[str, Any] | None, messages: Any, example: Any = None) -> RowEvent:
    """The event of one kept row: its raw input `fields`, its `messages` and, when given, the `example` it became
    (for the review items' id and where, and its rejected answer on preference rows)."""
    by_role: dict[str, list[str]] = {}
    for message in messages:
        by_role.setdefault(message.role, []).append(message.content)
    for message in tuple(getattr(example, "rejected", ()) or ()):
        by_role.setdefault("rejected", []).append(message.content)
    roles = []
    for role, contents in by_role.items():
        text = "\n".join(contents)
        roles.append((role, digest_of(text), clip(text)))
    prompt = "\n".join(m.content for m in messages if m.role != "assistant")
    words = len("\n".join(by_role["assistant"]).split()) if "assistant" in by_role else None
    chosen = [c for role in ANSWER_ROLES for c in by_role.get(role, ())]
    placeholders = []
    for side, answers in (("assistant", chosen), ("rejected", by_role.get("rejected", []))):
        hits = tuple(hit for text in answers for hit in find_placeholders(text, context=prompt))
        if hits:
            placeholders.append((side, hits))
    who = (getattr(example, "id", None), getattr(example, "where", None)) if placeholders else None
    return RowEvent(getattr(example, "label", None), _field_keys(fields), tuple(roles),
                    (digest_of(prompt), clip(prompt)), words, tuple(placeholders), who)


class Column:
    """One field or role: a hash per row plus the text of the first few distinct values and a majority vote."""

    TEXTS = 256  # distinct values whose text is kept, so a low-cardinality column always shows its top value

    def __init__(self) -> None:
        self.hashes = array("Q")
        self.texts: dict[int, str] = {}
        self.candidate: tuple[int, str] | None = None  # Boyer-Moore majority: any value in > 50% of rows ends here
        self.votes = 0

    def push(self, digest: int, clipped: str) -> None:
        """One row's value, as its digest and clipped text."""
        self.hashes.append(digest)
        if len(self.texts) < self.TEXTS and digest not in self.texts:
            self.texts[digest] = clipped
        if self.votes == 0:
            self.candidate, self.votes = (digest, clipped), 1
        else:
            self.votes += 1 if self.candidate is not None and self.candidate[0] == digest else -1

    def top(self, k: int) -> dict[str, int]:
        """The k most common values whose text is kept, with their row counts, most common first."""
        import numpy as np

        values, counts = np.unique(np.frombuffer(self.hashes, dtype=np.uint64), return_counts=True)
        order = counts.argsort(kind="stable")[::-1][:k]
        return {self.texts[int(values[i])]: int(counts[i]) for i in order if int(values[i]) in self.texts}

    def summary(self) -> dict[str, Any]:
        import numpy as np  # only when the profile is read, so importing this module stays cheap

        rows = len(self.hashes)
        if rows == 0:
            return {"rows": 0}
        values, counts = np.unique(np.frombuffer(self.hashes, dtype=np.uint64), return_counts=True)
        top = int(counts.argmax())
        top_hash = int(values[top])
        text = self.texts.get(top_hash)
        if text is None and self.candidate is not None and self.candidate[0] == top_hash:
            text = self.candidate[1]
        repeated = int(counts[counts > 1].sum())
        return {
            "rows": rows,
            "distinct": len(values),
            "distinct_ratio": round(len(values) / rows, 4),
            "top_share": round(int(counts[top]) / rows, 4),
            "top_count": int(counts[top]),
            "top_value": text,
            "repeated_rows": repeated,  # rows whose value equals another row's value
        }


def shared_answers(answers: array, prompts: array) -> int:
    """Rows whose answer is also the answer to a different prompt. Rows repeating prompt and answer both are left
    to exact_dedup, which drops them, so they do not count here."""
    import numpy as np

    pairs = np.unique(np.stack([np.frombuffer(answers, dtype=np.uint64), np.frombuffer(prompts, dtype=np.uint64)]),
                      axis=1)  # one column per distinct (answer, prompt)
    values, prompts_per_answer = np.unique(pairs[0], return_counts=True)
    shared = values[prompts_per_answer > 1]
    return int(np.isin(np.frombuffer(answers, dtype=np.uint64), shared).sum())
