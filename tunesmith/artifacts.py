"""Artifact schemas (the dataset card, the run and eval manifests) and the functions that read and write them.

Ground floor: imports nothing of tunesmith but config.py, artifact_io.py (atomic writes, hashing, validated
reads) and card_integrity.py (the checks a card must pass before use). `card.json` is the contract between curation and the stages downstream; it is written last, so its
presence means the dataset version is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tunesmith.artifact_io import read_artifact, write_artifact
from tunesmith.card_integrity import (  # noqa: F401  (split_problems, card_fingerprint, iter_split_rows: API)
    CardError,
    card_fingerprint,
    card_problems,
    iter_split_rows,
    record_problems,
    split_problems,
    split_rows,
)
from tunesmith.config import StrictModel
from tunesmith.errors import UsageError

CARD_FILE = "card.json"


def inside_folder(value: str, what: str, subfolders: bool = False) -> str:
    """Check a path stored in an artifact: relative to the artifact's folder and unable to leave it."""
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or PureWindowsPath(value).drive:
        raise ValueError(f"{what} {value!r} is an absolute path; it must be relative to the card's folder")
    if ".." in parts:
        raise ValueError(f"{what} {value!r} has a '..' component; it must stay inside the card's folder")
    if "\x00" in value or any(part in ("", ".") for part in parts) or (len(parts) > 1 and not subfolders):
        raise ValueError(f"{what} {value!r} must be a plain file name inside the card's folder")
    return value


class SourceRecord(StrictModel):
    path: str = Field(description="File path or Hugging Face dataset id as given in the config.")
    format: str = Field(description="Input format after auto-detection.")
    rows: int = Field(ge=0, description="Rows read from the source, malformed ones included.")
    sha256: str | None = Field(None, description="sha256 of the file bytes; None for hub datasets.")
    warnings: list[str] = Field(default_factory=list, description="What reading the source found a user must "
                                "read, e.g. a `columns:` rename of a column no row has.")


class StageRecord(StrictModel):
    name: str
    version: str
    config: dict[str, Any]
    rows_in: int = Field(ge=0)
    rows_out: int = Field(ge=0)
    rows_rejected: int = Field(ge=0)
    seconds: float = Field(ge=0)
    findings: dict[str, Any] = Field(default_factory=dict)
    rejected_file: str | None = Field(None, description="Path of the rejected rows, relative to the card.")

    @field_validator("rejected_file")
    @classmethod
    def _rejected_inside_card_dir(cls, value: str | None) -> str | None:
        return None if value is None else inside_folder(value, "rejected file", subfolders=True)

    @model_validator(mode="after")
    def _conserved(self) -> StageRecord:
        if self.rows_in != self.rows_out + self.rows_rejected:
            raise ValueError(
                f"stage {self.name}: rows_in ({self.rows_in}) != rows_out ({self.rows_out}) "
                f"+ rows_rejected ({self.rows_rejected})"
            )
        return self


class ShardRecord(StrictModel):
    file: str = Field(description="File name inside the card directory.")
    rows: int = Field(ge=0)
    sha256: str = Field(description="sha256 of the file's bytes.")

    @field_validator("file")
    @classmethod
    def _inside_card_dir(cls, value: str) -> str:
        return inside_folder(value, "split file")


class SplitRecord(StrictModel):
    """A split: one JSONL `file` (as every card before shards), or Parquet `shards` read in order."""

    file: str | None = Field(None, description="The split's one JSONL file; None when it is written as shards.")
    rows: int = Field(ge=0)
    sha256: str = Field(description="sha256 of the one file, or over the shards' hashes (card_integrity."
                        "shards_sha256), so the fingerprint covers every shard.")
    shards: list[ShardRecord] | None = Field(None, description="Parquet shards in row order (`<split>-00000-of-"
                                             "00003.parquet`, ...); None for a one-file split.")

    @field_validator("file")
    @classmethod
    def _inside_card_dir(cls, value: str | None) -> str | None:
        return None if value is None else inside_folder(value, "split file")

    @model_validator(mode="after")
    def _one_form(self) -> SplitRecord:
        if (self.file is None) == (self.shards is None):
            raise ValueError("a split names either its one `file` or its `shards`, not both or neither")
        if self.shards is not None and not self.shards:
            raise ValueError("a sharded split lists at least one shard")
        return self

    def parts(self) -> list[ShardRecord]:
        """The split's files in row order: its shards, or its one file as a single shard."""
        return self.shards if self.shards is not None else [ShardRecord(file=self.file, rows=self.rows,
                                                                        sha256=self.sha256)]

    def shown(self) -> str:
        """Where the rows are, for one line of text: the file, or the shard count and the first shard's name."""
        if self.shards is None:
            return str(self.file)
        first = self.shards[0].file
        return first if len(self.shards) == 1 else f"{len(self.shards)} shards: {first}, ..."


class TokenizerRecord(StrictModel):
    name: str = Field(description="Model name, local path or hub id the tokenizer came from.")
    chat_template_sha256: str | None = None
    max_seq_len: int


