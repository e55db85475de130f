"""Read everything a run folder holds for the reports, tolerating the parts that are missing or damaged.

Only run.json is required. The eval folder, metrics.jsonl, the configs and the dataset card (which lives
elsewhere and may have moved) are optional: what cannot be read becomes a notice for the page to show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.artifact_io import sha256_file
from tunesmith.artifacts import (
    EVAL_FILE,
    RUN_FILE,
    DatasetCard,
    EvalManifest,
    RunManifest,
    read_card,
    read_eval,
    read_run,
)

EVAL_DIR = "eval"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
CONFIG_FILE = "config.resolved.yaml"
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"


@dataclass
class RunArtifacts:
    run_dir: Path
    run: RunManifest
    metrics: list[dict] = field(default_factory=list)
    eval: EvalManifest | None = None
    samples: list[dict] = field(default_factory=list)
    card: DatasetCard | None = None
    card_file: Path | None = None
    train_config: str | None = None
    eval_config: str | None = None
    adapter_sha256: str | None = None
    notices: dict[str, str] = field(default_factory=dict)  # section -> what could not be read, in words


def run_folder(path: Path) -> Path:
    path = Path(path)
    return path.parent if path.name == RUN_FILE else path


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of a .jsonl file and how many lines were not one (a crash can cut the last line)."""
    rows, bad = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


def as_number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def points(rows: list[dict], key: str) -> list[tuple[float, float]]:
    """(step, value) of the metrics.jsonl lines that have `key`, e.g. "loss" or "eval_loss"."""
    pairs = [(as_number(r.get("step")), as_number(r.get(key))) for r in rows]
    return [(x, y) for x, y in pairs if x is not None and y is not None]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _card_candidates(card_path: str, run_dir: Path) -> list[Path]:
    path = Path(card_path)
    return [path] if path.is_absolute() else [path, run_dir / path]


def load_run(path: Path, samples: bool = True, adapter_hash: bool = True) -> RunArtifacts:
    """Read a run folder (or its run.json); raises only when run.json itself is missing or invalid."""
    run_dir = run_folder(path)
    art = RunArtifacts(run_dir=run_dir, run=read_run(run_dir))
    art.train_config = _text(run_dir / CONFIG_FILE)
    _load_metrics(art)
    _load_eval(art, samples)
    _load_card(art)
    weights = run_dir / ADAPTER_WEIGHTS
    if adapter_hash and weights.is_file():
        art.adapter_sha256 = sha256_file(weights)
    return art


def _load_metrics(art: RunArtifacts) -> None:
    path = art.run_dir / METRICS_FILE
    if not path.is_file():
        art.notices["training"] = f"No {METRICS_FILE} in {art.run_dir}: no loss curves to draw."
        return
    art.metrics, bad = read_jsonl(path)
    if bad:
        art.notices["training"] = f"{bad} line(s) of {METRICS_FILE} were not JSON objects and are left out."


def _load_eval(art: RunArtifacts, with_samples: bool) -> None:
    folder = art.run_dir / EVAL_DIR
    if not (folder / EVAL_FILE).is_file():
        art.notices["eval"] = f"This run has not been evaluated yet (no {EVAL_DIR}/{EVAL_FILE}); run `tunesmith eval`."
        return
    try:
        art.eval = read_eval(folder)
    except ValueError as err:  # includes pydantic's ValidationError
        art.notices["eval"] = f"{EVAL_DIR}/{EVAL_FILE} could not be read: {str(err).splitlines()[0]}"
        return
    art.eval_config = _text(folder / CONFIG_FILE)
    if not with_samples:
        return
    if not (folder / SAMPLES_FILE).is_file():
        art.notices["examples"] = f"No {EVAL_DIR}/{SAMPLES_FILE}: per-example outputs are not available."
        return
    art.samples, bad = read_jsonl(folder / SAMPLES_FILE)
    if bad:
        art.notices["examples"] = f"{bad} line(s) of {SAMPLES_FILE} were not JSON objects and are left out."


def _load_card(art: RunArtifacts) -> None:
    card_path = art.eval.card_path if art.eval else art.run.card_path
    problems = []
    for candidate in _card_candidates(card_path, art.run_dir):
        try:
            art.card, art.card_file = read_card(candidate), candidate
            break
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            problems.append(str(err).splitlines()[0])
    if art.card is None:
        why = problems[0] if problems else "the file is missing (moved or deleted?)"
        art.notices["dataset"] = f"The dataset card at {card_path} could not be read: {why}."
    elif art.card.fingerprint != art.run.card_fingerprint:
        art.notices["dataset"] = (
            f"The card now at {card_path} has fingerprint {art.card.fingerprint[:16]}, but this run was trained "
            f"on {art.run.card_fingerprint[:16]}: the summary below describes a different dataset version."
        )
