"""The language sample of `bias_audit`: which rows' language is told, told how, and what the card says about it.

The sample is the `size` rows with the smallest seeded hash of their id (a bottom-k sketch): a uniform sample
that needs no row count up front, and that any batch size, worker count or row order picks alike, because a
merge keeps the k smallest of both sides. Only those rows' first characters are kept, and language ID (about
0.2 ms a row, four times the lexicon counting) runs once, on the final sample, when the stage closes.
"""

from __future__ import annotations

import hashlib
from collections import Counter

LANGUAGES_COVERED = ["en"]  # the bias lexicons are English word lists


def _key(seed: int, row_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{row_id}".encode(), digest_size=8).digest(), "big")


class LanguageSample:
    """(hash, first characters) of the sampled rows, smallest hash first; ties keep the earlier row."""

    def __init__(self, size: int, chars: int, seed: int) -> None:
        self.size, self.chars, self.seed = size, chars, seed
        self.rows: list[tuple[int, str]] = []

    def add(self, examples) -> None:
        if not self.size:
            return
        bar = self.rows[-1][0] if len(self.rows) == self.size else None  # a row at or above it cannot get in
        keyed = ((_key(self.seed, ex.id), ex) for ex in examples)
        new = [(key, ex.text()[: self.chars]) for key, ex in keyed if bar is None or key < bar]
        if new:
            self._keep(new)

    def merge(self, other: LanguageSample) -> LanguageSample:
        self._keep(other.rows)
        return self

    def _keep(self, later: list[tuple[int, str]]) -> None:
        # a stable sort of earlier + later rows: equal hashes (equal ids) keep their order, so any grouping of
        # the merges keeps the same rows
        self.rows = sorted(self.rows + later, key=lambda row: row[0])[: self.size]

    def method(self) -> str:
        if not self.size:
            return "none: language_sample is 0"
        return (f"the {self.size} rows (or all, if fewer) with the smallest blake2b hash of '{self.seed}:<row id>': "
                "a uniform sample, the same for any batch size or number of workers")

    def languages(self, min_letters: int) -> tuple[dict[str, int], int]:
        """Language counts of the sample (py3langid, offline) and the rows too short to tell: language ID guesses
        wildly on a few words, so those rows count as no language. Ties list in code order."""
        counts: Counter[str] = Counter()
        short = 0
        for _, text in self.rows:
            if not text.strip():
                counts["und"] += 1
            elif sum(ch.isalpha() for ch in text) < min_letters:
                short += 1
            else:
                import py3langid as langid  # loads its model on first use; kept out of module import

                counts[langid.classify(text)[0]] += 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))), short


def judged(languages: dict[str, int]) -> int:
    """Sampled rows whose language was told (too-short rows are not in `languages`; no-text rows are 'und')."""
    return sum(languages.values()) - languages.get("und", 0)


def not_covered(languages: dict[str, int]) -> float:
    """Share of the judged sampled rows in a language the lexicons do not cover."""
    told = judged(languages)
    covered = sum(languages.get(code, 0) for code in LANGUAGES_COVERED)
    return 1 - covered / told if told > 0 else 0.0


def short_note(short: int) -> str:
    return f"; {short} more sampled row(s) were too short to tell" if short else ""


def coverage_sentence(languages: dict[str, int], short: int = 0) -> str:
    other = not_covered(languages)
    sentence = "The bias lexicons are English-only: identity terms, pronouns, co-occurrence and profanity are found in English text only."
    if other > 0:
        sentence += (f" {other:.0%} of the sampled rows are in other languages (counting the rows long enough to "
                     "tell), which these findings do not cover.")
    if short:
        sentence += f" {short} sampled row(s) were too short to tell their language."
    return sentence
