"""Stage `bias_audit`: an inspector that keeps every row and records what the data says about groups.

It counts identity terms per category, gendered pronouns, identity terms linked to a negative descriptor in
one clause (`cooccurrence.py`; each one a review item with its sentence), profanity, and the languages of a
seeded sample (`language_sample.py`). The word lists are English only (`lexicon.py`), and the findings say so.

A row stage: each process feeds its rows to a `_Tally` (counters, the first ids and review items, the language
sample), tallies of batches merge in row order, and the findings and warnings are written from the merged one.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.curate import cooccurrence
from tunesmith.curate.language_sample import (
    LANGUAGES_COVERED,
    LanguageSample,
    coverage_sentence,
    judged,
    not_covered,
    short_note,
)
from tunesmith.curate.lexicon import CATEGORIES, PRONOUNS, Lexicon, count_terms, load_lexicon, scan, tokens
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, StageFindings, register_stage

__all__ = ["CATEGORIES", "BiasAudit", "load_lexicon", "scan"]

log = logging.getLogger(__name__)

SIDES = ("prompt", "response")
MAX_REVIEW = 50
ID_LIMITS = {"ids": 5, "co_ids": 5, "toxic_ids": 10}  # example ids kept per category / for profanity


class _Tally:
    """Running counts over rows; `merge` appends a later tally (counters add, the first ids and review items are
    kept in row order), and `findings()` turns them into the stage's findings."""

    def __init__(self, window: int, sample: LanguageSample) -> None:
        self.window, self.sample, self.rows = window, sample, 0
        self.identity = {c: {"prompt": 0, "response": 0, "rows": 0} for c in CATEGORIES}
        self.terms = {c: Counter() for c in CATEGORIES}
        self.ids: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        self.pronouns = {side: dict.fromkeys(PRONOUNS, 0) for side in SIDES}
        self.co_rows = dict.fromkeys(CATEGORIES, 0)
        self.co_ids: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        self.co_pairs = {c: Counter() for c in CATEGORIES}
        self.review: list[dict] = []
        self.review_total = 0
        self.toxic_rows, self.toxic_ids, self.toxic_terms = 0, [], Counter()

    def add(self, example: Example, lex: Lexicon) -> None:
        self.rows += 1
        categories, pairs, profanity = set(), set(), Counter()
        # a preference row's rejected answer is text the data holds too, so it is read like a response
        turns = [*((m, m.role) for m in example.messages), *((m, "rejected") for m in example.rejected)]
        for message, role in turns:
            side = "prompt" if role not in ("assistant", "rejected") else "response"
            counts = count_terms(tokens(message.content), lex)
            has = set()
            for term, n in counts.items():
                kind, label = lex.label[term]
                has.add(kind)
                if kind == "identity":
                    self.identity[label][side] += n
                    self.terms[label][term] += n
                    categories.add(label)
                elif kind == "pronoun":
                    self.pronouns[side][label] += n
                elif kind == "profanity":
                    profanity[term] += n
            if "identity" in has and "negative" in has:  # the clause pass runs only where it can find something
                for hit in cooccurrence.find(message.content, lex, self.window):
                    pairs.add((hit.category, hit.identity, hit.negative))
                    self._review(example, "rejected" if role == "rejected" else side, hit)
        self._add_row(example.id, categories, pairs, profanity)

    def _review(self, example: Example, field: str, hit: cooccurrence.Hit) -> None:
        self.review_total += 1
        if len(self.review) < MAX_REVIEW:
            self.review.append({
                "kind": "identity_negative", "id": example.id, "where": example.where, "field": field,
                "text": hit.sentence,
                "detail": f"'{hit.identity}' ({hit.category}) and '{hit.negative}' are {hit.gap} word(s) apart "
                          "in one clause: check whether the text states or endorses a stereotype",
            })

    def _add_row(self, row_id: str, categories: set, pairs: set, profanity: Counter) -> None:
        for category in categories:
            self.identity[category]["rows"] += 1
            _append(self.ids[category], row_id, ID_LIMITS["ids"])
        for category in {p[0] for p in pairs}:
            self.co_rows[category] += 1
            _append(self.co_ids[category], row_id, ID_LIMITS["co_ids"])
        for category, term, neg in sorted(pairs):  # sorted: ties in the top pairs come out the same each run
            self.co_pairs[category][f"{term}+{neg}"] += 1
        if profanity:
            self.toxic_rows += 1
            _append(self.toxic_ids, row_id, ID_LIMITS["toxic_ids"])
            self.toxic_terms.update(profanity)

    def merge(self, other: _Tally) -> _Tally:
        """This tally followed by `other` (the later rows). Counters keep first-seen key order when they add, so
        ties in the top terms come out as one pass over all rows would give them."""
        self.rows += other.rows
        for c in CATEGORIES:
            for side, n in other.identity[c].items():
                self.identity[c][side] += n
            self.terms[c].update(other.terms[c])
            self.co_pairs[c].update(other.co_pairs[c])
            self.co_rows[c] += other.co_rows[c]
            self.ids[c] = (self.ids[c] + other.ids[c])[: ID_LIMITS["ids"]]
            self.co_ids[c] = (self.co_ids[c] + other.co_ids[c])[: ID_LIMITS["co_ids"]]
        for side in SIDES:
            for pronoun, n in other.pronouns[side].items():
                self.pronouns[side][pronoun] += n
        self.review = (self.review + other.review)[:MAX_REVIEW]
        self.review_total += other.review_total
        self.toxic_rows += other.toxic_rows
        self.toxic_ids = (self.toxic_ids + other.toxic_ids)[: ID_LIMITS["toxic_ids"]]
        self.toxic_terms.update(other.toxic_terms)
        self.sample.merge(other.sample)
        return self

    def findings(self) -> dict:
        rows = self.rows
        he = self.pronouns["prompt"]["he"] + self.pronouns["response"]["he"]
        she = self.pronouns["prompt"]["she"] + self.pronouns["response"]["she"]
        identity = {
            c: {**self.identity[c], "top_terms": _top(self.terms[c]), "example_ids": self.ids[c]} for c in CATEGORIES
        }
        co = {
            c: {"rows": self.co_rows[c], "rate": round(self.co_rows[c] / rows, 4) if rows else 0.0,
                "example_ids": self.co_ids[c], "pairs": _top(self.co_pairs[c])}
            for c in CATEGORIES
        }
        toxicity = {
            "rows": self.toxic_rows,
            "rate": round(self.toxic_rows / rows, 4) if rows else 0.0,
            "example_ids": self.toxic_ids,
            "top_terms": _top(self.toxic_terms),
        }
        pronouns = {**self.pronouns, "he_she_ratio": round(he / she, 3) if she else None}
        return {"identity_terms": identity, "pronouns": pronouns, "cooccurrence": co, "toxicity": toxicity,
                "review": self.review, "review_total": self.review_total}


