"""`tunesmith run`: curate -> train -> eval -> report, each step skipped when its output for the same inputs exists.

- curate: an identical dataset version (same fingerprint) is reused by `run_curate` itself;
- train: the run id is derived from the card fingerprint, the base model's fingerprint and the train settings,
  so a finished run with that id is the same run (skipped) and an unfinished one (checkpoints, no run.json) is
  resumed;
- eval: `run_eval` reuses an eval made from the same adapter, card, base model and settings (each eval has
  its own folder, so other settings never replace it);
- report: always re-rendered (it only reads artifacts).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from tunesmith.artifacts import read_run
from tunesmith.config import StrictModel, apply_overrides, read_yaml, validate_config
from tunesmith.curate.config import CurateConfig
from tunesmith.errors import BusyError, UsageError
from tunesmith.evaluate.config import EvalConfig
from tunesmith.locks import holder_of, wait_for_writer
from tunesmith.train.config import TrainConfig

log = logging.getLogger(__name__)

FROM_CURATE, FROM_TRAIN = "(the card curate writes)", "(the run train writes)"


class RunConfig(StrictModel):
    """One file for the whole job: a curate config, train settings (no card) and eval settings (no run)."""

    curate: CurateConfig = Field(description="As in `tunesmith curate`.")
    train: dict[str, Any] = Field(default_factory=dict, description="As in `tunesmith train`, without `card`.")
    eval: dict[str, Any] = Field(default_factory=dict, description="As in `tunesmith eval`, without `run`.")
    report: bool = Field(True, description="Render runs/<id>/report.html at the end.")

    @model_validator(mode="before")
    @classmethod
    def _sections_from_files(cls, data: Any) -> Any:
        """A section may be a path to its own YAML file instead of a mapping."""
        if isinstance(data, dict):
            data = dict(data)
            for key in ("curate", "train", "eval"):
                if isinstance(data.get(key), str):
                    data[key] = read_yaml(Path(data[key]))
        return data

    @model_validator(mode="after")
    def _check_sections(self) -> RunConfig:
        for key, field in (("train", "card"), ("eval", "run")):
            if field in getattr(self, key):
                raise ValueError(f"{key}.{field} is set by the pipeline itself; remove it")
        self.train_config(FROM_CURATE)
        self.eval_config(FROM_TRAIN)
        return self

    def train_config(self, card: str) -> TrainConfig:
        return validate_config(TrainConfig, {**self.train, "card": card}, "the train section")

    def eval_config(self, run: str) -> EvalConfig:
        return validate_config(EvalConfig, {**self.eval, "run": run}, "the eval section")


def pipeline_run_id(train: TrainConfig, card_fingerprint: str) -> str:
    """Deterministic: the same card, base model and train settings give the same run id (and so a skipped step).

    The base is its fingerprint (config, weights, tokenizer files), so a changed base trains a new run instead of
    reusing one its eval would refuse; a hub id has no local files, and its name (in the settings) stands for it.
    """
    from tunesmith.models import base_identity, resolve_model_dir

    settings = train.model_dump(mode="json", exclude={"card", "output_dir", "run_id"})
    base = base_identity(resolve_model_dir(train.model)).fingerprint
    if base is not None:  # left out for hub ids, whose run ids stay what they were
        settings["base_model_fingerprint"] = base
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{card_fingerprint[:8]}-{digest}"


def run_pipeline(config: RunConfig, say: Callable[[str], None] = log.info) -> Path:
    """Run every step that has no up-to-date output and return the report path (or eval folder without report)."""
    from tunesmith.curate.pipeline import run_curate
    from tunesmith.evaluate.runner import evaluate_run

    preflight(config)
    curated = run_curate(config.curate)
    card_path = curated.directory / "card.json"
    say(f"curate: {'reused' if curated.reused else 'wrote'} {config.curate.name} {curated.card.version} "
        f"(fingerprint {curated.card.fingerprint[:16]})")

    train_config = config.train_config(str(card_path))
    run_id = train_config.run_id or pipeline_run_id(train_config, curated.card.fingerprint)
    train_config = train_config.model_copy(update={"run_id": run_id})
    run_dir = _train_or_reuse(train_config, curated.card.fingerprint, say)

    eval_config = config.eval_config(str(run_dir / "run.json"))
    eval_dir, reused = evaluate_run(eval_config)
    say(f"eval: {'reused' if reused else 'wrote'} {eval_dir}")
    if not config.report:
        return eval_dir
    from tunesmith.reports.run_report import render_run_report

    report = render_run_report(run_dir, eval_id=eval_dir.name)  # the eval just made, whatever its split
    say(f"report: {report}")
    return report


def _train_or_reuse(train_config: TrainConfig, fingerprint: str, say: Callable[[str], None]) -> Path:
    """The finished run of these settings, trained (or resumed) here unless it exists. When another `tunesmith run`
    is training the same run id right now, wait for it and reuse its run instead of failing."""
    from tunesmith.train.checkpoints import latest_checkpoint
    from tunesmith.train.trainer import train

    run_id = train_config.run_id
    run_dir = Path(train_config.output_dir) / run_id
    while True:
        if (run_dir / "run.json").is_file() and read_run(run_dir).card_fingerprint == fingerprint:
            say(f"train: reused run {run_id}")
            return run_dir
        resume = latest_checkpoint(run_dir / "checkpoints") is not None  # train refuses a changed one
        say(f"train: {'resuming' if resume else 'starting'} run {run_id}")
        try:
            return train(train_config, resume=resume)
        except BusyError:
            say(f"train: run {run_id} is being written by {holder_of(run_dir)}; waiting for it to finish")
            wait_for_writer(run_dir)  # the other process is done (finished, failed or killed): look again


def preflight(config: RunConfig) -> None:
    """Check the files the later steps will need, so a missing one is said before curation and training run."""
    from tunesmith.models import chat_template_text

    train, evaluate = config.train_config(FROM_CURATE), config.eval_config(FROM_TRAIN)
    _check_split_names(config.curate, train, evaluate)
    if train.chat_template:
        chat_template_text(train.chat_template)
    general = evaluate.general_text
    if general not in (None, "builtin") and not Path(general).is_file():
        raise UsageError(f"eval.general_text: {general} is not a file; give a text file, `builtin` or null")


def curated_split_names(curate: CurateConfig) -> tuple[set[str], str]:
    """The splits the card will have, and where that comes from: the last `split` stage names a file after each
    split it can give rows to (a positive size or ratio; see curate/split.py), and without one every row goes to
    `all` (curate/card.py write_splits)."""
    found = [(i, s) for i, s in enumerate(curate.stages) if s["stage"] == "split"]
    if not found:
        return {"all"}, "the curate config has no split stage, so its card has one split: all"
    i, stage = found[-1]
    sizes, ratios = stage.get("sizes") or {}, stage.get("ratios") or {}
    names = {n for n, v in sizes.items() if v > 0} | {n for n, v in ratios.items() if n not in sizes and v > 0}
    return names, f"the curate split stage (curate.stages[{i}]) writes {', '.join(sorted(names)) or 'no split'}"


def _check_split_names(curate: CurateConfig, train: TrainConfig, evaluate: EvalConfig) -> None:
    """Refuse a split name the card will not have before curating and training, naming the field and the splits;
    a missing default `validation` split without early stopping only means no eval loss (as train allows)."""
    names, source = curated_split_names(curate)
    wanted = [("train.train_split", train.train_split), ("eval.split", evaluate.split)]
    tolerated = train.eval_split == "validation" and not train.early_stopping_patience
    if train.eval_split and not tolerated:
        wanted.append(("train.eval_split", train.eval_split))
    for field, name in wanted:
        if name not in names:
            null = ", or train.eval_split=null" if field == "train.eval_split" else ""
            raise UsageError(f"{field}={name!r}: {source}; set {field} to one of them{null}")


def load_run_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read the pipeline YAML; sections given as file paths are read first, so `train.max_steps=5` works."""
    data = read_yaml(Path(path))
    for key in ("curate", "train", "eval"):
        if isinstance(data.get(key), str):
            data[key] = read_yaml(Path(data[key]))
    apply_overrides(data, list(overrides))
    return validate_config(RunConfig, data, str(path))
