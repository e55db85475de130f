"""Per-column profile of the rows `validate` keeps: how varied each field and role is, and template leftovers.

A prompt that is one value in every row teaches nothing; an answer full of `{{name}}` teaches the model to write
`{{name}}`; many rows sharing one long answer teach that answer. A constant instruction beside a varying `input` is
an ordinary task set (one instruction, many inputs), and answers drawn from a few labels are a classification set:
both are notes in the findings, not warnings. `ColumnProfile.add` is called once per kept row (or `take` with the
row's `profile_rows.observe` event, computed in a worker), then `findings()` (JSON for the card), `warnings()`
(sentences) and `review_items()` (rows to look at).

Memory: each column keeps one 64-bit hash per row (8 bytes, an `array("Q")`), so distinct counts, the top value
and the identical-answer rate are exact; 1M rows x 6 columns is 48 MB. Past `max_rows` rows the profile covers the
first `max_rows` (the findings say so). Only scalar fields are hashed (lists and dicts such as `conversations`
are profiled through their roles), at most `max_fields` of them. Adding events in row order gives exactly the
profile of `add` over the same rows (value texts, the majority vote, the caps and the first review items).
"""

from __future__ import annotations

import json
from array import array
from typing import Any

from tunesmith.config import readable
from tunesmith.curate.profile_rows import Column, RowEvent, observe, shared_answers

# raw input fields that hold the prompt in the common formats; a constant one means the prompt does not vary
PROMPT_FIELDS = frozenset({"instruction", "input", "prompt", "question", "query", "context", "human", "user"})
PROMPT_ROLES = frozenset({"user"})  # a constant system prompt is normal and says nothing about the data
REVIEW_CAP = 50
# answers look like class labels when they repeat (at most half distinct) and are either mostly 1-3 words or few
# (<= LABEL_VALUES) and mostly short: sharing them across prompts is the task, not memorising
LABEL_VALUES = 20
LABEL_WORDS, LABEL_SHORT_WORDS, LABEL_SHARE = 3, 10, 0.8
KTO_MINORITY_SHARE = 0.1  # KTO learns from desirable and undesirable answers: warn when one side is under this