def _append(ids: list[str], row_id: str, limit: int) -> None:
    if len(ids) < limit:
        ids.append(row_id)


def _top(counter: Counter, n: int = 10) -> dict[str, int]:
    return dict(counter.most_common(n))


def pronoun_warnings(pronouns: dict, ratio: float, min_count: int) -> list[str]:
    """He/she imbalance per side, judged only on a side with at least `min_count` he+she (few are noise)."""
    out = []
    for side in SIDES:
        he, she = pronouns[side]["he"], pronouns[side]["she"]
        if he + she < min_count:
            continue
        if min(he, she) == 0:
            more, count = ("he", he) if he else ("she", she)
            out.append(f"gender: '{more}' appears {count} times and '{'she' if he else 'he'}' never in {side}s")
        elif he / she > ratio or she / he > ratio:
            (more, a), (less, b) = sorted([("he", he), ("she", she)], key=lambda p: -p[1])
            out.append(f"gender: '{more}' appears {a / b:.1f}x as often as '{less}' in {side}s")
    return out


def warnings_for(findings: dict, config: BiasAudit.Config) -> list[str]:
    """Plain-English warnings: pronoun imbalance, co-occurrence above its rate, profanity, non-English data."""
    out = pronoun_warnings(findings["pronouns"], config.imbalance_ratio, config.min_pronoun_count)
    for category, co in findings["cooccurrence"].items():
        if co["rows"] and co["rate"] > config.cooccurrence_warn_rate:
            top = next(iter(co["pairs"]))
            out.append(
                f"{category}: {co['rows']} row(s) ({co['rate']:.1%}) link a {category} term to a negative word in "
                f"one clause (most common: '{top}'); see the review items, e.g. {', '.join(co['example_ids'])}"
            )
    if findings["toxicity"]["rows"]:
        tox = findings["toxicity"]
        out.append(f"profanity: {tox['rows']} row(s) ({tox['rate']:.1%}) contain profanity")
    languages, short = findings["languages"], findings.get("language_too_short", 0)
    other = not_covered(languages)
    if other > 0.5:
        out.append(f"languages: {other:.0%} of the sampled rows are not English (counting the {judged(languages)} "
                   f"rows long enough to tell{short_note(short)}); the bias lexicons are English-only, so the "
                   "identity, pronoun, co-occurrence and profanity findings do not cover those rows")
    return out


