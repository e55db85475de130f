"""The one record type of curation: a chat example that remembers where it came from.

Plain slotted classes rather than pydantic: rows are validated once, by the `validate` stage with
file/line/field messages, and after that a record is touched in hot loops where pydantic costs too much.
`Example` is not frozen only because frozen dataclasses construct 6x slower (measured: 2.2 vs 0.34 us);
treat it as immutable: stages return `example.replace(...)`, only the reader fills fields in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

ROLES = ("system", "user", "assistant", "tool")


class Message(NamedTuple):
    """One turn. Tool use: an assistant turn may carry `tool_calls` (OpenAI's JSON list, its content may then be
    ""), a `tool` turn answers one call (`tool_call_id`, `name`). Rebuild with `m._replace(content=...)`, which
    keeps these fields; `Message(role, content)` stays the plain turn."""

    role: str
    content: str
    tool_calls: Any = None
    tool_call_id: str | None = None
    name: str | None = None

    def __reduce__(self):  # pickled (spills, workers) as a plain call: 2x faster than NamedTuple's default
        return (Message, tuple(self))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls is not None:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(slots=True)
class Example:
    """One row. `problem` holds a load-time failure (malformed line, unusable fields) for `validate`."""

    id: str
    source: str
    row: int  # 0-based row index within the source
    line: int | None  # 1-based line number for JSONL/CSV, None otherwise
    format: str = "messages"  # input format of the source (alpaca, prompt_completion, messages, sharegpt)
    fields: dict[str, Any] | None = None  # the parsed input row, until `validate` turns it into messages
    messages: tuple[Message, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)  # extra columns kept for stratify/grouping
    problem: str | None = None  # load-time failure: malformed_json, invalid_utf8, not_an_object
    detail: str | None = None
    raw: str | None = None  # the raw text of a row that could not be parsed
    split: str | None = None
    group: str | None = None  # rows sharing a group never straddle splits (near-dup clusters)
    # preference rows: `messages` is the prompt plus the chosen answer, `rejected` the rejected answer's turns
    rejected: tuple[Message, ...] = ()
    label: bool | None = None  # KTO rows: whether the answer in `messages` is desirable
    tools: Any = None  # the row's tool definitions (a JSON list), kept with it for chat templates that render tools
    trainable_tokens: int | None = None  # set by token_stats for split to sum per split; not written to split files

    def __reduce__(self):  # pickled as one constructor call; the slots default sets each field by name (2x slower)
        return (Example, tuple(getattr(self, name) for name in _FIELD_NAMES))

    def replace(self, **changes: Any) -> Example:
        """A copy with some fields changed (the record's own, faster dataclasses.replace)."""
        values = {name: getattr(self, name) for name in _FIELD_NAMES}
        values.update(changes)
        return Example(**values)

    @property
    def where(self) -> str:
        """`file:line` (or `file row N`) for messages a person can act on."""
        return f"{self.source}:{self.line}" if self.line is not None else f"{self.source} row {self.row}"

    def prompt_text(self) -> str:
        return "\n".join(m.content for m in self.messages if m.role != "assistant")

    def response_text(self) -> str:
        return "\n".join(m.content for m in self.messages if m.role == "assistant")

    def text(self) -> str:
        return "\n".join(m.content for m in self.messages)

    def to_json(self) -> dict[str, Any]:
        """The row as written to split files: chat messages plus provenance."""
        out: dict[str, Any] = {
            "id": self.id,
            "messages": [m.to_json() for m in self.messages],
            "source": self.source,
            "row": self.row,
        }
        if self.line is not None:
            out["line"] = self.line
        if self.meta:
            out["meta"] = self.meta
        if self.group is not None:
            out["group"] = self.group
        if self.rejected:
            out["rejected"] = [m.to_json() for m in self.rejected]
        if self.label is not None:
            out["label"] = self.label
        if self.tools is not None:
            out["tools"] = self.tools
        return out

    def to_rejected_json(self) -> dict[str, Any]:
        out = self.to_json()
        if self.fields is not None:
            out["fields"] = self.fields
        if self.raw is not None:
            out["raw"] = self.raw
        return out


_FIELD_NAMES = tuple(f.name for f in fields(Example))
