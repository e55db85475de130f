"""Pre-flight checks on a card's encoded rows: prompts masked, assistant turns (and their end) trained.

The masks come from the chat template's own rendering (`tunesmith.chat`), so multi-turn chats work with
templates that have no `{% generation %}` markers, such as SmolLM2's; curation's `token_stats` counts the
same tokens. Reading the card (`artifacts.open_card`) refuses one whose split files changed.
"""

from __future__ import annotations

from tunesmith.chat import IGNORE_INDEX, end_of_turn
from tunesmith.errors import TunesmithError, UsageError


class TrainDataError(UsageError):
    """The card's rows cannot be trained on; the message names the rows."""


class NonFiniteLoss(TunesmithError, RuntimeError):
    """The training loss became NaN or infinite; the message names the step."""


def preflight(tokenizer, encoded: list[dict], max_seq_len: int | None = None) -> None:
    """Stop before the first step when a row has nothing to learn or never learns to end its turn; the one-line
    message names the rows and what to do (the `max_seq_len` setting, or the rows in the data)."""
    eot = tokenizer.convert_tokens_to_ids(end_of_turn(tokenizer)) if end_of_turn(tokenizer) else None
    empty = [row["id"] for row in encoded if all(label == IGNORE_INDEX for label in row["labels"])]
    no_end = [row["id"] for row in encoded if eot is not None and row["id"] not in empty and eot not in row["labels"]]
    limit = f"max_seq_len={max_seq_len}" if max_seq_len else "max_seq_len"
    problems = []
    if empty:
        problems.append(f"{len(empty)} row(s) have no trainable tokens after masking: {_ids(empty)} (the prompt "
                        f"fills {limit}); raise max_seq_len in the train config, or shorten or drop these rows in "
                        f"the data ({_recurate(max_seq_len, 'reject_zero_trainable')})")
    if no_end:
        problems.append(f"{len(no_end)} row(s) never train the end-of-turn token (the answer is cut by {limit}): "
                        f"{_ids(no_end)}; raise max_seq_len in the train config, or shorten or drop these rows in "
                        f"the data ({_recurate(max_seq_len, 'reject_cut_answers')})")
    if problems:
        raise TrainDataError("pre-flight check failed: " + "; ".join(problems))


def _recurate(max_seq_len: int | None, option: str) -> str:
    """How curation drops such rows: its token_stats stage at the train max_seq_len."""
    at = f"max_seq_len: {max_seq_len}" if max_seq_len else "the train max_seq_len"
    return f"re-curate with the token_stats stage at {at}, whose {option} option (on by default) rejects them"


def _ids(ids: list[str]) -> str:
    return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