class GateRecord(StrictModel):
    name: str
    limit: float
    value: float
    passed: bool
    measures: str | None = Field(None, description="Which rows the value is measured on, e.g. 'train split'. "
                                 "Cards from before it was recorded have none.")


class CodeRecord(StrictModel):
    package_version: str
    git_sha: str | None
    python: str
    libraries: dict[str, str]


class DatasetCard(StrictModel):
    schema_version: Literal[1] = 1
    name: str
    version: str
    fingerprint: str = Field(description="sha256 over the split contents and the resolved config.")
    task: Literal["sft", "preference", "kto"] = Field(
        "sft", description="What the rows teach: sft (chat examples), preference (a chosen and a rejected answer per "
        "prompt) or kto (one answer labelled desirable or not). Cards from before it was recorded are sft."
    )
    created_at: datetime
    config: dict[str, Any] = Field(description="The resolved curate config that produced this version.")
    sources: list[SourceRecord]
    stages: list[StageRecord]
    splits: dict[str, SplitRecord]
    tokenizer: TokenizerRecord | None = None
    gates: list[GateRecord] = Field(default_factory=list)
    verdict: dict[str, Any] | None = Field(None, description="Whether the data is fit to train on: `fit`, `sentence` "
                                           "and its numbers (fitness.py). Older cards have none.")
    code: CodeRecord

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)


def write_card(card: DatasetCard, directory: Path) -> Path:
    return write_artifact(card, Path(directory) / CARD_FILE)


def read_card(path: Path) -> DatasetCard:
    return read_artifact(DatasetCard, path, CARD_FILE, "no dataset card here (is the version complete?)")


@dataclass
class CardSplits:
    card: DatasetCard
    directory: Path
    rows: dict[str, list[dict]]  # split name -> rows as curation wrote them (id, messages, source, ...)


def card_location(path: Path) -> tuple[Path, Path]:
    """(folder, card file) for a card given as either."""
    path = Path(path)
    return (path, path / CARD_FILE) if path.is_dir() else (path.parent, path)


# what a card of each task is called in the refusal, and the training it waits for
_TASK_WORDS = {"preference": ("a preference", "DPO"), "kto": ("a KTO", "KTO")}


def require_task(card: DatasetCard, tasks: tuple[str, ...] = ("sft",)) -> None:
    """Refuse a card whose task the caller cannot use, in one sentence (train and eval read SFT cards only)."""
    if card.task in tasks:
        return
    what, training = _TASK_WORDS.get(card.task, (f"a {card.task}", card.task))
    raise CardError(f"dataset {card.name} {card.version} is {what} card (task: {card.task}); tunesmith trains and "
                    f"evaluates SFT cards only for now ({training} training comes later); curate an SFT dataset "
                    "(messages, conversations, instruction/output or prompt/completion rows) to train on")


def open_card(path: Path, tasks: tuple[str, ...] = ("sft",)) -> CardSplits:
    """Read a card and its split files, refusing a card that disagrees with its files or whose gates failed.

    A card whose task is not in `tasks` is refused first, before anything else is read or loaded.
    """
    directory, card_file = card_location(path)
    card = read_card(path)
    require_task(card, tasks)
    problems = card_problems(card, directory, card_file, rejected_required=False)
    if problems:
        raise CardError(f"{card_file}: refusing a dataset version that disagrees with its files:\n  "
                        + "\n  ".join(problems))
    failed = [g.name for g in card.gates if not g.passed]
    if failed:
        raise CardError(f"{path}: quality gates failed ({', '.join(failed)}); fix the data or the gates first")
    rows = {name: list(split_rows(directory, split, name, card.task)) for name, split in card.splits.items()}
    return CardSplits(card, directory, rows)


RUN_FILE = "run.json"


class RunManifest(StrictModel):
    """`runs/<run_id>/run.json`: which data, model and settings produced an adapter. Written last."""

    schema_version: Literal[1] = 1
    run_id: str
    card_fingerprint: str
    card_path: str
    base_model: str = Field(description="Model name, folder or hub id as configured.")
    base_model_sha256: str | None = Field(None, description="sha256 of the base weights file, when local.")
    base_model_fingerprint: str | None = Field(
        None, description="sha256 over the name and sha256 of every base file that shapes the model or its encoding "
        "(config.json, weights, tokenizer files, chat template), when local; None in runs from before it was recorded."
    )
    quantization: str = Field(description="What was used after resolving `auto`: nf4, int8 or none.")
    device: str
    config: dict[str, Any]
    final_metrics: dict[str, float]
    wall_seconds: float
    torch_threads: int | None = Field(
        None, description="torch.get_num_threads() during training: an adapter is bit-identical only at equal "
        "thread counts (None in runs from before it was recorded)."
    )
    created_at: datetime
    code: CodeRecord
    resumed_at_steps: list[int] = Field(
        default_factory=list, description="The checkpoint step each --resume continued from, in order; empty for a "
        "run trained in one go. wall_seconds is then the sum over all segments."
    )
    segments: list[dict[str, Any]] = Field(
        default_factory=list, description="One entry per segment (the first start, then each --resume): "
        "resumed_at_step, seconds (seconds_estimated when the process was killed: timed to its last write) and "
        "changed_settings, the resumable settings it ran with where they differ from `config`."
    )


