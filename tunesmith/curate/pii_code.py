"""Where a message holds code, Markdown style: fenced blocks, indented blocks that look like code, inline spans.

`pii` does not detect (or mask) inside these regions by default: code is where regex examples, loopback
addresses, test fixtures and number tables live, and masking them corrupts the code a model learns from.
Indentation alone is not code: chat answers indent contact cards and list continuations too, so an indented
block counts only when one of its lines looks like code (`looks_like_code`). An inline span that holds nothing
but one detected value (`my email is `a@b.com``) is prose that uses backticks for emphasis (`in_code`).
"""

from __future__ import annotations

import re

Region = tuple[int, int]

_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_INDENTED = re.compile(r"(?: {4}|\t)")
# an inline span never crosses a blank line (CommonMark); runs of one or two backticks cover real text
_INLINE = re.compile(r"(?<!`)(`{1,2})(?!`)((?:(?!\n[ \t]*\n)[^`])+?)\1(?!`)")
# a line is code when it holds code punctuation (= { } a call `name(`, -> => :: && ||, a closing tag, a ; ending
# the line; a ; inside a line is prose as often as code: "Tel: 415-253-2671; mobile ..."), starts
# with a shell or REPL prompt or a comment marker, or starts with a keyword of a common language or SQL;
# "Name: Ann" or "Phone: (415) 253-2671" hold none of them
_CODE_LINE = re.compile(
    r"[={}]|;[ \t]*$|\w\(|->|=>|::|&&|\|\||</\w+>"
    r"|^[ \t]*(?:\$ |>>>|\.\.\. |#!|//|/\*|# |-- )"
    r"|^[ \t]*(?:def|class|return|import|from \S+ import|function|const|let|var|fn|func|package|public|private|"
    r"static|void|struct|enum|async|await|yield|raise|throw|#include|#define|SELECT|INSERT|UPDATE|DELETE|CREATE|"
    r"ALTER|DROP|WITH|echo|sudo|pip|npm|git|curl|wget|ssh|scp|ping|docker|kubectl|cd|ls|export)\b"
)


def _lines(text: str) -> list[tuple[int, str]]:
    """Each line with its start offset (line endings kept, so offsets add up)."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append((pos, line))
        pos += len(line)
    return out


def _closes(line: str, fence: str) -> bool:
    stripped, indent = line.strip(), len(line) - len(line.lstrip(" "))
    return indent <= 3 and len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def looks_like_code(block: str) -> bool:
    """True if any line of an indented block looks like code (see `_CODE_LINE`)."""
    return any(_CODE_LINE.search(line) for line in block.splitlines())


def _blocks(text: str) -> list[Region]:
    """Fenced blocks (an unclosed fence runs to the end, as in CommonMark) and indented blocks after a blank line.

    Indented blocks are returned whether or not they look like code; `code_regions` keeps those that do.
    """
    regions: list[Region] = []
    lines = _lines(text)
    fence, fence_start, previous_blank, indented_start, indented_end = None, 0, True, None, 0
    for pos, line in lines:
        end = pos + len(line)
        blank = not line.strip()
        if fence is not None:
            if _closes(line, fence):
                regions.append((fence_start, end))
                fence = None
            previous_blank = False
            continue
        if indented_start is not None and not blank and not _INDENTED.match(line):
            regions.append((indented_start, indented_end))
            indented_start = None
        opening = _FENCE_OPEN.match(line)
        if opening and not (opening.group(1)[0] == "`" and "`" in line[opening.end() :]):
            fence, fence_start = opening.group(1), pos
        elif indented_start is None and not blank and previous_blank and _INDENTED.match(line):
            indented_start, indented_end = pos, end
        elif indented_start is not None and not blank:
            indented_end = end
        previous_blank = blank
    if fence is not None:
        regions.append((fence_start, len(text)))
    if indented_start is not None:
        regions.append((indented_start, indented_end))
    return regions


def code_regions(text: str) -> list[Region]:
    """Sorted, non-overlapping (start, end) offsets of every code region in `text`."""
    if "`" not in text and "~~~" not in text and "    " not in text and "\t" not in text:
        return []
    blocks = [(a, b) for a, b in _blocks(text) if not _is_indented(text, a) or looks_like_code(text[a:b])]
    inline = [m.span() for m in _INLINE.finditer(text) if not any(a < m.end() and m.start() < b for a, b in blocks)]
    return sorted(blocks + inline)


def _is_indented(text: str, start: int) -> bool:
    """A block region that is neither fenced (``` or ~~~ after up to 3 spaces) is an indented block."""
    return _FENCE_OPEN.match(text, start) is None


def _only_value(text: str, region: Region, start: int, end: int) -> bool:
    """True if `region` is an inline span (one or two backticks) whose content is exactly text[start:end]."""
    a, b = region
    ticks = len(text[a:b]) - len(text[a:b].lstrip("`"))
    return ticks in (1, 2) and text[a + ticks : b - ticks].strip() == text[start:end]


def inside(regions: list[Region], start: int, end: int) -> bool:
    """True if the span [start, end) overlaps any region."""
    return any(a < end and start < b for a, b in regions)


def in_code(text: str, regions: list[Region], start: int, end: int) -> bool:
    """True if the value at [start, end) is in code; a backtick span holding only that value is not code."""
    return any(a < end and start < b and not _only_value(text, (a, b), start, end) for a, b in regions)
