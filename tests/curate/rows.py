"""Hand-made rows for stage unit tests."""

from tunesmith.curate.record import Example, Message


def chat_row(i: int, user: str, assistant: str = "Sure.") -> Example:
    """Row i of a pretend `s.jsonl`: one user turn and one assistant turn."""
    return Example(id=f"s:{i}", source="s.jsonl", row=i, line=i + 1,
                   messages=(Message("user", user), Message("assistant", assistant)))
