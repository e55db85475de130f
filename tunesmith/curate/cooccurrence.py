"""Identity term next to a negative word, judged clause by clause for `bias_audit`.

A word list cannot tell "women are weak" from "older people with weak immune systems" or "Iron Man fights
evil", and a sentence-level check flagged all three. Without a parser, a few rules over the clause get most
of the way: the two must share a clause (split at punctuation and subordinating conjunctions), be at most
`window` words apart, and be linked as a predicate ("X are (all) weak", "X in politics are corrupt") or a
modifier ("lazy X"), where the predicate may be a list of adjectives ("too emotional and weak"). A statement
about one person ("my brother is lazy", "an evil man": a singular noun after a determiner or possessive), an
identity word inside a relative clause ("priests who abused children are criminals"), an identity word inside a
name ("Iron Man", "Spider-Man") and a negative word used as an abstract noun ("good over evil") never count.
The word classes live in `assets/lexicons/syntax.json`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

from tunesmith.curate.lexicon import Lexicon

# words (apostrophes kept), sentence ends, and clause punctuation; offsets kept to show the sentence
_TOKEN = re.compile(r"[A-Za-z']+|[.!?;\n]|[,:()\[\]\"\u201c\u201d\u2014\u2013]| - ")
_SENTENCE_END = re.compile(r"[.!?;\n]")
MAX_TEXT = 300  # characters of the sentence kept on a review item
RELATIVES = frozenset({"that", "which", "who", "whom", "whose"})
_LIST_JOINS = frozenset({",", "and", "or"})


@dataclass(frozen=True)
class Syntax:
    breaks: frozenset[str]  # tokens that end a clause
    copulas: frozenset[str]
    light: frozenset[str]  # words that may sit between a linked pair (adverbs, determiners, auxiliaries)
    tight: frozenset[str]  # the few that may sit between "lazy ... X" (modifier before the group)
    noun_markers: frozenset[str]  # a negative word right after one of these is an abstract noun ("over evil")
    negators: frozenset[str]  # "X are not lazy" denies the stereotype; it is not a finding
    determiners: frozenset[str]  # start a new noun phrase
    persons: frozenset[str]  # nouns an identity adjective may describe and still name people ("German driver")
    individual: frozenset[str]  # before a singular noun they point at one person: "my brother", "an evil man"
    group_nouns: frozenset[str]  # name a group without a plural -s: "the Chinese", "the elderly", "community"
    degree: frozenset[str]  # adverbs inside a predicate's chain of adjectives: "too emotional and weak"


@dataclass(frozen=True)
class _Spans:
    known: frozenset[int]  # positions inside any lexicon term
    identity: frozenset[int]  # positions inside an identity term that counts (not a name)


@dataclass(frozen=True)
class Hit:
    """One linked identity/negative pair: the terms, how many words apart, and the sentence that holds them."""

    category: str
    identity: str
    negative: str
    gap: int
    sentence: str


@functools.lru_cache(maxsize=1)
def load_syntax() -> Syntax:
    path = resources.files("tunesmith") / "assets" / "lexicons" / "syntax.json"
    data = {k: frozenset(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k[0] != "_"}
    breaks = data["clause_breaks"] | frozenset(".!?;\n,:()[]\"\u201c\u201d\u2014\u2013") | {" - "}
    tight = data["modifiers"] | data["coordinators"] | {","}  # a comma kept inside a clause joins a list
    light = tight | data["copulas"] | data["function"]
    return Syntax(breaks, data["copulas"], light | data["negators"], tight, data["noun_markers"], data["negators"],
                  data["determiners"], data["person_nouns"], data["individual_determiners"], data["group_nouns"],
                  data["degree"])


def find(text: str, lex: Lexicon, window: int, syntax: Syntax | None = None) -> list[Hit]:
    """Linked (identity, negative) pairs in `text`, at most `window` words apart within one clause."""
    syntax = syntax or load_syntax()
    text = text.replace("\u2019", "'")  # same length: offsets stay valid
    matches = [m for m in _TOKEN.finditer(text) if m.group().strip("'")]
    words = [m.group().lower().strip("'") for m in matches]
    hits, start = [], 0
    ends = [i for i, w in enumerate(words) if w in syntax.breaks and not _listing(words, i, syntax)]
    for end in [*ends, len(words)]:
        if end - start >= 2 and not lex.negative.isdisjoint(words[start:end]):
            hits += _clause_hits(text, matches, words, range(start, end), lex, window, syntax)
        start = end + 1
    return hits


def _listing(words: list[str], i: int, syntax: Syntax) -> bool:
    """A comma inside a list of single words ("emotional, weak and stupid", "driver, so reckless."): the next
    word, after degree adverbs, is followed by a comma, a coordinator or the sentence's end. Such a comma does
    not end the clause, so the list stays one predicate; "left early, violent storms came" still splits."""
    if words[i] != ",":
        return False
    j = i + 1
    while j < len(words) and words[j] in syntax.degree:
        j += 1
    if j >= len(words) or words[j] in syntax.breaks:
        return False
    return j + 1 == len(words) or words[j + 1] in _LIST_JOINS or bool(_SENTENCE_END.fullmatch(words[j + 1]))


def _spans(words: list[str], clause: range, lex: Lexicon) -> list[tuple[int, int, str]]:
    """(start, end, term) of lexicon terms in a clause, longest phrase first, not overlapping."""
    out, i = [], clause.start
    while i < clause.stop:
        for size in (4, 3, 2, 1):
            if i + size > clause.stop:
                continue
            key = words[i] if size == 1 else tuple(words[i : i + size])
            term = (lex.alias if size == 1 else lex.phrases).get(key)
            if term is not None:
                out.append((i, i + size, term))
                i += size
                break
        else:
            i += 1
    return out


def _clause_hits(text, matches, words, clause: range, lex: Lexicon, window: int, syntax: Syntax) -> list[Hit]:
    spans = _spans(words, clause, lex)
    identity = [s for s in spans
                if lex.label[s[2]][0] == "identity" and not _in_name(text, matches, s, clause, syntax)]
    negative = [s for s in spans if lex.label[s[2]][0] == "negative" and not _abstract_noun(words, s, clause, syntax)]
    found = _Spans(frozenset(i for s in spans for i in range(s[0], s[1])),
                   frozenset(i for s in identity for i in range(s[0], s[1])))
    hits = []
    for ident in identity:
        for neg in negative:
            gap = neg[0] - ident[1] if ident[0] < neg[0] else ident[0] - neg[1]
            if gap <= window and _linked(words, ident, neg, clause, found, syntax):
                hits.append(Hit(lex.label[ident[2]][1], ident[2], neg[2], gap, _sentence(text, matches[ident[0]])))
    return hits


def _in_name(text: str, matches, span: tuple[int, int, str], clause: range, syntax: Syntax) -> bool:
    """A one-word identity term that is part of a name: 'Iron Man', 'Wonder Woman' (capitalised next to a
    capitalised word, outside all-caps text) or 'Spider-Man', 'X-Men' (hyphen-joined to another word). A
    sentence's capitalised first word is no name: 'The Chinese are ...', 'The Muslim community ...'."""
    start, end, _ = span
    if end - start > 1:
        return False
    m = matches[start]
    if (m.start() > 0 and text[m.start() - 1] == "-") or (m.end() < len(text) and text[m.end()] == "-"):
        return True
    word = m.group()
    if not word[0].isupper() or word.isupper():
        return False
    neighbours = [matches[i].group() for i in (start - 1, start + 1) if i in clause]
    return any(n[0].isupper() and not n.isupper() and n.lower() not in syntax.light for n in neighbours)