class ColumnProfile:
    """Profile of the kept rows; see the module docstring for what it finds and what it costs."""

    def __init__(
        self,
        *,
        near_constant_share: float = 0.5,
        min_rows: int = 20,
        identical_response_share: float = 0.1,
        placeholder_share: float = 0.01,
        max_rows: int = 1_000_000,
        max_fields: int = 16,
    ) -> None:
        self.near_constant_share = near_constant_share
        self.min_rows = min_rows
        self.identical_response_share = identical_response_share
        self.placeholder_share = placeholder_share
        self.max_rows = max_rows
        self.max_fields = max_fields
        self.rows = 0
        self.fields: dict[str, Column] = {}
        self.field_kinds: dict[str, str] = {}  # fields that are not profiled: name -> "list", "dict", "skipped"
        self.roles: dict[str, Column] = {}
        self.placeholder_rows = 0
        self.placeholder_kinds: dict[str, int] = {}
        self.placeholder_examples: dict[str, str] = {}  # kind -> first span found, shown in the warning
        self.review: list[dict[str, Any]] = []
        self.answer_prompts = array("Q")  # per row with an answer: its prompt's hash, aligned with roles["assistant"]
        self.prompt = Column()  # the whole prompt (every non-answer turn): constant only if it never varies
        self.answer_words = {LABEL_WORDS: 0, LABEL_SHORT_WORDS: 0}  # answers of at most this many words
        self.kto_labels = {True: 0, False: 0}  # KTO rows' labels, counted over every row (not capped by max_rows)
        self._cached: tuple[int, dict[str, Any]] | None = None

    def add(self, fields: dict[str, Any] | None, messages: Any, example: Any = None) -> None:
        """Count one kept row: its raw input `fields`, its `messages` (role/content turns) and, when given, the
        `example` it became (for the review items' id and where, and its rejected answer on preference rows)."""
        if self.rows >= self.max_rows:  # past the cap only the KTO labels count: skip the hashing
            self.rows += 1
            label = getattr(example, "label", None)
            if label is not None:
                self.kto_labels[label] += 1
            return
        self.take(observe(fields, messages, example))

    def take(self, event: RowEvent) -> None:
        """Count one kept row from its event (`profile_rows.observe`, run where the row was, maybe a worker)."""
        self.rows += 1
        if event.label is not None:
            self.kto_labels[event.label] += 1
        if self.rows > self.max_rows:
            return
        for name, digest, clipped in event.fields:
            self._add_field(name, digest, clipped)
        for role, digest, clipped in event.roles:
            self.roles.setdefault(role, Column()).push(digest, clipped)
        self.prompt.push(*event.prompt)
        if event.answer_words is not None:
            self.answer_prompts.append(event.prompt[0])
            for limit in self.answer_words:
                self.answer_words[limit] += event.answer_words <= limit
        for side, hits in event.placeholders:
            self._add_placeholders(hits, event.who, side)
        self.placeholder_rows += bool(event.placeholders)  # a row with both answers counts once

    def _add_field(self, name: str, digest: Any, clipped: str) -> None:
        if isinstance(digest, str):  # a list or dict: profiled through its roles
            self.field_kinds.setdefault(name, digest)
            return
        column = self.fields.get(name)
        if column is None:
            if len(self.fields) >= self.max_fields:
                self.field_kinds.setdefault(name, "skipped")
                return
            column = self.fields[name] = Column()
        column.push(digest, clipped)

    def _add_placeholders(self, found: tuple[tuple[str, str], ...], who: Any, side: str) -> None:
        """Record the placeholders of one side's answers."""
        for kind, span in found:
            self.placeholder_kinds[kind] = self.placeholder_kinds.get(kind, 0) + 1
            self.placeholder_examples.setdefault(kind, span)
        if len(self.review) < REVIEW_CAP:
            spans = ", ".join(dict.fromkeys(span for _, span in found))
            self.review.append({
                "kind": "placeholder",
                "id": who[0],
                "where": who[1],
                "field": side,
                "text": spans[:300],
                "detail": "the answer holds an unfilled template placeholder; the model would learn to write it"
                if side == "assistant" else "the rejected answer holds an unfilled template placeholder (a preference "
                "pair that teaches little: check the chosen answer is not the same template)",
            })

    def findings(self) -> dict[str, Any]:
        """JSON-able profile for the stage's findings (`validate`'s `profile`)."""
        if self._cached is not None and self._cached[0] == self.rows:
            return self._cached[1]
        out: dict[str, Any] = {
            "rows": self.rows,
            "profiled_rows": min(self.rows, self.max_rows),
            "fields": {name: column.summary() for name, column in self.fields.items()},
            "roles": {role: column.summary() for role, column in self.roles.items()},
            "prompt": self.prompt.summary(),
            "placeholders": {"rows": self.placeholder_rows, "by_kind": dict(sorted(self.placeholder_kinds.items()))},
        }
        if self.field_kinds:
            out["not_profiled"] = dict(self.field_kinds)
        true, false = self.kto_labels[True], self.kto_labels[False]
        if true + false:
            out["kto_labels"] = {"true": true, "false": false, "true_share": round(true / (true + false), 4)}
        notes = []
        answer = self.roles.get("assistant")
        if answer is not None and len(answer.hashes):
            shared = shared_answers(answer.hashes, self.answer_prompts)
            out["identical_responses"] = {"rows": shared, "share": round(shared / len(answer.hashes), 4)}
            labels = self._labels(answer, out["roles"]["assistant"])
            if labels:
                out["answer_labels"] = labels
                notes.append(f"answers look like class labels ({labels['distinct']} distinct values), so answers "
                             "shared across prompts are expected; their distribution is in answer_labels")
        if not self._near_constant(out["prompt"]):
            notes += self._task_set_notes(out)
        if notes:
            out["notes"] = notes
        self._cached = (self.rows, out)
        return out

    def _labels(self, answer: Column, summary: dict[str, Any]) -> dict[str, Any] | None:
        """The label distribution when the answers are class labels (see LABEL_VALUES), else None."""
        rows = summary["rows"]
        if rows < self.min_rows or summary["distinct_ratio"] > 0.5:
            return None  # answers that rarely repeat are not labels, however short
        short, brief = (self.answer_words[n] / rows for n in (LABEL_WORDS, LABEL_SHORT_WORDS))
        if short < LABEL_SHARE and not (summary["distinct"] <= LABEL_VALUES and brief >= LABEL_SHARE):
            return None
        return {"distinct": summary["distinct"], "counts": answer.top(LABEL_VALUES)}

    def _task_set_notes(self, found: dict[str, Any]) -> list[str]:
        """Neutral notes for constant prompt fields when the whole prompt still varies (one task, many inputs)."""
        columns = [(name, s) for name, s in found["fields"].items() if name in PROMPT_FIELDS]
        columns += [(f"the {role} turn", s) for role, s in found["roles"].items() if role in PROMPT_ROLES]
        constant = [(name, s) for name, s in columns if self._near_constant(s)]
        varying = [name for name, s in columns if s.get("rows") and (name, s) not in constant]
        fields = [name for name in varying if name in found["fields"]]  # the user turn varies because they do
        through = ", ".join(fields or varying) or "other turns"
        return [f"{name} is one value in {readable(s['top_count'])} of {readable(s['rows'])} rows: "
                f"{json.dumps(s['top_value'], ensure_ascii=False)}; the prompt still varies (through {through}), "
                "as in a task set with one instruction" for name, s in constant]

    def warnings(self) -> list[str]:
        """Sentences a user must read: a constant prompt, template leftovers, many identical (non-label) answers."""
        found = self.findings()
        out = self._constant_prompt(found) if self._near_constant(found["prompt"]) else []
        out += self._placeholder_warning(found)
        out += _label_balance_warning(found.get("kto_labels"))
        identical = found.get("identical_responses")
        rows = found["roles"].get("assistant", {}).get("rows", 0)
        if (identical and "answer_labels" not in found and rows >= self.min_rows
                and identical["share"] > self.identical_response_share):
            out.append(
                f"{readable(identical['rows'])} of {readable(rows)} rows ({identical['share']:.0%}) give the same answer "
                "as a row with a different prompt; the model will learn those answers by heart (see validate's profile)"
            )
        return out

    def _near_constant(self, summary: dict[str, Any]) -> bool:
        # an empty `input` in most alpaca rows is normal, not a constant prompt
        return (summary.get("rows", 0) >= self.min_rows and summary.get("top_share", 0.0) > self.near_constant_share
                and bool((summary.get("top_value") or "").strip()))

    def _constant_prompt(self, found: dict[str, Any]) -> list[str]:
        """One sentence per constant prompt field (the user turn, or the whole prompt, when no field is named)."""
        prompt = found["prompt"]
        out = [self._constant(name, summary, prompt) for name, summary in found["fields"].items()
               if name in PROMPT_FIELDS and self._near_constant(summary)]
        if not out:  # a constant instruction makes the user turn constant too: one sentence is enough
            out = [self._constant(f"the {role} turn", summary, prompt) for role, summary in found["roles"].items()
                   if role in PROMPT_ROLES and self._near_constant(summary)]
        return out or [self._constant("the prompt", prompt, prompt)]

    def _constant(self, name: str, summary: dict[str, Any], prompt: dict[str, Any]) -> str:
        rows, share, shown = summary["rows"], summary["top_share"], json.dumps(summary["top_value"], ensure_ascii=False)
        if summary["distinct"] == 1:
            sentence = f"{name} is one value in all {readable(rows)} rows: {shown}; it tells the model nothing"
        else:
            sentence = (f"{name} is one value in {readable(summary['top_count'])} of {readable(rows)} rows "
                        f"({share:.0%}): {shown}; such a prompt tells the model little")
        if prompt["top_share"] < share:  # the field is more constant than the prompt: say how constant the prompt is
            sentence += f" (the whole prompt is one value in {readable(prompt['top_count'])} of {readable(rows)} rows)"
        return sentence

    def _placeholder_warning(self, found: dict[str, Any]) -> list[str]:
        rows, kinds = found["placeholders"]["rows"], found["placeholders"]["by_kind"]
        # `{{name}}` is never meant; `[Your Name]` in a letter can be, so it warns only when common
        if not rows or ("double_brace" not in kinds and rows < self.placeholder_share * max(self.rows, 1)):
            return []
        shown = ", ".join(f"{kind} x{readable(n)}" for kind, n in kinds.items())
        examples = self.placeholder_examples
        example = examples.get("double_brace") or next(iter(examples.values()), "")  # the kind that warned first
        return [
            f"{readable(rows)} of {readable(self.rows)} answers hold unfilled template placeholders ({shown}), "
            f"e.g. {example!r}; fill them or drop those rows (see validate's review items)"
        ]

    def review_items(self) -> list[dict[str, Any]]:
        """Rows with template placeholders (first 50); `findings()["placeholders"]["rows"]` is the full count."""
        return list(self.review)


def _label_balance_warning(labels: dict[str, Any] | None) -> list[str]:
    """A sentence when one KTO label is under KTO_MINORITY_SHARE of the labelled rows."""
    if not labels:
        return []
    rows = labels["true"] + labels["false"]
    side, count = min((("false", labels["false"]), ("true", labels["true"])), key=lambda pair: pair[1])
    if count / rows >= KTO_MINORITY_SHARE:
        return []
    kind = "undesirable" if side == "false" else "desirable"
    return [f"KTO labels: only {readable(count)} of {readable(rows)} rows ({count / rows:.0%}) are labelled {side} "
            f"({kind} answers); KTO learns from both desirable and undesirable answers, so add {side} rows "
            "(see validate's profile, kto_labels)"]
