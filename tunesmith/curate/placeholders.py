"""Find unfilled template placeholders (`{{name}}`, `{name}`, `<PLACEHOLDER>`, `[Insert name]`) in answer text.

Technical answers are full of look-alikes, so each kind is narrow: braces only count in prose (not in fenced or
inline code, interpolated strings such as `$"Hi {name}"`, URL paths such as `/users/{id}`, an answer that reads as
code, or a row that explains a template language such as Jinja or Vue); `{x}` with one letter is set or math
notation; `<ESC>`, `<EOS>` and `<BR>` are keys, special tokens and tags (assets/angle_bracket_names.txt).
`find_placeholders(text, context)` returns (kind, span) pairs in text order; `context` is the row's prompt.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

# fenced blocks (``` or ~~~, closed or running to the end) and inline `code` spans are not prose
_CODE = re.compile(r"(```|~~~)[\s\S]*?(?:\1|\Z)|`[^`\n]+`")
# C# $"..{x}.." / $@"..", Python f"..{x}..": the braces are the language's own interpolation, filled at run time
_INTERPOLATED = re.compile(r"(?:\$@?|@\$|\b[fF])(\"|')(?:[^\\\n]|\\.)*?\1")
# lines that only code has: an answer with one of these is code, whose braces are format strings, not templates
_CODE_HINT = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |return\b|function\b|const |let |var |#include|public |"
    r"print\(|console\.|for \(|if \(|\}\s*$)|[;{]\s*$|=>|\.format\(|f\"|f'",
    re.MULTILINE,
)
# a row about one of these is explaining brace syntax, so its braces are the lesson, not a leftover
_TEMPLATE_LANGUAGE = re.compile(
    r"\b(?:jinja2?|ansible|playbooks?|vue(?:\.?js)?|angular(?:js)?|handlebars|mustache|liquid|django|helm|twig|"
    r"nunjucks|jekyll|hugo|svelte|blade|razor|go templates?|interpolation)\b",
    re.IGNORECASE,
)
_TEMPLATE_WORD = re.compile(r"\btemplat(?:e|es|ed|ing)\b", re.IGNORECASE)
NEARBY = 120  # characters either side of a brace span in which "template" means the braces are being explained
_HTML_TAG = re.compile(r"</?[a-z][a-z0-9-]*(?:\s[^<>\n]*)?/?>")  # <span>, </div>, <input type="x"/>
_KINDS = (
    ("double_brace", re.compile(r"\{\{\s*[^\W\d][\w.]*\s*\}\}")),  # any script: {{name}}, {{姓名}}
    # an identifier of 2+ characters in single braces: not part of {{ }}, a ${x}, \cmd{x}, ^{x}, }{x}, f'{x}' or a
    # URL path (/users/{id}/items); {x} and {x1} are set or math notation
    ("single_brace", re.compile(r"(?<![{\w$\\^_}%#'\"`/])\{(?![A-Za-z]\d*\})[A-Za-z_]\w*\}(?![}\w(/])")),
    # <NAME>, <YOUR_NAME>: ALL-CAPS tags of 3+ characters (HTML tags are lower case); known names dropped later
    ("caps_tag", re.compile(r"<([A-Z][A-Z0-9_]{2,})>")),
    # [Insert name], [Your Name], [Company Name], [Landlord's Name]: but not a Markdown link [your profile](url)
    (
        "bracket_prompt",
        re.compile(
            r"\[(?:(?i:insert|your|enter|add|placeholder|name of)\b[^\]\n]{0,60}"
            r"|(?:[A-Z][a-z]+(?:['’]s)?\s+){1,3}(?:Name|Address|Date|Email|Phone(?: Number)?|Number|Company|"
            r"Title|Position|City|Signature|Amount|Website))\](?![(\[])"
        ),
    ),
)
BRACE_KINDS = ("double_brace", "single_brace")


@functools.lru_cache(maxsize=1)
def known_angle_names() -> frozenset[str]:
    """Names that are real in angle brackets: keys, special tokens, HTML tags (assets/angle_bracket_names.txt)."""
    text = (resources.files("tunesmith") / "assets" / "angle_bracket_names.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def _prose(text: str) -> str:
    """The text with code spans and interpolated strings blanked out (same length, so spans stay readable)."""
    blank = lambda m: " " * len(m.group(0))  # noqa: E731 - one-line substitution callback
    return _INTERPOLATED.sub(blank, _CODE.sub(blank, text))


def _explained_brace(prose: str, start: int, end: int, about_templates: bool) -> bool:
    """True when a brace span is syntax being taught: the row names a template language, "template" is nearby,
    or the span sits on a line with HTML tags (a Vue or Angular view)."""
    if about_templates or _TEMPLATE_WORD.search(prose, max(0, start - NEARBY), end + NEARBY):
        return True
    line_start = prose.rfind("\n", 0, start) + 1
    line_end = prose.find("\n", end)
    return _HTML_TAG.search(prose[line_start:line_end if line_end >= 0 else len(prose)]) is not None


def find_placeholders(text: str, context: str = "") -> list[tuple[str, str]]:
    """Every unfilled placeholder in `text` as (kind, matched span), outside code. `context` (the row's prompt)
    only serves to tell whether the row is about a template language."""
    if "{" not in text and "<" not in text and "[" not in text:
        return []  # the common case, checked without any regex
    prose = _prose(text)
    looks_like_code = _CODE_HINT.search(prose) is not None
    about_templates = "{" in prose and (_TEMPLATE_LANGUAGE.search(prose) or _TEMPLATE_LANGUAGE.search(context))
    known = known_angle_names()
    found: list[tuple[int, str, str]] = []
    for kind, pattern in _KINDS:
        if looks_like_code and kind in BRACE_KINDS:
            continue
        for m in pattern.finditer(prose):
            if kind in BRACE_KINDS and _explained_brace(prose, m.start(), m.end(), bool(about_templates)):
                continue
            if kind == "caps_tag" and m.group(1) in known:
                continue
            found.append((m.start(), kind, m.group(0)))
    return [(kind, span) for _, kind, span in sorted(found)]
