"""The English word lists of `bias_audit` and the counting of their terms in a text.

The lists are data files in `tunesmith/assets/lexicons/`; each text is tokenized once and looked up in dicts,
with no per-term regex. Phrases ("old man") are counted instead of their words.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

CATEGORIES = ("gender", "race_ethnicity", "nationality", "religion", "age", "disability", "sexual_orientation")
PRONOUNS = ("he", "she", "they")

_TOKEN = re.compile(r"[a-z']+|[.!?;\n]")  # words, plus sentence ends (a phrase never spans one)
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
