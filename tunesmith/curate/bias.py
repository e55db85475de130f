"""Stage `bias_audit`: an inspector that keeps every row and records what the data says about groups.

It counts identity terms per category, gendered pronouns, identity terms that share a sentence with a
negative descriptor, profanity, and the languages of a seeded sample. Word lists are data files in
`tunesmith/assets/lexicons/`; each text is tokenized once and looked up in dicts, with no per-term regex.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources

from pydantic import Field

from tunesmith.config import StrictModel
from tunesmith.curate.record import Example
from tunesmith.curate.stage import Stage, StageContext, register_stage

log = logging.getLogger(__name__)

CATEGORIES = ("gender", "race_ethnicity", "nationality", "religion", "age", "disability", "sexual_orientation")
PRONOUNS = ("he", "she", "they")
SIDES = ("prompt", "response")
_TOKEN = re.compile(r"[a-z']+|[.!?;\n]")  # words, plus sentence ends so co-occurrence needs no second pass
_STOPS = frozenset(".!?;\n")


@dataclass(frozen=True)
class Lexicon:
    """Every term of every word list, keyed for set and dict lookups."""

    alias: dict[str, str]  # single token (and its possessive) -> term
    phrases: dict[tuple[str, ...], str]  # multi-word token tuple -> term
    first_words: frozenset[str]  # first tokens of the phrases, to skip the phrase scan on most texts
    negative: frozenset[str]  # tokens that start a negative term, to skip sentences without one
    label: dict[str, tuple[str, str]]  # term -> ("identity", category) | ("pronoun", he/she/they) | (kind, "")


def tokens(text: str) -> list[str]:
    """Lowercase words and sentence ends; apostrophes stay inside words (women's), quotes ('lazy') go."""
    text = text.lower().replace("\u2019", "'")
    words = _TOKEN.findall(text)
    return [w.strip("'") for w in words] if "'" in text else words


def _read_terms(path) -> list[str]:
    """Terms of a one-term-per-line list, normalised by the same tokenizer the texts go through."""
    lines = path.read_text(encoding="utf-8").splitlines()
    terms = (
        " ".join(w for w in tokens(line) if w not in _STOPS) for line in lines if not line.lstrip().startswith("#")
    )
    return [term for term in terms if term]


@functools.lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """Read the packaged lexicons once per process."""
    root = resources.files("tunesmith") / "assets" / "lexicons"
    labels: dict[str, tuple[str, str]] = {}
    for category in CATEGORIES:
        for term in _read_terms(root / f"identity_{category}.txt"):
            labels.setdefault(term, ("identity", category))
    pronouns = json.loads((root / "pronouns.json").read_text(encoding="utf-8"))
    for pronoun in PRONOUNS:
        for form in pronouns[pronoun]:
            labels.setdefault(form, ("pronoun", pronoun))
    for kind in ("negative", "profanity"):
        for term in _read_terms(root / f"{kind}.txt"):
            labels.setdefault(term, (kind, ""))
    alias, phrases = {}, {}
    for term in labels:
        parts = tuple(term.split())
        possessive = (*parts[:-1], parts[-1] + "'s")
        table = alias if len(parts) == 1 else phrases
        key, key_s = (parts[0], possessive[0]) if len(parts) == 1 else (parts, possessive)
        table[key] = term
        table.setdefault(key_s, term)
    negative = {
        key if isinstance(key, str) else key[0]
        for key, term in [*alias.items(), *phrases.items()]
        if labels[term][0] == "negative"
    }
    return Lexicon(alias, phrases, frozenset(p[0] for p in phrases), frozenset(negative), labels)


def scan(text: str, lex: Lexicon) -> dict[str, int]:
    """Count lexicon terms in `text`: word-boundary, case-insensitive, phrases counted instead of their words."""
    return count_terms(tokens(text), lex)


def count_terms(words: list[str], lex: Lexicon) -> dict[str, int]:
    """Term counts of a token list: set lookups for single words, a phrase pass only when one may start."""
    counts: dict[str, int] = {}
    for token in lex.alias.keys() & words:
        term = lex.alias[token]
        counts[term] = counts.get(term, 0) + words.count(token)
    starts = lex.first_words.intersection(words)
    if starts:
        _count_phrases(words, _positions(words, starts), lex, counts)
    return counts


def _positions(words: list[str], wanted: set[str]) -> list[int]:
    """Sorted indices of the wanted words, found with list.index (C speed) rather than a Python loop."""
    found = []
    for word in wanted:
        i = words.index(word)
        while True:
            found.append(i)
            try:
                i = words.index(word, i + 1)
            except ValueError:
                break
    return sorted(found)


def _count_phrases(words: list[str], starts: list[int], lex: Lexicon, counts: dict[str, int]) -> None:
    """Add multi-word terms and take their words back out, so 'old man' is age, not also gender."""
    free = 0  # phrases do not overlap: 'old people of color' is one match, not two
    for i in starts:
        if i < free:
            continue
        for size in (4, 3, 2):
            term = lex.phrases.get(tuple(words[i : i + size]))
            if term is None:
                continue
            counts[term] = counts.get(term, 0) + 1
            for token in words[i : i + size]:
                single = lex.alias.get(token)
                if counts.get(single, 0) > 0:
                    counts[single] -= 1
                    if counts[single] == 0:
                        del counts[single]
            free = i + size
            break


def cooccurrences(words: list[str], lex: Lexicon) -> set[tuple[str, str, str]]:
    """(category, identity term, negative term) for every pair that shares a sentence of a token list."""
    found = set()
    start = 0
    for end in [*_positions(words, _STOPS.intersection(words)), len(words)]:
        sentence, start = words[start:end], end + 1
        if len(sentence) < 2 or lex.negative.isdisjoint(sentence):
            continue
        counts = count_terms(sentence, lex)
        identity = [(lex.label[t][1], t) for t in counts if lex.label[t][0] == "identity"]
        negative = [t for t in counts if lex.label[t][0] == "negative"]
        found.update((category, term, neg) for category, term in identity for neg in negative)
    return found


class _Tally:
    """Running counts over rows; `findings()` turns them into the stage's findings."""

    def __init__(self) -> None:
        self.identity = {c: {"prompt": 0, "response": 0, "rows": 0} for c in CATEGORIES}
        self.terms = {c: Counter() for c in CATEGORIES}
        self.ids: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        self.pronouns = {side: dict.fromkeys(PRONOUNS, 0) for side in SIDES}
        self.co_rows = dict.fromkeys(CATEGORIES, 0)
        self.co_ids: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        self.co_pairs = {c: Counter() for c in CATEGORIES}
        self.toxic_rows, self.toxic_ids, self.toxic_terms = 0, [], Counter()

    def add(self, example: Example, lex: Lexicon) -> None:
        categories, pairs, profanity = set(), set(), Counter()
        for message in example.messages:
            side = "response" if message.role == "assistant" else "prompt"
            words = tokens(message.content)
            counts = count_terms(words, lex)
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
            if "identity" in has and "negative" in has:
                pairs |= cooccurrences(words, lex)
        self._add_row(example.id, categories, pairs, profanity)

    def _add_row(self, row_id: str, categories: set, pairs: set, profanity: Counter) -> None:
        for category in categories:
            self.identity[category]["rows"] += 1
            _append(self.ids[category], row_id, 5)
        for category in {p[0] for p in pairs}:
            self.co_rows[category] += 1
            _append(self.co_ids[category], row_id, 5)
        for category, term, neg in pairs:
            self.co_pairs[category][f"{term}+{neg}"] += 1
        if profanity:
            self.toxic_rows += 1
            _append(self.toxic_ids, row_id, 10)
            self.toxic_terms.update(profanity)

    def findings(self, rows: int) -> dict:
        he = self.pronouns["prompt"]["he"] + self.pronouns["response"]["he"]
        she = self.pronouns["prompt"]["she"] + self.pronouns["response"]["she"]
        identity = {
            c: {**self.identity[c], "top_terms": _top(self.terms[c]), "example_ids": self.ids[c]} for c in CATEGORIES
        }
        co = {
            c: {"rows": self.co_rows[c], "example_ids": self.co_ids[c], "pairs": _top(self.co_pairs[c])}
            for c in CATEGORIES
        }
        toxicity = {
            "rows": self.toxic_rows,
            "rate": round(self.toxic_rows / rows, 4) if rows else 0.0,
            "example_ids": self.toxic_ids,
            "top_terms": _top(self.toxic_terms),
        }
        pronouns = {**self.pronouns, "he_she_ratio": round(he / she, 3) if she else None}
        return {"identity_terms": identity, "pronouns": pronouns, "cooccurrence": co, "toxicity": toxicity}


def _append(ids: list[str], row_id: str, limit: int) -> None:
    if len(ids) < limit:
        ids.append(row_id)


def _top(counter: Counter, n: int = 10) -> dict[str, int]:
    return dict(counter.most_common(n))


def warnings_for(findings: dict, ratio: float, min_count: int) -> list[str]:
    """Plain-English warnings: pronoun imbalance per side, identity/negative co-occurrence, profanity."""
    out = []
    for side in SIDES:
        he, she = findings["pronouns"][side]["he"], findings["pronouns"][side]["she"]
        if he + she < min_count:
            continue
        if min(he, she) == 0:
            more, count = ("he", he) if he else ("she", she)
            out.append(f"gender: '{more}' appears {count} times and '{'she' if he else 'he'}' never in {side}s")
        elif he / she > ratio or she / he > ratio:
            (more, a), (less, b) = sorted([("he", he), ("she", she)], key=lambda p: -p[1])
            out.append(f"gender: '{more}' appears {a / b:.1f}x as often as '{less}' in {side}s")
    for category, co in findings["cooccurrence"].items():
        if co["rows"]:
            top = next(iter(co["pairs"]))
            out.append(
                f"{category}: {co['rows']} row(s) put a {category} term and a negative word in one sentence "
                f"(most common: '{top}'); review e.g. {', '.join(co['example_ids'])}"
            )
    if findings["toxicity"]["rows"]:
        tox = findings["toxicity"]
        out.append(f"profanity: {tox['rows']} row(s) ({tox['rate']:.1%}) contain profanity")
    return out


@register_stage
class BiasAudit(Stage):
    """Inspector: keeps every row, records identity, pronoun, co-occurrence, toxicity and language findings."""

    name = "bias_audit"
    version = "1"
    inspector = True

    class Config(StrictModel):
        language_sample: int = Field(
            1000, ge=0, le=10_000_000, description="Rows (seeded sample) whose language is detected (at most 10,000,000)."
        )
        language_chars: int = Field(
            300, ge=20, le=1_000_000, description="Characters of each sampled row given to language ID (at most 1,000,000)."
        )
        imbalance_ratio: float = Field(2.0, gt=1.0, le=1_000_000, description="Warn when he/she (or she/he) exceeds this.")
        min_pronoun_count: int = Field(5, ge=0, le=1_000_000_000, description="Pronoun imbalance is judged only from this many he+she.")

    def process(self, examples: list[Example], ctx: StageContext) -> list[Example]:
        lex = load_lexicon()
        tally = _Tally()
        for example in examples:
            tally.add(example, lex)
        findings = tally.findings(len(examples))
        languages, sample_size = self._languages(examples, ctx)
        findings["languages"] = languages
        findings["language_sample_size"] = sample_size
        findings["warnings"] = warnings_for(findings, self.config.imbalance_ratio, self.config.min_pronoun_count)
        for key, value in findings.items():
            ctx.finding(key, value)
        for warning in findings["warnings"]:
            log.warning("bias_audit: %s", warning)
        return list(examples)

    def _languages(self, examples: list[Example], ctx: StageContext) -> tuple[dict[str, int], int]:
        """Language counts over a seeded sample of rows (py3langid, offline)."""
        size = min(len(examples), self.config.language_sample)
        if size == 0:
            return {}, 0
        import py3langid as langid  # loads its model on first use; kept out of module import

        indices = sorted(ctx.rng.sample(range(len(examples)), size))
        counts: Counter[str] = Counter()
        for i in indices:
            text = examples[i].text()[: self.config.language_chars]
            counts[langid.classify(text)[0] if text.strip() else "und"] += 1
        return dict(counts.most_common()), size