def _abstract_noun(words: list[str], span: tuple[int, int, str], clause: range, syntax: Syntax) -> bool:
    """'good over evil', 'the fight against evil': a negative word after such a marker names a thing, not a group."""
    before = span[0] - 1
    return before in clause and words[before] in syntax.noun_markers


def _linked(words, ident, neg, clause: range, spans: _Spans, syntax: Syntax) -> bool:
    """Whether the negative word describes the group: a modifier right before it, or a predicate after it."""
    if neg[0] < ident[0]:  # "lazy X", "lazy and stupid X": only modifiers may sit between
        if not all(i in spans.known or words[i] in syntax.tight for i in range(neg[1], ident[0])):
            return False
        return not _individual(words, ident, neg[0], clause, spans, syntax, subject=False)  # "an evil man"
    if _individual(words, ident, ident[0], clause, spans, syntax, subject=True):
        return False  # "my brother is so lazy", "the old man was too weak": one person, not a group
    if _in_relative(words, ident, clause, spans, syntax):
        return False  # "priests who abused children are criminals": the predicate is the priests'
    between = range(ident[1], neg[0])
    compound = ident[1]  # "Muslim men are violent": an identity word right after it is the same noun phrase
    while compound in spans.identity and not words[compound - 1].endswith("'s"):
        compound += 1
    if any(words[i] in syntax.negators or (i in spans.identity and i >= compound) for i in between):
        return False  # "X are not lazy" denies it; "X think Y are lazy" is about the nearer Y
    if neg[1] in clause and not _light(words, neg[1], spans, syntax):
        return False  # "people with weak immune systems": the word describes the next noun, not the group
    copulas = [i for i in between if words[i] in syntax.copulas]
    if not copulas:  # no verb, only light words between: "X, all lazy", "woman driver, so reckless"
        return all(_light(words, i, spans, syntax) or (i == ident[1] and words[i] in syntax.persons) for i in between)
    if not _chain(words, range(copulas[-1] + 1, neg[0]), spans, syntax):
        return False  # "the man was hit by a violent driver": the word is not the predicate
    return _subject_is_group(words, ident, range(ident[1], copulas[-1]), clause, spans, syntax)


