"""The `tunesmith` command line: thin subcommands that parse, load a config, call one library function."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from tunesmith.errors import UsageError
from tunesmith.exits import Sigterm, failure

log = logging.getLogger("tunesmith")



def _train(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.console import console
    from tunesmith.train.config import TrainConfig

    config = load_config(TrainConfig, Path(args.config), args.overrides)
    if args.dry_run:
        console.print_json(json.dumps(config.model_dump(mode="json")))
        return 0
    from tunesmith.train.trainer import train

    print(train(config, resume=args.resume))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from tunesmith.train.merge import merge_run

    print(merge_run(Path(args.run), Path(args.out) if args.out else None))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from tunesmith.train.merge import answer

    print(answer(Path(args.run), args.prompt, max_new_tokens=args.max_new_tokens, system=args.system))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.console import console
    from tunesmith.evaluate.config import EvalConfig

    flags = ([f"run={args.run}"] if args.run else []) + (["allow_base_change=true"] if args.allow_base_change else [])
    config = load_config(EvalConfig, Path(args.config), flags + args.overrides)
    if args.dry_run:
        console.print_json(json.dumps(config.model_dump(mode="json")))
        return 0
    from tunesmith.artifacts import read_eval
    from tunesmith.console import eval_table
    from tunesmith.evaluate.runner import run_eval

    folder = run_eval(config, reuse=not args.force)
    console.print(eval_table(read_eval(folder)))
    print(folder / "eval.json")
    return 0


def _report(args: argparse.Namespace) -> int:
    from tunesmith.config import ConfigError
    from tunesmith.reports.run_report import render_compare_report, render_run_report

    if args.runs[0] == "compare":
        if args.eval:  # an eval id belongs to one run; each compared run shows its newest test-split eval
            raise UsageError(f"--eval {args.eval}: `report compare` shows each run's newest test-split eval and "
                             "cannot pick one eval id for all runs; drop --eval, or use `tunesmith report RUN --eval "
                             "ID` for one run")
        if len(args.runs) < 2:
            raise ConfigError("`tunesmith report compare` takes one or more runs: RUN [RUN ...]")
        out = Path(args.out) if args.out else Path("reports") / "compare.html"
        print(render_compare_report([Path(r) for r in args.runs[1:]], out))
        return 0
    if len(args.runs) != 1:
        raise ConfigError("`tunesmith report` takes one run folder (or `compare RUN RUN ...`)")
    print(render_run_report(Path(args.runs[0]), Path(args.out) if args.out else None, eval_id=args.eval))
    return 0


def _run(args: argparse.Namespace) -> int:
    from tunesmith.console import console
    from tunesmith.pipeline import load_run_config, run_pipeline

    config = load_run_config(Path(args.config), args.overrides)
    if args.dry_run:
        console.print_json(json.dumps(config.model_dump(mode="json")))
        return 0
    print(run_pipeline(config, say=lambda line: console.print(f"[bold]{line}[/bold]")))
    return 0


def _ls(args: argparse.Namespace) -> int:
    import tunesmith.curate  # noqa: F401  (registers the stages)
    from tunesmith.curate.config import DEFAULT_STAGES
    from tunesmith.curate.stage import STAGES

    for name in sorted(STAGES, key=lambda n: DEFAULT_STAGES.index(n) if n in DEFAULT_STAGES else len(DEFAULT_STAGES)):
        cls = STAGES[name]
        print(f"{name:15s} v{cls.version}  {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tunesmith.evaluate.score_files import score_files, score_table

    values = score_files(Path(args.predictions), [Path(p) for p in args.references], args.metrics)
    if args.json:
        print(json.dumps({name: value.model_dump(mode="json") for name, value in values.items()}, indent=2))
    else:
        Console(soft_wrap=False).print(score_table(values, title=f"scores of {args.predictions}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunesmith", description="Curate, fine-tune, evaluate, report.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="More log output (-vv for debug).")
    parser.add_argument("-q", "--quiet", action="store_true", help="Only warnings and errors.")
    sub = parser.add_subparsers(dest="command", required=True)
    curate = sub.add_parser("curate", help="Run the curation pipeline into a versioned dataset card.")
    curate.add_argument("config", help="YAML config (see configs/curate/).")
    curate.add_argument("overrides", nargs="*", help="key=value overrides, e.g. stages.near_dedup.threshold=0.7")
    curate.add_argument("--dry-run", action="store_true", help="Print the resolved config and exit.")
    curate.set_defaults(func=_data("curate"))
    train = sub.add_parser("train", help="Train a LoRA/QLoRA adapter on a dataset card into runs/<run_id>/.")
    train.add_argument("config", help="YAML config (see configs/train/).")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. card=artifacts/.../card.json lora.r=8")
    train.add_argument("--dry-run", action="store_true", help="Print the resolved config and exit.")
    train.add_argument("--resume", action="store_true", help="Continue run_id from its last complete checkpoint.")
    train.set_defaults(func=_train)
    merge = sub.add_parser("merge", help="Merge a run's adapter into full safetensors weights.")
    merge.add_argument("run", help="Run folder (runs/<run_id>) or its run.json")
    merge.add_argument("--out", help="Output folder (default: <run>/merged)")
    merge.set_defaults(func=_merge)
    generate = sub.add_parser("generate", help="Answer one prompt with a run's tuned model (greedy).")
    generate.add_argument("run", help="Run folder (runs/<run_id>)")
    generate.add_argument("prompt")
    generate.add_argument("--system", help="Optional system message.")
    generate.add_argument("--max-new-tokens", type=int, default=128)
    generate.set_defaults(func=_generate)
    _audit_parser(sub)
    card = sub.add_parser("card", help="Show, diff or validate dataset cards.", description=CARD_HELP)
    card.add_argument("action", choices=["show", "diff", "validate"])
    card.add_argument("cards", nargs="+", help="card.json files or version folders")
    card.set_defaults(func=_data("card"))
    score = sub.add_parser("score", help="Score a predictions file against reference files (BLEU, chrF, ROUGE, ...).")
    score.add_argument("--predictions", required=True, help="One answer per line (.txt) or per JSON line (.jsonl).")
    score.add_argument("--references", required=True, action="append", help="Line-aligned references; repeatable.")
    score.add_argument("--metrics", help="Comma-separated names or groups (default: all): bleu,chrf,rouge,exact_match")
    score.add_argument("--json", action="store_true", help="Print a JSON object of metric values instead of a table.")
    score.set_defaults(func=_score)
    evaluate = sub.add_parser("eval", help="Score the base and the tuned model of a run on its card's test split.")
    evaluate.add_argument("config", help="YAML config (see configs/eval/); `run:` names runs/<id>/run.json.")
    evaluate.add_argument("overrides", nargs="*", help="key=value overrides, e.g. run=runs/<id> max_examples=50")
    evaluate.add_argument("--run", help="The run to evaluate (same as the override run=...).")
    evaluate.add_argument("--force", action="store_true", help="Recompute even if an identical eval exists.")
    evaluate.add_argument("--allow-base-change", action="store_true",
                          help="Score the run even if its base model changed since training (recorded in eval.json).")
    evaluate.add_argument("--dry-run", action="store_true", help="Print the resolved config and exit.")
    evaluate.set_defaults(func=_eval)
    report = sub.add_parser("report", help="Render a run's HTML report, or `report compare RUN RUN ...`.")
    report.add_argument("runs", nargs="+", help="A run folder, or `compare` followed by run folders.")
    report.add_argument("--out", help="Output HTML file (default: <run>/report.html, or reports/compare.html).")
    report.add_argument("--eval", help="Which eval of the run to show (its eval id; default: newest on test).")
    report.set_defaults(func=_report)
    run = sub.add_parser("run", help="curate -> train -> eval -> report in one command; prints the report path.")
    run.add_argument("config", help="Pipeline YAML (see configs/pipeline/).")
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=20 eval.max_examples=40")
    run.add_argument("--dry-run", action="store_true", help="Print the resolved config and exit.")
    run.set_defaults(func=_run)
    ls = sub.add_parser("ls", help="List registered stages.")
    ls.add_argument("what", choices=["stages"])
    ls.set_defaults(func=_ls)
    return parser


CARD_HELP = ("show: print a card (its stages, splits and fitness verdict); exit 0 when the card is intact, "
             "whatever its verdict, and 2 when it is damaged (its files or counts disagree with it). "
             "diff A B: what changed from A to B: rows, config keys (in the override form, e.g. "
             "stages.near_dedup.threshold) and statistics. validate: exit 0 only when `train` and `eval` will accept "
             "the card (intact, and no failed quality gate), else 2.")


class _AuditHelp(argparse.HelpFormatter):
    """Lists the row formats from sources.FORMATS when help is shown, so parsing never imports the curate stages."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.dest == "format":
            from tunesmith.curate.sources import FORMATS

            return f"Row format: {' | '.join(FORMATS)} | auto (default: auto, detected from the column names)."
        return super()._get_help_string(action)


