"""Generate the demo SFT dataset: customer messages -> one line of compact order JSON, with planted problems.

`python -m tunesmith.demo OUT_DIR [--seed N] [--rows N]` rewrites the files shipped in tunesmith/assets/demo/
(byte-identical for the same seed). SmolLM2-135M-Instruct does not produce this exact JSON by default, so a
LoRA run on it shows a measurable gain. PLANTED says how many rows of each problem the files hold.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VOCAB_PATH = Path(__file__).parent / "assets" / "demo" / "vocab.json"
CHAT_FILE, ALPACA_FILE, EVAL_FILE = "orders_chat.jsonl", "orders_alpaca.csv", "orders_eval.jsonl"
KEYS = ("customer", "item", "quantity", "city", "deliver_by")
CHAT_SHARE = 0.85  # the rest of `rows` goes to the alpaca CSV
EVAL_ROWS = 40
EVAL_SEED_OFFSET = 1_000_003  # the eval file comes from a different seed than the training files
OVER_LONG_CHARS = 12_000
HE_PER_SHE = 4  # identity-term imbalance: every 5th pronoun row says "she", the others "he"

# Planted problems, all in orders_chat.jsonl unless the key starts with alpaca_/eval_. Each planted row is its
# own line and carries exactly one problem; "rows" counts lines (or CSV data rows).
PLANTED: dict[str, int] = {
    "exact_duplicates": 40,  # extra verbatim copies of 32 clean lines (8 of them copied twice)
    "near_duplicates": 30,  # one note word swapped (+ sometimes extra spaces) in a long row; same answer
    "malformed_lines": 5,  # fail json.loads: 2 truncated, 2 trailing commas, 1 bare text line
    "non_object_lines": 1,  # valid JSON, but a string instead of an object
    "pii_rows": 25,  # 12 emails, 11 phone numbers, 1 test card number, 1 IPv4 address
    "pii_email": 12,
    "pii_phone": 11,
    "pii_card": 1,
    "pii_ipv4": 1,
    "empty_answers": 8,  # assistant content empty or whitespace only
    "missing_assistant": 4,  # no assistant turn
    "roles_out_of_order": 1,  # assistant before user
    "over_long_rows": 4,  # user message longer than OVER_LONG_CHARS characters
    "control_char_rows": 1,  # a BEL (\x07) inside the user message
    "identity_negative_rows": 6,  # a nationality/religion term next to a negative word
    "alpaca_placeholder_inputs": 6,  # input is "<noinput>"/"No input", the order sits in the instruction
    "eval_overlap": 3,  # eval lines copied verbatim from orders_chat.jsonl
}
_PII_KINDS = [kind for kind in ("email", "phone", "card", "ipv4") for _ in range(PLANTED[f"pii_{kind}"])]
_BAD_ANSWERS = ["", " ", "\n", "   ", "\t", "", "  \n  ", " "]
_DUP_BASES = 32  # exact_duplicates copies are spread over this many distinct lines
_EXTRA_LINES = ("exact_duplicates", "near_duplicates", "malformed_lines", "non_object_lines", "pii_rows",
                "empty_answers", "missing_assistant", "roles_out_of_order", "over_long_rows", "control_char_rows",
                "identity_negative_rows")  # fmt: skip


@dataclass(frozen=True)
class Order:
    customer: str
    item: str
    quantity: int
    city: str
    deliver_by: dt.date
    category: str

    def answer(self) -> str:
        """The target: one line of compact JSON with the keys in KEYS order."""
        values = [self.customer, self.item, self.quantity, self.city, self.deliver_by.isoformat()]
        return json.dumps(dict(zip(KEYS, values, strict=True)), ensure_ascii=False, separators=(",", ":"))


class _Maker:
    """Draws orders and renders them as chat rows; `seen` keeps every answer and prompt unique."""

    def __init__(self, rng: random.Random, vocab: dict[str, Any], seen: set[str] | None = None) -> None:
        self.rng, self.v = rng, vocab
        self.seen = seen if seen is not None else set()
        self.pronoun_rows = 0

    def order_message(self, notes: int = 0) -> tuple[Order, str]:
        """A fresh (order, customer message) pair that no earlier call produced."""
        while True:
            order, message = self._draw()
            if notes:
                sep = self.rng.choice([" ", "\n"])
                message += sep + " ".join(self.rng.sample(self.v["notes"], notes))
            if order.answer() not in self.seen and message not in self.seen:
                self.seen.update((order.answer(), message))
                return order, message

    def _draw(self) -> tuple[Order, str]:
        rng, v = self.rng, self.v
        template = rng.choice(v["templates"])
        pron = None
        if "{Pron}" in template or "{pron}" in template:
            pron = "she" if self.pronoun_rows % (HE_PER_SHE + 1) == HE_PER_SHE else "he"
            self.pronoun_rows += 1
        first = rng.choice(v[f"first_names_{pron}"] if pron else v["first_names_he"] + v["first_names_she"])
        category = rng.choice(sorted(v["items"]))
        item, plural = rng.choice(v["items"][category])
        qty = rng.randint(1, 12)
        day = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(4, 360))
        order = Order(f"{first} {rng.choice(v['last_names'])}", item, qty, rng.choice(v["cities"]), day, category)
        count = v["number_words"][qty] if rng.random() < 0.3 else str(qty)
        month = v["months"][day.month - 1]
        date = rng.choice([day.isoformat(), f"{month} {day.day}, {day.year}", f"{day.day} {month} {day.year}"])
        fields = {
            "name": order.customer, "item": item, "qty": qty, "city": order.city, "date": date,
            "order": f"{count} {plural if qty > 1 else item}", "pron": pron, "Pron": (pron or "").capitalize(),
        }  # fmt: skip
        return order, template.format(**fields)

    def chat_row(self, order: Order, message: str, system: bool | None = None) -> dict[str, Any]:
        messages = []
        if self.rng.random() < 0.3 if system is None else system:
            messages.append({"role": "system", "content": self.rng.choice(self.v["systems"])})
        user = f"{self.rng.choice(self.v['instructions'])}\n\n{message}"
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": order.answer()}]
        return {"messages": messages, "category": order.category}


def _line(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False)


def _near_variant(maker: _Maker, message: str) -> str:
    """Swap one word of the note part (the order stays intact) and sometimes add whitespace."""
    words = message.split(" ")
    swaps = maker.v["swaps"]
    spots = [i for i, w in enumerate(words) if w.rstrip(".,").lower() in swaps and i >= len(words) // 3]
    i = maker.rng.choice(spots)
    word = words[i].rstrip(".,")
    new = swaps[word.lower()]
    words[i] = (new.capitalize() if word[0].isupper() else new) + words[i][len(word) :]
    variant = " ".join(words)
    # whitespace only on top: added punctuation would change a second 5-gram window and drop Jaccard below 0.8
    extra = maker.rng.choice(["", " ", "  "])
    return variant.replace(". ", ".  ", 1) if extra == "  " else variant + extra


def _pii_sentence(maker: _Maker, kind: str, customer: str) -> str:
    rng = maker.rng
    if kind == "email":
        local = ".".join("".join(c for c in unicodedata.normalize("NFKD", part) if c.isalnum() and c.isascii())
                         for part in customer.split())  # fmt: skip
        return f"You can reach me at {local.lower()}@example.com if anything is unclear."
    if kind == "phone":
        phone = rng.choice([f"+44 20 7946 0{rng.randrange(100, 1000)}", f"+1 202 555 01{rng.randrange(10, 100)}"])
        return f"My phone number is {phone}, call me before you come."
    if kind == "card":
        return "Please charge my card 4111 1111 1111 1111, expiry 12/28."
    return f"I sent this from IP address 203.0.113.{rng.randrange(2, 250)} in case the fraud check needs it."


def _over_long(maker: _Maker, message: str) -> str:
    """Pad a message past OVER_LONG_CHARS with an order history of distinct lines (not a repeated block)."""
    rng, v = maker.rng, maker.v
    lines = [message, "For reference, here is my full order history:"]
    while sum(len(line) + 1 for line in lines) <= OVER_LONG_CHARS:
        ref = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=6))
        item = rng.choice(v["items"][rng.choice(sorted(v["items"]))])[1]
        lines.append(f"- ref {ref}: {rng.randint(2, 12)} {item} to {rng.choice(v['cities'])}, delivered.")
    return "\n".join(lines)


def _planted_rows(maker: _Maker) -> list[dict[str, Any]]:
    """One row per planted row-level problem (PII, empty/missing answers, roles, length, control, identity)."""
    rows = []
    for kind in _PII_KINDS:
        order, message = maker.order_message()
        rows.append(maker.chat_row(order, f"{message} {_pii_sentence(maker, kind, order.customer)}"))
    for bad in _BAD_ANSWERS:
        row = maker.chat_row(*maker.order_message())
        row["messages"][-1]["content"] = bad
        rows.append(row)
    for _ in range(PLANTED["missing_assistant"]):
        row = maker.chat_row(*maker.order_message())
        row["messages"].pop()
        rows.append(row)
    row = maker.chat_row(*maker.order_message(), system=False)
    row["messages"].reverse()
    rows.append(row)
    for _ in range(PLANTED["over_long_rows"]):
        order, message = maker.order_message()
        rows.append(maker.chat_row(order, _over_long(maker, message)))
    order, message = maker.order_message()
    cut = message.index(" ")
    rows.append(maker.chat_row(order, f"{message[:cut]}\x07{message[cut:]}"))
    for i in range(PLANTED["identity_negative_rows"]):
        order, message = maker.order_message()
        terms, v = maker.v["identity_terms"], maker.v
        complaint = v["identity_complaints"][i % 2].format(term=terms[i], neg=v["negative_words"][i % 4])
        rows.append(maker.chat_row(order, f"{complaint} {message}"))
    return rows


def _broken_lines(maker: _Maker) -> list[str]:
    """Lines that are not usable JSON objects: truncated, trailing comma, bare text, a JSON string."""
    lines = [_line(maker.chat_row(*maker.order_message())) for _ in range(4)]
    broken = [lines[0][: len(lines[0]) * 2 // 3], lines[1][: len(lines[1]) // 2]]
    broken += [lines[2][:-1] + ",}", lines[3].replace("]", ",]", 1)]
    broken.append(maker.order_message()[1])  # bare text (templates never start with a JSON character)
    broken.append(_line(maker.order_message()[1]))  # valid JSON, not an object
    return broken


def _chat_lines(maker: _Maker, n_lines: int) -> tuple[list[str], list[str]]:
    """All lines of orders_chat.jsonl (shuffled) plus the clean unique lines the eval file may copy."""
    rng = maker.rng
    n_planted = sum(PLANTED[key] for key in _EXTRA_LINES)
    n_fresh = n_lines - n_planted
    if n_fresh < 200:
        raise ValueError(f"rows too small: the chat file needs at least {n_planted + 200} lines")
    near = []
    for _ in range(PLANTED["near_duplicates"]):  # long rows (3 notes) so one swapped word keeps Jaccard high
        order, message = maker.order_message(notes=3)
        base = maker.chat_row(order, message, system=False)
        variant = json.loads(_line(base))
        instruction, _, text = variant["messages"][0]["content"].partition("\n\n")
        variant["messages"][0]["content"] = f"{instruction}\n\n{_near_variant(maker, text)}"
        near += [_line(base), _line(variant)]
    fresh = []
    for _ in range(n_fresh - PLANTED["near_duplicates"]):
        fresh.append(_line(maker.chat_row(*maker.order_message(notes=int(rng.random() < 0.35)))))
    dup_bases = rng.sample(fresh, _DUP_BASES)
    dups = dup_bases + dup_bases[: PLANTED["exact_duplicates"] - _DUP_BASES]
    copied = set(dup_bases)
    eval_candidates = [line for line in fresh if line not in copied]
    lines = fresh + near + dups + [_line(r) for r in _planted_rows(maker)] + _broken_lines(maker)
    rng.shuffle(lines)
    return lines, eval_candidates


def _alpaca_rows(maker: _Maker, n_rows: int) -> list[list[str]]:
    rows = []
    for i in range(n_rows):
        order, message = maker.order_message(notes=int(maker.rng.random() < 0.3))
        instruction = maker.rng.choice(maker.v["instructions"])
        if i < PLANTED["alpaca_placeholder_inputs"]:
            rows.append([f"{instruction}\n\n{message}", maker.v["placeholders"][i % 2], order.answer()])
        else:
            rows.append([instruction, message, order.answer()])
        rows[-1].append(order.category)
    maker.rng.shuffle(rows)
    return rows


def _grams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _train_prompts(chat: list[str], alpaca: list[list[str]]) -> list[str]:
    texts = [f"{instruction}\n{message}" for instruction, message, *_ in alpaca]
    for line in chat:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            texts += [m["content"] for m in row["messages"] if m["role"] == "user"]
    return texts


def _eval_lines(
    seed: int, vocab: dict[str, Any], seen: set[str], candidates: list[str], train: list[str]
) -> list[str]:
    """Held-out rows from another seed (no notes, no system turn) plus PLANTED["eval_overlap"] copied lines.

    A fresh row shares no word 13-gram with any training prompt, so a 13-gram contamination check flags
    exactly the copied lines.
    """
    maker = _Maker(random.Random(seed + EVAL_SEED_OFFSET), vocab, seen)
    train_grams = set().union(*map(_grams, train))
    lines = []
    while len(lines) < EVAL_ROWS - PLANTED["eval_overlap"]:
        row = maker.chat_row(*maker.order_message(), system=False)
        if not _grams(row["messages"][0]["content"]) & train_grams:
            lines.append(_line(row))
    lines += maker.rng.sample(candidates, PLANTED["eval_overlap"])
    maker.rng.shuffle(lines)
    return lines


def _write_text(path: Path, lines: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)
    return path


def generate_demo(out_dir: Path, seed: int = 7, rows: int = 1500) -> list[Path]:
    """Write orders_chat.jsonl and orders_alpaca.csv (`rows` rows in all) and orders_eval.jsonl into out_dir.

    Same seed and rows give byte-identical files. Returns the paths in that order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = json.loads(VOCAB_PATH.read_text(encoding="utf-8"))
    maker = _Maker(random.Random(seed), vocab)
    n_chat = round(rows * CHAT_SHARE)
    chat, candidates = _chat_lines(maker, n_chat)
    alpaca = _alpaca_rows(maker, rows - n_chat)
    chat_path = _write_text(out_dir / CHAT_FILE, chat)
    alpaca_path = out_dir / ALPACA_FILE
    with open(alpaca_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["instruction", "input", "output", "category"])
        writer.writerows(alpaca)
    eval_lines = _eval_lines(seed, vocab, maker.seen, candidates, _train_prompts(chat, alpaca))
    eval_path = _write_text(out_dir / EVAL_FILE, eval_lines)
    return [chat_path, alpaca_path, eval_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunesmith.demo", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="Folder to write the demo files into.")
    parser.add_argument("--seed", type=int, default=7, help="Random seed; the shipped files use 7.")
    parser.add_argument("--rows", type=int, default=1500, help="Rows across the chat and alpaca files.")
    args = parser.parse_args(argv)
    for path in generate_demo(args.out_dir, seed=args.seed, rows=args.rows):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