def _chain(words, predicate: range, spans: _Spans, syntax: Syntax) -> bool:
    """Whether the words between the copula and the negative word are light, or adjectives of a list that
    leads to it: "too emotional and weak", "lazy, dirty and violent" (an unlisted word followed by a join)."""
    return all(_light(words, i, spans, syntax) or words[i] in syntax.degree
               or (i + 1 < len(words) and words[i + 1] in _LIST_JOINS) for i in predicate)


def _individual(words, ident, start: int, clause: range, spans: _Spans, syntax: Syntax, subject: bool) -> bool:
    """Whether the identity term heads a singular noun phrase with a determiner or possessive: "my brother",
    "the old man", "an evil man", "John's wife" name one person, not a group. A subject's "a/an" is left out:
    "a woman can't lead" is a generic statement about women."""
    head = ident[1] if ident[1] in clause and words[ident[1]] in syntax.persons else ident[1] - 1
    word = words[head].removesuffix("'s")
    if word in syntax.group_nouns or (word.endswith("s") and not word.endswith("ss")):
        return False
    i, skipped = start - 1, 0
    while i in clause and skipped < 3:  # back over adjectives: "the tall old man", "a lazy, evil man"
        w = words[i]
        if w in syntax.individual or w.endswith("'s"):
            return not (subject and w in ("a", "an"))
        if w in syntax.determiners or w in syntax.copulas or w in syntax.breaks and w != ",":
            return False  # "every man", "is man": no individual determiner opens this noun phrase
        i, skipped = i - 1, skipped + (i not in spans.known)
    return False


def _in_relative(words, ident, clause: range, spans: _Spans, syntax: Syntax) -> bool:
    """Whether the identity term sits inside a relative clause ("priests who abused children are ..."): a
    relative word after a noun (the clause's head) comes before it. A clause-initial "who" asks a question
    ("who says women are weak?"), and "that" counts only after a known noun, as it also opens reported speech."""
    for r in range(clause.start + 1, ident[0]):
        if words[r] not in RELATIVES or _light(words, r - 1, spans, syntax) and r - 1 not in spans.known:
            continue
        if words[r] != "that" or not _opens_report(words, r, ident, syntax):
            return True
    return False


def _light(words, i: int, spans: _Spans, syntax: Syntax) -> bool:
    return i in spans.known or words[i] in syntax.light


def _subject_is_group(words, ident, subject: range, clause: range, spans: _Spans, syntax: Syntax) -> bool:
    """Whether the identity term heads the copula's subject rather than describing another noun there:
    'the Chinese economy is weak', 'the immune system of older adults is weak', 'my mother said the movie was
    stupid', 'women buy cars that are dangerous' (each predicate is about the economy, system, movie, cars)."""
    after = ident[1]
    if after in subject and not _light(words, after, spans, syntax) and words[after] not in syntax.persons:
        return False  # the identity word is an adjective of a noun that is not a person
    before = ident[0] - 1
    while before in clause and words[before] in syntax.determiners:
        before -= 1
    if before - 1 in clause and words[before] == "of" and not _light(words, before - 1, spans, syntax):
        return False  # "the system of older adults": the subject is the system
    content = [i for i in subject if not _light(words, i, spans, syntax)]
    later = [i for i in subject if content and i > content[0]]
    # a new noun phrase after a verb or another noun: the copula belongs to it
    return not any(words[i] in RELATIVES or words[i] in syntax.determiners for i in later)


def _opens_report(words, r: int, ident, syntax: Syntax) -> bool:
    """'knows that women are weak': the identity term follows "that" (past determiners), so "that" opens what
    is said, not a relative clause like 'the company that hires women'."""
    i = r + 1
    while i < ident[0] and words[i] in syntax.determiners:
        i += 1
    return i == ident[0]


def _sentence(text: str, match: re.Match) -> str:
    """The sentence around a token, trimmed to MAX_TEXT characters centred on it."""
    starts = [m.end() for m in _SENTENCE_END.finditer(text, 0, match.start())]
    begin = starts[-1] if starts else 0
    stop = _SENTENCE_END.search(text, match.end())
    sentence = text[begin : stop.end() if stop else len(text)].strip()
    if len(sentence) <= MAX_TEXT:
        return sentence
    at = match.start() - begin
    lo = max(0, min(at - MAX_TEXT // 2, len(sentence) - MAX_TEXT))
    return sentence[lo : lo + MAX_TEXT]