def write_run(manifest: RunManifest, directory: Path) -> Path:
    return write_artifact(manifest, Path(directory) / RUN_FILE)


def read_run(path: Path) -> RunManifest:
    return read_artifact(RunManifest, path, RUN_FILE, "no run manifest here (did the run finish?)")


EVAL_FILE = "eval.json"


class MetricComparison(StrictModel):
    """One metric for the base and the tuned model on the same examples, with a paired bootstrap interval."""

    name: str
    group: Literal["generation", "perplexity"] = Field(description="Scored on generated answers or on likelihoods.")
    higher_is_better: bool
    version: str = Field(description="How it was computed (e.g. sacrebleu's signature), so numbers can be compared.")
    base: float
    tuned: float
    delta: float = Field(description="tuned - base.")
    ci_low: float
    ci_high: float
    confidence: float
    excludes_zero: bool = Field(description="The whole interval of the delta lies on one side of zero.")
    wins: int | None = Field(None, description="Examples the tuned model scores better on (generation metrics).")
    ties: int | None = None
    losses: int | None = None
    n: int = Field(description="Examples (or paragraphs) scored.")

    @property
    def improved(self) -> bool:
        """The interval excludes zero on the side where the metric gets better."""
        return self.excludes_zero and (self.delta > 0) == self.higher_is_better


class EvalManifest(StrictModel):
    """`runs/<run_id>/eval/<eval_id>/eval.json`: base vs tuned on a card's held-out split. Written last."""

    schema_version: Literal[1] = 1
    eval_id: str = Field(description="Fingerprint of the run, the card and the eval config: equal ids, equal eval.")
    run_id: str
    run_path: str
    card_fingerprint: str
    card_path: str
    split: str
    n_examples: int
    base_model: str
    base_model_sha256: str | None = Field(None, description="sha256 of the base weights scored (None: not local).")
    base_model_fingerprint: str | None = Field(
        None, description="The scored base's fingerprint, as in run.json (None: not local, or an older eval)."
    )
    base_changed_from: str | None = Field(
        None, description="The base the run was trained on (its base_model_fingerprint; base_model_sha256 for runs "
        "without one), when this eval scored another base (allowed with allow_base_change); None when they match or "
        "could not be compared."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Why this eval is not the run's plain held-out test (split, cut, base)."
    )
    device: str
    generation: dict[str, Any] = Field(description="Generation settings used for both models.")
    bootstrap: dict[str, Any] = Field(description="Resamples, confidence and seed of the paired bootstrap.")
    metrics: list[MetricComparison]
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds and tokens/s per phase.")
    config: dict[str, Any]
    wall_seconds: float
    created_at: datetime
    code: CodeRecord

    def metric(self, name: str) -> MetricComparison:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(f"{name!r} was not evaluated; known: {', '.join(m.name for m in self.metrics)}")


def read_eval(path: Path) -> EvalManifest:
    return read_artifact(EvalManifest, path, EVAL_FILE, "no eval.json here (run `tunesmith eval` first)")


def write_eval(manifest: EvalManifest, directory: Path) -> Path:
    return write_artifact(manifest, Path(directory) / EVAL_FILE)


EVAL_DIR = "eval"
HELD_OUT_SPLIT = "test"


def eval_folders(run_dir: Path) -> list[Path]:
    """Every finished eval of a run: `eval/<eval_id>/`, and `eval/` itself in runs from before one folder per id."""
    root = Path(run_dir) / EVAL_DIR
    if not root.is_dir():
        return []
    found = sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / EVAL_FILE).is_file())
    return found + ([root] if (root / EVAL_FILE).is_file() else [])


def choose_eval(run_dir: Path, eval_id: str | None = None) -> Path | None:
    """The eval folder a reader should show: the one named `eval_id`, else the newest on the test split.

    Plain evals (the whole test split, the run's own base: no warnings) come before cut or changed-base ones;
    without a test-split eval the newest of any split is chosen (its page says which split it scored). Damaged
    eval.json files are skipped unless nothing else is there, so the reader can say what is wrong with them.
    """
    folders = eval_folders(run_dir)
    readable: list[tuple[EvalManifest, Path]] = []
    for folder in folders:
        try:
            readable.append((read_eval(folder), folder))
        except UsageError:
            continue
    if eval_id is not None:
        match = [folder for manifest, folder in readable if manifest.eval_id == eval_id]
        match = match or [f for f in folders if f.name == eval_id]
        if not match:
            known = ", ".join(f"{m.eval_id} ({m.split}, n={m.n_examples})" for m, _ in readable) or "none"
            raise UsageError(f"{Path(run_dir) / EVAL_DIR}: no eval {eval_id!r}; this run has: {known}")
        return match[0]
    held_out = [pair for pair in readable if pair[0].split == HELD_OUT_SPLIT]
    preferred = [pair for pair in held_out if not pair[0].warnings] or held_out or readable
    if not preferred:
        return folders[-1] if folders else None
    return max(preferred, key=lambda pair: pair[0].created_at)[1]