def _audit_parser(sub) -> None:
    audit = sub.add_parser("audit", help="One-shot audit of a file: default stages, no split; ends with a verdict "
                           "(exit 3 when the data is unfit to train on).", formatter_class=_AuditHelp)
    audit.add_argument("path")
    audit.add_argument("--format", default="auto", help="Row format (default: auto).")
    audit.add_argument("--columns", nargs="+", metavar="INPUT=NAME",
                       help="Rename input columns to the format's names, e.g. --columns question=instruction.")
    audit.add_argument("--keep-columns", metavar="A,B", help="Columns carried on each row as `meta` (the "
                       "source's `keep_columns`); every other column the format does not read is listed as ignored.")
    audit.add_argument("--stages", help="Comma-separated stages to run (validate always runs first), e.g. "
                       "validate,exact_dedup,pii.")
    audit.add_argument("--config", help="A curate config whose stages, gates and tokenizer the audit uses (its "
                       "top-level keys are checked as curate checks them).")
    audit.add_argument("--tokenizer", help="Model whose tokenizer counts tokens (default: the config's, or "
                       "smollm2-135m-instruct).")
    audit.add_argument("--out", required=True, help="Output folder for card.json and report.html.")
    audit.set_defaults(func=_data("audit"))


def _data(name: str):
    """The data command `name` of data_cli.py, imported only when it runs."""

    def run(args: argparse.Namespace) -> int:
        from tunesmith import data_cli

        return getattr(data_cli, name)(args)

    return run


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Parse like argparse, but let key=value overrides follow flags too (`eval CONFIG --force run=... k=v`).

    argparse hands a `nargs="*"` positional everything up to the first flag and calls whatever comes after the
    flag unrecognized; those words are overrides of the same command, so they are appended in order.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (not isinstance(getattr(args, "overrides", None), list) or any(a.startswith("-") for a in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def _quiet_libraries() -> None:
    """tunesmith draws its own progress; library bars and deprecation notices would only interleave with it."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers is first imported
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code.

    The SIGTERM handler comes first, so a SIGTERM while tunesmith imports or parses exits 130 in one line too. As the
    process's entry point (argv None: the console script, `python -m tunesmith.cli`) the handler stays after main
    returns, ignoring a late SIGTERM until the process has exited; in-process callers get their handler back.
    """
    sigterm = Sigterm()
    previous = signal.signal(signal.SIGTERM, sigterm) if _main_thread() else None
    try:
        return _command(argv, sigterm)
    finally:
        sigterm.decided = True
        if previous is not None and argv is not None:
            signal.signal(signal.SIGTERM, previous)


def _command(argv: list[str] | None, sigterm: Sigterm) -> int:
    code = None
    try:
        _quiet_libraries()
        from tunesmith.console import setup_logging

        setup_logging()  # so an interruption while parsing is said like any other
        args = parse_arguments(argv)
        setup_logging(-1 if args.quiet else args.verbose)
        code = args.func(args)
        sigterm.decided = True
    except BaseException as err:
        sigterm.decided = True
        if code is not None and isinstance(err, KeyboardInterrupt):
            return code  # the SIGTERM came as the command returned: its work is complete and its result stands
        return failure(err)
    return code


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
