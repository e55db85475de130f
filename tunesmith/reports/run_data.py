"""Read everything a run folder holds for the reports, tolerating the parts that are missing or damaged.

Only run.json is required. The eval folder, metrics.jsonl, the configs and the dataset card (which lives
elsewhere and may have moved) are optional: what cannot be read becomes a notice for the page to show.
A run may hold several evals (`eval/<eval_id>/`); the newest on the test split is shown unless one is named.
A damaged samples.jsonl is refused with its file and line: eval writes it whole, so a bad line is not a crash
artifact but a file that no longer says what was scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.artifact_io import ArtifactError, load_json, sha256_file
from tunesmith.artifacts import (
    EVAL_DIR,
    EVAL_FILE,
    HELD_OUT_SPLIT,
    RUN_FILE,
    DatasetCard,
    EvalManifest,
    RunManifest,
    choose_eval,
    eval_folders,
    read_card,
    read_eval,
    read_run,
)

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
    with open(path, "rb") as handle:  # bytes: a line that is not UTF-8 is one bad line, not a crash
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = load_json(line, path, number)
            except ArtifactError:  # bad JSON, bad UTF-8 or nesting too deep to parse
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


def load_run(path: Path, samples: bool = True, adapter_hash: bool = True, eval_id: str | None = None) -> RunArtifacts:
    """Read a run folder (or its run.json); raises only when run.json itself is missing or invalid, when the
    eval named by `eval_id` does not exist, or when the chosen eval's samples.jsonl is damaged."""
    run_dir = run_folder(path)
    art = RunArtifacts(run_dir=run_dir, run=read_run(run_dir))
    art.train_config = _text(run_dir / CONFIG_FILE)
    _load_metrics(art)
    _load_eval(art, samples, eval_id)
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


def _load_eval(art: RunArtifacts, with_samples: bool, eval_id: str | None) -> None:
    folder = choose_eval(art.run_dir, eval_id)
    if folder is None:
        art.notices["eval"] = f"This run has not been evaluated yet (no {EVAL_DIR}/{EVAL_FILE}); run `tunesmith eval`."
        return
    shown = folder.relative_to(art.run_dir)
    try:
        art.eval = read_eval(folder)
    except ValueError as err:  # includes pydantic's ValidationError
        art.notices["eval"] = f"{shown}/{EVAL_FILE} could not be read: {str(err).splitlines()[0]}"
        return
    others = len(eval_folders(art.run_dir)) - 1
    if others and eval_id is None:
        which = "the newest on the test split" if art.eval.split == HELD_OUT_SPLIT else "the newest (none is on test)"
        which = which if not art.eval.warnings else f"{which}, with warnings"
        art.notices["eval"] = (f"This run has {others + 1} evals; shown is {art.eval.eval_id}, {which}. "
                               f"Show another with `tunesmith report {art.run_dir} --eval EVAL_ID`.")
    art.eval_config = _text(folder / CONFIG_FILE)
    if not with_samples:
        return
    if not (folder / SAMPLES_FILE).is_file():
        art.notices["examples"] = f"No {shown}/{SAMPLES_FILE}: per-example outputs are not available."
        return
    art.samples = read_samples(folder / SAMPLES_FILE)


_SAMPLES_ADVICE = "this file is written by `tunesmith eval`, so restore it or recompute it with `tunesmith eval ... --force`"


def read_samples(path: Path) -> list[dict]:
    """The rows of an eval's samples.jsonl; any line that is not a sample raises ArtifactError naming file:line."""
    rows = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            row = load_json(raw, path, number, advice=_SAMPLES_ADVICE)
            problem = _sample_problem(row)
            if problem:
                raise ArtifactError(f"{path}:{number}: {problem}; {_SAMPLES_ADVICE}")
            rows.append(row)
    return rows


def _sample_problem(row: object) -> str | None:
    if not isinstance(row, dict):
        return f"a {type(row).__name__}, not a JSON object"
    scores = row.get("scores")
    if scores is not None and not (isinstance(scores, dict) and all(isinstance(v, dict) for v in scores.values())):
        return "field scores must map each metric to {base, tuned}"
    for key in ("prompt", "references"):
        if row.get(key) is not None and not isinstance(row[key], (str, list)):
            return f"field {key} must be text or a list"
    return None


def eval_warnings(ev: EvalManifest | None) -> list[str]:
    """What the headline must say about the eval: its own warnings (older evals only knew their split)."""
    if ev is None:
        return []
    if ev.warnings:
        return list(ev.warnings)
    return [f"scored on the {ev.split!r} split, not the held-out test split"] if ev.split != HELD_OUT_SPLIT else []


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
