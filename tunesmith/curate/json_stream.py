"""Stream the rows of a JSON array, or of the one array inside a JSON object, without holding the file.

The text is decoded chunk by chunk and each value is parsed by the json module's own decoder
(`JSONDecoder.raw_decode`), so rows are exactly what json.loads gives (NaN, lone surrogates, 1e400, the
4300-digit limit) and errors carry json's messages with the file's line and column. ijson was tried first: its C
backend turns a lone surrogate into "?" and refuses NaN, Infinity and 1e400, all of which json.loads accepts.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
import sys
from collections.abc import Callable, Generator, Iterator
from typing import Any, BinaryIO

CHUNK = 1 << 20
_DECODER = json.JSONDecoder()
_NOT_WS = re.compile(r"[^ \t\n\r]")  # json's whitespace, as in its C scanner
_NEAR_END = 16  # an error this close to the end of the window may be a value cut in two ("nul", "\u12")
_TRAILING_COMMA = sys.version_info >= (3, 13)  # json names a trailing comma since 3.13


class JsonSyntax(Exception):
    """A JSON syntax error with json's message and the file's (not the window's) line and column."""

    def __init__(self, msg: str, line: int, col: int):
        super().__init__(f"{msg}: line {line} column {col}")
        self.msg, self.line, self.col = msg, line, col


class TextWindow:
    """A file's UTF-8 text from the current position on; text before it is dropped, remembered only as lines."""

    def __init__(self, handle: BinaryIO, bad_utf8: Callable[[], Exception]):
        self.handle, self.bad_utf8 = handle, bad_utf8
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.eof, self.started = "", 0, False, False
        self.lines, self.col0 = 0, 0  # newlines in the dropped text; characters after its last newline

    def more(self, at_least: int = CHUNK) -> bool:
        """Read on; False at the end of the file."""
        if self.eof:
            return False
        data = self.handle.read(max(CHUNK, at_least))
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError:
            raise self.bad_utf8() from None
        if text and not self.started:  # one byte order mark, as decode("utf-8-sig") removes
            text, self.started = text.removeprefix("\ufeff"), True
        self.eof = not data
        self._compact()
        self.buf += text
        return True

    def _compact(self) -> None:
        if self.pos < CHUNK or self.pos * 2 < len(self.buf):  # amortised: drop only when most of it is done
            return
        dropped, self.buf, self.pos = self.buf[: self.pos], self.buf[self.pos :], 0
        newlines = dropped.count("\n")
        self.lines += newlines
        self.col0 = len(dropped) - dropped.rfind("\n") - 1 if newlines else self.col0 + len(dropped)

    def where(self, pos: int) -> tuple[int, int]:
        """Line and column (1-based, in characters as json counts them) of window position `pos`."""
        newline = self.buf.rfind("\n", 0, pos)
        line = self.lines + self.buf.count("\n", 0, pos) + 1
        return line, (pos - newline if newline >= 0 else self.col0 + pos + 1)

    def syntax(self, msg: str, pos: int) -> JsonSyntax:
        return JsonSyntax(msg, *self.where(pos))

    def at_file_start(self) -> bool:
        return self.pos == 0 and self.lines == 0 and self.col0 == 0

    def skip_ws(self) -> str:
        """Move to the next non-whitespace character and return it ("" at the end of the file)."""
        while True:
            found = _NOT_WS.search(self.buf, self.pos)
            if found:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self.more():
                return ""

    def rest_is_space(self) -> bool:
        """Only (Unicode) whitespace from here to the end: what `str.strip()` calls an empty file."""
        while self.buf[self.pos :].isspace() or self.pos == len(self.buf):
            self.pos = len(self.buf)
            if not self.more():
                return True
        return False

    def value(self) -> Any:
        """Parse the value starting here; read on while the window may hold only part of it."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                cut = err.msg.startswith("Unterminated string") or err.pos >= len(self.buf) - _NEAR_END
                if cut and self.more(len(self.buf)):  # at least double the window: linear, not quadratic
                    continue
                raise self.syntax(err.msg, err.pos) from None
            if end == len(self.buf) and self.more(len(self.buf)):  # a number may go on in the next chunk
                continue
            self.pos = end
            return value


def array_items(win: TextWindow) -> Iterator[Any]:
    """The items of the array whose `[` is at the window's position, as json's scanner reads them."""
    win.pos += 1
    if win.skip_ws() == "]":
        win.pos += 1
        return
    while True:
        yield win.value()
        char = win.skip_ws()
        if char == "]":
            win.pos += 1
            return
        if char != ",":
            raise win.syntax("Expecting ',' delimiter", win.pos)
        win.pos += 1
        if win.skip_ws() == "]" and _TRAILING_COMMA:
            raise win.syntax("Illegal trailing comma before end of array", win.pos)


def object_members(win: TextWindow, take: int | None = None) -> Generator[Any, None, dict[str, tuple[bool, int]]]:
    """Walk the object whose `{` is at the window's position, yielding the array items of member number `take`.

    Returns each key's (value is an array, member number) for the key's last occurrence, in first-seen order:
    what json.loads keeps of duplicate keys.
    """
    members: dict[str, tuple[bool, int]] = {}
    win.pos += 1
    char = win.skip_ws()
    if char == "}":
        win.pos += 1
        return members
    for number in itertools.count():  # noqa: RET503 (the loop returns at the closing brace)
        if char != '"':
            raise win.syntax("Expecting property name enclosed in double quotes", win.pos)
        key = win.value()
        if win.skip_ws() != ":":
            raise win.syntax("Expecting ':' delimiter", win.pos)
        win.pos += 1
        is_array = win.skip_ws() == "["
        if is_array:
            for item in array_items(win):
                if number == take:
                    yield item
        else:
            win.value()
        members[key] = (is_array, number)
        char = win.skip_ws()
        if char == "}":
            win.pos += 1
            return members
        if char != ",":
            raise win.syntax("Expecting ',' delimiter", win.pos)
        win.pos += 1
        char = win.skip_ws()
        if char == "}" and _TRAILING_COMMA:
            raise win.syntax("Illegal trailing comma before end of object", win.pos)


def utf8_error_at(handle: BinaryIO) -> tuple[int, int, int] | None:
    """(byte offset, byte value, line) of the first byte that is not UTF-8, read in chunks; None if all are."""
    decoder, fed, lines = codecs.getincrementaldecoder("utf-8")(), 0, 0
    handle.seek(0)
    while True:
        block = handle.read(CHUNK)
        pending = decoder.getstate()[0]
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as err:  # err.object is the held-back bytes + this block
            return fed - len(pending) + err.start, err.object[err.start], lines + err.object.count(b"\n", 0, err.start) + 1
        if not block:
            return None
        fed, lines = fed + len(block), lines + block.count(b"\n")
