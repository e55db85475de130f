"""What an eval is of: its id (adapter, card, base weights, settings), the base check, and what makes it partial.

The eval id covers the base weights' sha256, so an eval is reused only for the very weights it scored, and
`--force` can never put new numbers under an old id. A base that differs from the one the run was trained on
is refused unless `allow_base_change` is set; then the change is recorded in eval.json and in its warnings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from tunesmith.artifact_io import sha256_file
from tunesmith.artifacts import EVAL_DIR, HELD_OUT_SPLIT, EvalManifest, RunManifest, read_eval, read_run
from tunesmith.errors import UsageError
from tunesmith.evaluate.config import EvalConfig
from tunesmith.models import base_weights_sha256, resolve_model_dir

log = logging.getLogger(__name__)

# settings that decide whether to run, not what is measured: they stay out of the id
NOT_MEASURED = {"run", "allow_base_change"}


def run_folder(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.name == "run.json" else path


def eval_id(config: EvalConfig, run_dir: Path, card_fingerprint: str, base_sha256: str | None) -> str:
    """Equal for the same adapter weights, card, base weights and eval settings (wherever the run folder lives)."""
    payload = {
        "adapter": sha256_file(run_dir / "adapter" / "adapter_model.safetensors"),
        "base": base_sha256,
        "card": card_fingerprint,
        "config": config.model_dump(mode="json", exclude=NOT_MEASURED),
        "general_text": sha256_file(Path(config.general_text))
        if config.general_text not in (None, "builtin") else config.general_text,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def current_base_sha256(manifest: RunManifest) -> str | None:
    """sha256 of the base weights the run's base_model names today (hashed once per process)."""
    return base_weights_sha256(resolve_model_dir(manifest.base_model))


def existing_eval(config: EvalConfig) -> EvalManifest | None:
    """The run's eval made from the same adapter, card, base weights and settings; else None."""
    run_dir = run_folder(config.run)
    manifest = read_run(run_dir)
    return eval_with_id(run_dir, eval_id(config, run_dir, manifest.card_fingerprint, current_base_sha256(manifest)))


def eval_with_id(run_dir: Path, wanted: str) -> EvalManifest | None:
    folder = Path(run_dir) / EVAL_DIR / wanted
    if not (folder / "eval.json").is_file():
        return None
    found = read_eval(folder)
    return found if found.eval_id == wanted else None


def check_base(manifest: RunManifest, current: str | None, allow_change: bool) -> str | None:
    """Refuse a base whose weights differ from the run's record; with `allow_change`, return the recorded sha."""
    recorded = manifest.base_model_sha256
    if recorded is None or current is None:
        if recorded != current:
            log.warning("cannot check the base weights of run %s: %s", manifest.run_id,
                        "the run recorded no sha256" if recorded is None else f"{manifest.base_model} is not local")
        return None
    if recorded == current:
        return None
    where = _weights_path(manifest.base_model)
    if not allow_change:
        raise UsageError(
            f"{where}: the base weights changed since run {manifest.run_id} was trained on them (recorded sha256 "
            f"{recorded[:16]}, now {current[:16]}); restore that base, or pass --allow-base-change "
            "(allow_base_change=true) to score the adapter on this base anyway"
        )
    log.warning("!!! %s: the base weights are NOT the ones run %s was trained on (recorded sha256 %s, now %s); "
                "scoring anyway because allow_base_change is set, and eval.json records it", where,
                manifest.run_id, recorded[:16], current[:16])
    return recorded


def _weights_path(base_model: str) -> Path | str:
    location = resolve_model_dir(base_model)
    single = Path(location) / "model.safetensors"
    return single if single.is_file() else location


def eval_warnings(config: EvalConfig, scored: int, split_rows: int, changed_from: str | None,
                  current: str | None) -> list[str]:
    """Why an eval is not the run's plain held-out test; each one is also logged as a WARNING."""
    warnings = []
    if config.split != HELD_OUT_SPLIT:
        warnings.append(f"scored on the {config.split!r} split, not the held-out {HELD_OUT_SPLIT!r} split: the "
                        "numbers may include examples the model was trained or tuned on")
    if scored < split_rows:
        warnings.append(f"only the first {scored} of {split_rows} {config.split!r} examples were scored "
                        "(max_examples)")
    if changed_from is not None:
        warnings.append(f"scored on base weights {str(current)[:16]}, not the {changed_from[:16]} the run was "
                        "trained on (allow_base_change)")
    for warning in warnings:
        log.warning("eval %s", warning)
    return warnings
