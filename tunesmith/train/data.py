"""A dataset card's splits as token ids and loss labels: prompts masked, assistant turns (and their end) trained.

The masks come from the chat template's own rendering (`tunesmith.chat`), so multi-turn chats work with
templates that have no `{% generation %}` markers, such as SmolLM2's; curation's `token_stats` counts the
same tokens. Training reads a card only if its split files still match their hashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunesmith.artifacts import DatasetCard, read_card, split_problems
from tunesmith.chat import end_of_turn, render_with_spans

IGNORE_INDEX = -100  # the label value the loss skips (transformers' convention)


class TrainDataError(ValueError):
    """The card or its rows cannot be trained on; the message names the file or the rows."""


@dataclass
class CardSplits:
    card: DatasetCard
    directory: Path
    rows: dict[str, list[dict]]  # split name -> rows as curation wrote them (id, messages, source, ...)


def open_card(path: Path) -> CardSplits:
    """Read a card and its split files, refusing a card whose files changed or whose gates failed."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    card = read_card(path)
    problems = split_problems(card, directory)
    if problems:
        raise TrainDataError("refusing to train on a changed dataset version:\n  " + "\n  ".join(problems))
    failed = [g.name for g in card.gates if not g.passed]
    if failed:
        raise TrainDataError(f"{path}: quality gates failed ({', '.join(failed)}); fix the data or the gates first")
    rows = {}
    for name, split in card.splits.items():
        with open(directory / split.file, encoding="utf-8") as handle:
            rows[name] = [json.loads(line) for line in handle]
    return CardSplits(card, directory, rows)


def encode_rows(tokenizer, rows: list[dict], max_seq_len: int) -> list[dict]:
    """input_ids and labels per row, truncated at max_seq_len; labels are IGNORE_INDEX outside assistant turns."""
    conversations = [[(m["role"], m["content"]) for m in row["messages"]] for row in rows]
    texts, spans = render_with_spans(tokenizer, conversations)
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    encoded = []
    for row, encoding, row_spans in zip(rows, encodings, spans):
        ids = np.asarray(encoding.ids[:max_seq_len], dtype=np.int64)
        starts = np.asarray([start for start, _ in encoding.offsets[:max_seq_len]], dtype=np.int64)
        trained = np.zeros(len(ids), dtype=bool)
        for lo, hi in row_spans:
            trained |= (starts >= lo) & (starts < hi)
        labels = np.where(trained, ids, IGNORE_INDEX)
        encoded.append({"id": row["id"], "input_ids": ids.tolist(), "labels": labels.tolist()})
    return encoded


def preflight(tokenizer, encoded: list[dict]) -> None:
    """Stop before the first step when a row has nothing to learn or never learns to end its turn."""
    eot = tokenizer.convert_tokens_to_ids(end_of_turn(tokenizer)) if end_of_turn(tokenizer) else None
    empty = [row["id"] for row in encoded if all(label == IGNORE_INDEX for label in row["labels"])]
    no_end = [row["id"] for row in encoded if eot is not None and row["id"] not in empty and eot not in row["labels"]]
    problems = []
    if empty:
        problems.append(f"{len(empty)} row(s) have no trainable tokens after masking: {', '.join(empty[:10])}")
    if no_end:
        problems.append(f"{len(no_end)} row(s) never train the end-of-turn token (answer cut by max_seq_len?): "
                        f"{', '.join(no_end[:10])}")
    if problems:
        raise TrainDataError("pre-flight check failed:\n  " + "\n  ".join(problems))
