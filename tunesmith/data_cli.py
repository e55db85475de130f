"""Bodies of the data commands (`curate`, `audit`, `card`), kept out of cli.py so it stays a table of parsers.

Each takes the parsed arguments and returns the exit code. Tables and the fitness verdict go to the terminal
(stderr, through `console`), the path of what was written to stdout; `card show` is a report, so all of it goes
to stdout. Imports are made inside the functions: `card show` must not pay for the curate stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tunesmith.config import ConfigError

log = logging.getLogger("tunesmith")

EXIT_DATA, EXIT_GATES = 2, 3


def curate(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.console import console, gate_table, stage_table
    from tunesmith.curate.config import CurateConfig
    from tunesmith.curate.pipeline import GateFailure, run_curate
    from tunesmith.exits import writing_into

    config = load_config(CurateConfig, Path(args.config), args.overrides)
    if args.dry_run:
        console.print_json(json.dumps(config.model_dump(mode="json")))
        return 0
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # redrawn as each stage ends, not by rich's refresh thread: the engine forks its workers only from a process
    # without other threads (a thread may hold a lock at the moment of the fork)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} stages"),
                  TimeElapsedColumn(), console=console, transient=True, auto_refresh=False) as bar:
        task = bar.add_task("curating", total=len(config.stages))
        bar.refresh()

        def advance(record) -> None:
            bar.update(task, advance=1, description=f"{record.name}: {record.rows_out} rows", refresh=True)

        try:
            with writing_into(Path(config.output_dir) / config.name):
                result = run_curate(config, progress=advance)
        except GateFailure as failure:
            bar.stop()
            console.print(gate_table(failure.gates))
            log.error("%s", failure)
            say_verdict(failure.verdict)
            return EXIT_GATES
    console.print(stage_table(result.card.stages))
    if result.card.gates:
        console.print(gate_table(result.card.gates))
    note = " (unchanged: identical inputs and config)" if result.reused else ""
    console.print(f"dataset {result.card.name} {result.card.version}{note}: fingerprint {result.card.fingerprint[:16]}")
    report = result.directory / "report.html"
    print(report if report.exists() else result.directory / "card.json")
    return say_verdict(card_verdict(result.card))


def audit(args: argparse.Namespace) -> int:
    from tunesmith.artifacts import read_card
    from tunesmith.console import console, gate_table, stage_table
    from tunesmith.curate.audit import run_audit
    from tunesmith.exits import writing_into

    stages = _names(args.stages)
    with writing_into(Path(args.out)):
        card_dir = run_audit(Path(args.path), Path(args.out), fmt=args.format, tokenizer=args.tokenizer,
                             columns=parse_columns(args.columns), stages=stages,
                             config_file=Path(args.config) if args.config else None,
                             keep_columns=_names(args.keep_columns))
    card = read_card(card_dir)
    console.print(stage_table(card.stages))
    if card.gates:
        console.print(gate_table(card.gates))
    print(card_dir / "report.html")
    return say_verdict(card_verdict(card))


def _names(text: str | None) -> list[str] | None:
    """A comma-separated list flag (`--stages a,b`), None when the flag was not given."""
    return [s.strip() for s in text.split(",") if s.strip()] if text is not None else None


def parse_columns(pairs: list[str] | None) -> dict[str, str]:
    """`--columns question=instruction answer=output` as the source's column mapping {input name: format name}.

    Two renames onto one name are refused by the source config; one column renamed twice is refused here, where
    a dict would keep only the last."""
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        for item in pair.split(","):
            old, sep, new = (part.strip() for part in item.partition("="))
            if not sep or not old or not new:
                raise ConfigError(f"--columns {item!r}: give INPUT_COLUMN=FORMAT_COLUMN, e.g. question=instruction")
            if mapping.get(old, new) != new:
                raise ConfigError(f"--columns: {old!r} is renamed twice ({mapping[old]!r} and {new!r}); give one name")
            mapping[old] = new
    return mapping


def card_verdict(card) -> dict:
    """The card's verdict; cards made before verdicts were recorded get one computed from what they hold."""
    if card.verdict is not None:
        return card.verdict
    from tunesmith.fitness import fitness_verdict

    return fitness_verdict(card.stages, card.splits, card.gates, card.config.get("gates", {}).get("max_rejected_rate"))


def say_verdict(verdict: dict | None) -> int:
    """Print the verdict as the last line on the terminal; exit 3 (like a failed gate) when the data is unfit."""
    if verdict is None:
        return EXIT_GATES
    from rich.markup import escape

    from tunesmith.console import console

    sys.stdout.flush()  # the path printed to stdout comes before it on a terminal
    style = "bold green" if verdict.get("fit") else "bold red"
    console.print(f"[{style}]{escape(verdict.get('sentence', ''))}[/{style}]", highlight=False, soft_wrap=True)
    return 0 if verdict.get("fit") else EXIT_GATES


def card(args: argparse.Namespace) -> int:
    from tunesmith.card_diff import diff_cards, format_diff, verify_card

    if args.action == "show":
        return _show(Path(args.cards[0]))
    if args.action == "validate":
        problems = verify_card(Path(args.cards[0]))
        for problem in problems:
            log.error("%s", problem)
        if not problems:
            print(f"{args.cards[0]}: valid; split files match their hashes and row counts, the fingerprint "
                  "matches the hashes and config, the stage counts add up")
        return EXIT_DATA if problems else 0
    if len(args.cards) != 2:
        raise ConfigError("`tunesmith card diff` takes two cards: A B")
    print(format_diff(diff_cards(Path(args.cards[0]), Path(args.cards[1]))))
    return 0


def _show(path: Path) -> int:
    """Print the card to stdout; exit 0 when it is intact whatever its verdict (an unfit audit card is shown, not
    refused: its failed gates and verdict are part of what is shown), 2 when it disagrees with its files."""
    from rich.markup import escape

    from tunesmith.artifacts import read_card
    from tunesmith.card_diff import card_damage, failed_gates
    from tunesmith.console import stage_table

    out = _stdout()
    card = read_card(path)
    out.print(escape(f"{card.name} {card.version}  fingerprint {card.fingerprint}  created {card.created_at}"))
    out.print(stage_table(card.stages), soft_wrap=False)  # a table fits its cells to the width instead
    for name, split in card.splits.items():
        out.print(escape(f"  {name}: {split.rows} rows ({split.shown()})"))
    for line in failed_gates(card):
        out.print(escape(line), highlight=False)
    verdict = card_verdict(card)
    out.print(escape(verdict.get("sentence", "")), highlight=False)
    problems = card_damage(card, path)  # what is shown must not pass for a sound version
    for problem in problems:
        log.error("%s", problem)
    return EXIT_DATA if problems else 0


def _stdout():
    """A console on stdout (what was asked for, so it can be piped or saved) that wraps no line: off a terminal
    rich would wrap at 80 columns and split the fingerprint line that scripts read. Tables keep the width."""
    from rich.console import Console

    return Console(soft_wrap=True)
