"""Which strings in a row's text would become control tokens: the tokenizer's specials, or a built-in list.

Used by `validate` to flag `special_token_in_text`. Encoding never turns data text into special tokens
(see `tunesmith.chat`), but a row that holds them was usually scraped from a rendered chat log, and training
on the literal markers teaches the model to write them.
"""

from __future__ import annotations

import functools
import re
from importlib import resources


@functools.lru_cache(maxsize=1)
def builtin_control_tokens() -> tuple[str, ...]:
    """The packaged list of common chat-template control strings (assets/control_tokens.txt)."""
    text = (resources.files("tunesmith") / "assets" / "control_tokens.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def control_strings(tokenizer) -> set[str]:
    """The tokenizer's special tokens (and added tokens marked special), plus the built-in control strings it
    defines (in its vocabulary or its chat template); the built-in list alone when there is no tokenizer."""
    if tokenizer is None:
        return set(builtin_control_tokens())
    strings = {t for t in getattr(tokenizer, "all_special_tokens", []) if t}
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    strings.update(t.content for t in added if getattr(t, "special", False) and t.content)
    vocab, template = tokenizer.get_vocab(), str(getattr(tokenizer, "chat_template", "") or "")
    strings.update(t for t in builtin_control_tokens() if t in vocab or t in template)
    return strings


def control_pattern(tokenizer) -> re.Pattern | None:
    """One regex matching any control string, longest first (so `<|im_end|>` wins over a shorter prefix)."""
    strings = sorted(control_strings(tokenizer), key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in strings)) if strings else None
