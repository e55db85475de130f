"""Word-level diff of a model output against its reference, as escaped HTML markup for the report.

Every piece of text goes through `markupsafe.escape` (via `Markup.format`/`Markup.join`), so the result
can be printed by the template as is: the only tags in it are the fixed `<span>`/`<del>` wrappers here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from markupsafe import Markup, escape

MAX_WORDS = 3000  # beyond this the output is shown plain: quadratic diffing of huge texts is not worth it
_WORD = re.compile(r"\S+\s*")
_EXTRA = Markup('<span class="extra">{}</span>')
_MISSING = Markup('<del class="missing">{}</del>')


def _words(text: str) -> tuple[str, list[str]]:
    """Leading whitespace and the words, each with the whitespace after it (so joining restores the text)."""
    stripped = text.lstrip()
    return text[: len(text) - len(stripped)], _WORD.findall(stripped)


def closest_reference(output: str, references: Sequence[str]) -> str:
    """The reference the output is most similar to, word by word (the one the diff is drawn against)."""
    if len(references) <= 1:
        return references[0] if references else ""
    words = output.split()
    return max(references, key=lambda ref: difflib.SequenceMatcher(None, words, ref.split(), autojunk=False).ratio())


def word_diff(output: str, references: Sequence[str]) -> Markup:
    """`output` with words absent from the closest reference wrapped in `span.extra`, and the reference words
    it lacks inserted as `del.missing` (the page hides those unless asked)."""
    output = "" if output is None else str(output)
    lead, out_words = _words(output)
    _, ref_words = _words(closest_reference(output, [str(r) for r in references]))
    if not out_words or len(out_words) > MAX_WORDS or len(ref_words) > MAX_WORDS:
        return escape(output)
    matcher = difflib.SequenceMatcher(
        None, [w.strip() for w in out_words], [w.strip() for w in ref_words], autojunk=False
    )
    parts: list[Markup | str] = [lead]
    for op, o1, o2, r1, r2 in matcher.get_opcodes():
        if r2 > r1 and op != "equal":
            parts.append(_MISSING.format("".join(ref_words[r1:r2]).rstrip() + " "))
        if op == "equal":
            parts.append("".join(out_words[o1:o2]))
        elif o2 > o1:
            text = "".join(out_words[o1:o2])
            trailing = text[len(text.rstrip()) :]
            parts.append(_EXTRA.format(text.rstrip()) + trailing)
    return Markup("").join(parts)