class _Identity(StageFindings):
    prompt: int
    response: int
    rows: int
    top_terms: dict[str, int]
    example_ids: list[str]


class _Cooccurrence(StageFindings):
    rows: int
    rate: float
    example_ids: list[str]
    pairs: dict[str, int]


class _Toxicity(StageFindings):
    rows: int
    rate: float
    example_ids: list[str]
    top_terms: dict[str, int]


class _Pronouns(StageFindings):
    prompt: dict[str, int]
    response: dict[str, int]
    he_she_ratio: float | None


class BiasFindings(StageFindings):
    identity_terms: dict[str, _Identity]
    pronouns: _Pronouns
    cooccurrence: dict[str, _Cooccurrence]
    toxicity: _Toxicity
    review: list[dict[str, Any]]
    review_total: int
    languages: dict[str, int]
    language_sample_size: int
    language_sample_method: str
    language_too_short: int
    languages_covered: list[str]
    coverage: str
    warnings: list[str]



@register_stage
class BiasAudit(Stage):
    """Inspector: keeps every row, records identity, pronoun, co-occurrence, toxicity and language findings."""

    name = "bias_audit"
    version = "3"  # 3: the language sample is a bottom-k of seeded id hashes (the same for any batching)
    mode = "row"
    inspector = True
    Findings = BiasFindings

    class Config(StrictModel):
        language_sample: int = Field(
            1000, ge=0, le=10_000_000, description="Rows (seeded sample) whose language is detected (at most 10,000,000)."
        )
        language_chars: int = Field(
            300, ge=20, le=1_000_000, description="Characters of each sampled row given to language ID (at most 1,000,000)."
        )
        language_min_letters: int = Field(
            20, ge=1, le=10_000, description="Letters a sampled row needs for its language to be told; shorter rows "
            "('Sky 0?') are too short for language ID and are counted apart, not as a language."
        )
        imbalance_ratio: float = Field(2.0, gt=1.0, le=1_000_000, description="Warn when he/she (or she/he) exceeds this.")
        min_pronoun_count: int = Field(
            20, ge=0, le=1_000_000_000, description="Pronoun imbalance is judged on a side (prompts, responses) only "
            "when it has at least this many he+she; fewer are noise."
        )
        cooccurrence_window: int = Field(
            4, ge=0, le=50, description="Most words between an identity term and a negative word of one clause for "
            "them to count as linked (at most 50)."
        )
        cooccurrence_warn_rate: float = Field(
            0.01, ge=0, le=1, description="Linked identity/negative pairs are review items; above this share of rows "
            "(per category) they are also a warning."
        )

    def setup(self, ctx: StageContext) -> None:
        self._lex = load_lexicon()

    def open(self, ctx: StageContext) -> _Tally:
        cfg = self.config
        return _Tally(cfg.cooccurrence_window, LanguageSample(cfg.language_sample, cfg.language_chars, ctx.seed))

    def process_batch(self, batch: list[Example], state: _Tally, ctx: StageContext) -> list[Example]:
        for example in batch:
            state.add(example, self._lex)
        state.sample.add(batch)
        return list(batch)

    def merge(self, state: _Tally, other: _Tally) -> _Tally:
        return state.merge(other)

    def close(self, state: _Tally, ctx: StageContext) -> None:
        findings = state.findings()
        languages, short = state.sample.languages(self.config.language_min_letters)
        findings["languages"] = languages
        findings["language_sample_size"] = len(state.sample.rows)
        findings["language_sample_method"] = state.sample.method()
        findings["language_too_short"] = short
        findings["languages_covered"] = LANGUAGES_COVERED
        findings["coverage"] = coverage_sentence(languages, short)
        findings["warnings"] = warnings_for(findings, self.config)
        for key, value in findings.items():
            ctx.finding(key, value)
        for warning in findings["warnings"]:
            log.warning("bias_audit: %s", warning)
