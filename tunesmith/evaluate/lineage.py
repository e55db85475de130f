"""What an eval is of: its id (adapter, card, base model, settings), the base check, and what makes it partial.

The eval id covers the base model's fingerprint (its config, weights and tokenizer files: `models.base_identity`),
so an eval is reused only for the very base it scored, and `--force` can never put new numbers under an old id.
A base that differs from the one the run was trained on is refused unless `allow_base_change` is set; then the
change is recorded in eval.json and in its warnings. Runs from before the fingerprint are checked by weights alone.
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
from tunesmith.models import BaseIdentity, base_identity, resolve_model_dir

log = logging.getLogger(__name__)

# settings that decide whether to run, not what is measured: they stay out of the id
NOT_MEASURED = {"run", "allow_base_change"}
# how to allow a changed base, in both commands that evaluate (the refusal cannot know which one is running)
ALLOW_HINT = "pass --allow-base-change to `tunesmith eval` (or set eval.allow_base_change=true for `tunesmith run`)"


def run_folder(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.name == "run.json" else path


def eval_id(config: EvalConfig, run_dir: Path, card_fingerprint: str, base_fingerprint: str | None) -> str:
    """Equal for the same adapter weights, card, base model and eval settings (wherever the run folder lives)."""
    payload = {
        "adapter": sha256_file(run_dir / "adapter" / "adapter_model.safetensors"),
        "base": base_fingerprint,
        "card": card_fingerprint,
        "config": config.model_dump(mode="json", exclude=NOT_MEASURED),
        "general_text": sha256_file(Path(config.general_text))
        if config.general_text not in (None, "builtin") else config.general_text,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def current_base(manifest: RunManifest) -> BaseIdentity:
    """The identity of the base the run's base_model names today (each file hashed once per process)."""
    return base_identity(resolve_model_dir(manifest.base_model))


def existing_eval(config: EvalConfig) -> EvalManifest | None:
    """The run's eval made from the same adapter, card, base model and settings; else None."""
    run_dir = run_folder(config.run)
    manifest = read_run(run_dir)
    return eval_with_id(run_dir, eval_id(config, run_dir, manifest.card_fingerprint,
                                         current_base(manifest).fingerprint))


def eval_with_id(run_dir: Path, wanted: str) -> EvalManifest | None:
    folder = Path(run_dir) / EVAL_DIR / wanted
    if not (folder / "eval.json").is_file():
        return None
    found = read_eval(folder)
    return found if found.eval_id == wanted else None


def check_base(manifest: RunManifest, current: BaseIdentity, allow_change: bool) -> tuple[str, str] | None:
    """Refuse a base that differs from the run's record; with `allow_change`, return (recorded, current).

    Compared by fingerprint (config, weights, tokenizer files); a run from before it was recorded by its weights.
    """
    by_fingerprint = manifest.base_model_fingerprint is not None
    recorded, now = ((manifest.base_model_fingerprint, current.fingerprint) if by_fingerprint
                     else (manifest.base_model_sha256, current.weights_sha256))
    if recorded is None or now is None:
        if recorded != now:
            log.warning("cannot check the base model of run %s: %s", manifest.run_id,
                        "the run recorded no sha256" if recorded is None else f"{manifest.base_model} is not local")
        return None
    if recorded == now:
        return None
    weights = manifest.base_model_sha256 != current.weights_sha256
    where = _weights_path(manifest.base_model) if weights else resolve_model_dir(manifest.base_model)
    what = "the base weights" if weights else "the base model's config or tokenizer files (not its weights)"
    kind = "fingerprint" if by_fingerprint else "sha256"
    if not allow_change:
        raise UsageError(
            f"{where}: {what} changed since run {manifest.run_id} was trained on them (recorded {kind} "
            f"{recorded[:16]}, now {now[:16]}); restore that base, or {ALLOW_HINT} to score the adapter on this "
            "base anyway"
        )
    log.warning("!!! %s: %s are NOT the ones run %s was trained on (recorded %s %s, now %s); scoring anyway "
                "because allow_base_change is set, and eval.json records it", where, what, manifest.run_id, kind,
                recorded[:16], now[:16])
    return recorded, now


def _weights_path(base_model: str) -> Path | str:
    location = resolve_model_dir(base_model)
    single = Path(location) / "model.safetensors"
    return single if single.is_file() else location


def eval_warnings(config: EvalConfig, scored: int, split_rows: int, base_change: tuple[str, str] | None) -> list[str]:
    """Why an eval is not the run's plain held-out test; each one is also logged as a WARNING."""
    warnings = []
    if config.split != HELD_OUT_SPLIT:
        warnings.append(f"scored on the {config.split!r} split, not the held-out {HELD_OUT_SPLIT!r} split: the "
                        "numbers may include examples the model was trained or tuned on")
    if scored < split_rows:
        warnings.append(f"only the first {scored} of {split_rows} {config.split!r} examples were scored "
                        "(max_examples)")
    if base_change is not None:
        warnings.append(f"scored on base {base_change[1][:16]}, not the {base_change[0][:16]} the run was "
                        "trained on (allow_base_change)")
    for warning in warnings:
        log.warning("eval %s", warning)
    return warnings
