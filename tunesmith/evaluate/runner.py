"""Score the base and the tuned model of a run on the identical held-out examples; write `<run>/eval/<eval_id>/`.

One model is loaded: the base with the run's adapter on top, and every base measurement runs with the
adapter disabled, so both models share exactly the same base weights, tokenizer and chat template.
Each eval id has its own folder, so an eval with other settings never replaces another one. The folder is
assembled in a temporary sibling and renamed into place, with eval.json written last.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from tunesmith.artifact_io import atomic_write_text
from tunesmith.artifacts import (
    EVAL_DIR,
    CardError,
    EvalManifest,
    MetricComparison,
    open_card,
    read_run,
    write_eval,
)
from tunesmith.chat import encode_rows
from tunesmith.config import dump_config
from tunesmith.errors import UsageError
from tunesmith.evaluate.compare import paired_bootstrap
from tunesmith.evaluate.config import EvalConfig
from tunesmith.evaluate.generation import generate_answers
from tunesmith.evaluate.lineage import (
    check_base,
    current_base,
    eval_id,
    eval_warnings,
    eval_with_id,
    existing_eval,
    run_folder,
)
from tunesmith.evaluate.metrics import corpus_scores, example_scores, parse_metric_names
from tunesmith.evaluate.paired_perplexity import VERSIONS, compare_perplexity
from tunesmith.evaluate.perplexity import example_nll, general_text_nll, load_general_text
from tunesmith.locks import clear_stale_work, folder_lock
from tunesmith.models import load_tuned_model
from tunesmith.provenance import code_record

log = logging.getLogger(__name__)

__all__ = ["eval_id", "existing_eval", "prompt_and_references", "run_eval", "run_folder"]

SAMPLES_FILE = "samples.jsonl"
STAGING_PREFIX = ".eval-"


def prompt_and_references(row: dict) -> tuple[list[dict], list[str]]:
    """The messages before the last assistant turn, and the references: the row's `references` or that turn."""
    messages = row["messages"]
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise CardError(f"row {row.get('id')}: no assistant turn to evaluate against")
    extra = row.get("references")
    references = [str(r) for r in extra] if isinstance(extra, list) and extra else [messages[last]["content"]]
    return messages[:last], references


def _general_paragraphs(config: EvalConfig) -> list[str] | None:
    if config.general_text is None:
        return None
    if config.general_text == "builtin":
        return load_general_text()
    text = Path(config.general_text).read_text(encoding="utf-8")
    return [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]


def _measure(model, tokenizer, encoded, prompts, paragraphs, config: EvalConfig, adapter_on: bool) -> dict:
    with nullcontext() if adapter_on else model.disable_adapter():
        started = time.perf_counter()
        nlls = example_nll(model, encoded, batch_size=config.batch_size)
        general = general_text_nll(model, tokenizer, paragraphs, batch_size=config.batch_size) if paragraphs else None
        scored = time.perf_counter() - started
        answers = generate_answers(model, tokenizer, prompts, config.generation)
    which = "tuned" if adapter_on else "base"
    log.info("%s: perplexity in %.1f s, %d answers in %.1f s (%.1f tokens/s)", which, scored, len(prompts),
             answers.seconds, answers.total_tokens / max(answers.seconds, 1e-9))
    return {"nlls": nlls, "general": general, "answers": answers, "score_seconds": scored}


def run_eval(config: EvalConfig, reuse: bool = True) -> Path:
    """Evaluate the run's base and tuned model on the card's split and return the eval folder."""
    return evaluate_run(config, reuse)[0]


def evaluate_run(config: EvalConfig, reuse: bool = True) -> tuple[Path, bool]:
    """(the eval folder, whether an existing eval was reused). One process at a time computes a given eval id: a
    second one waits for it and then reuses its result instead of scoring the same models again."""
    started = time.perf_counter()
    run_dir = run_folder(config.run)
    manifest = read_run(run_dir)
    splits = open_card(Path(manifest.card_path))
    if splits.card.fingerprint != manifest.card_fingerprint:
        raise CardError(f"{manifest.card_path}: its fingerprint is {splits.card.fingerprint[:16]}, but run "
                        f"{manifest.run_id} was trained on {manifest.card_fingerprint[:16]}")
    if config.split not in splits.rows:
        raise CardError(f"{manifest.card_path}: no split {config.split!r} (it has {', '.join(splits.rows)})")
    names = parse_metric_names(config.metrics)
    base_id = current_base(manifest)
    base_change = check_base(manifest, base_id, config.allow_base_change)
    the_id = eval_id(config, run_dir, manifest.card_fingerprint, base_id.fingerprint)  # hashed before scoring
    lock_name = f".{the_id}.lock"
    with folder_lock(run_dir / EVAL_DIR, f"eval {the_id}", wait=True, lock_name=lock_name):
        if reuse and (found := eval_with_id(run_dir, the_id)) is not None:
            log.info("eval %s already exists for these inputs; reusing it", found.eval_id)
            for warning in found.warnings:
                log.warning("eval %s", warning)
            done = run_dir / EVAL_DIR / found.eval_id, True
        else:
            done = _score(config, run_dir, manifest, splits, names, (the_id, base_id, base_change), started), False
        # the eval folder is in place, so the per-id lock goes (one per eval id would pile up): a waiter that then
        # gets the removed file's lock takes a fresh one (folder_lock) and finds the folder to reuse; an
        # interrupted eval keeps its lock file, which is harmless
        (run_dir / EVAL_DIR / lock_name).unlink(missing_ok=True)
    return done


def _score(config: EvalConfig, run_dir: Path, manifest, splits, names, identity: tuple, started: float) -> Path:
    """Score both models on the split and write the eval folder named by the eval id."""
    the_id, base_id, base_change = identity
    rows = splits.rows[config.split][: config.max_examples]
    if not rows:
        raise CardError(f"{manifest.card_path}: split {config.split!r} is empty")
    warnings = eval_warnings(config, len(rows), len(splits.rows[config.split]), base_change)
    prompts, references = zip(*(prompt_and_references(row) for row in rows))
    model, tokenizer = load_tuned_model(run_dir)
    encoded = encode_rows(tokenizer, rows, config.max_seq_len)
    paragraphs = _general_paragraphs(config)
    base = _measure(model, tokenizer, encoded, list(prompts), paragraphs, config, adapter_on=False)
    tuned = _measure(model, tokenizer, encoded, list(prompts), paragraphs, config, adapter_on=True)
    metrics = _comparisons(config, names, base, tuned, list(references))
    device = str(next(model.parameters()).device)
    samples = _samples(rows, prompts, references, base, tuned, names)
    result = EvalManifest(
        eval_id=the_id, run_id=manifest.run_id,
        run_path=str(run_dir.resolve()), card_fingerprint=manifest.card_fingerprint, card_path=manifest.card_path,
        split=config.split, n_examples=len(rows), base_model=manifest.base_model,
        base_model_sha256=base_id.weights_sha256, base_model_fingerprint=base_id.fingerprint,
        base_changed_from=base_change[0] if base_change else None, warnings=warnings, device=device,
        generation=config.generation.model_dump(mode="json"), bootstrap=config.bootstrap.model_dump(mode="json"),
        metrics=metrics, timings=_timings(base, tuned), config=config.model_dump(mode="json"),
        wall_seconds=round(time.perf_counter() - started, 2), created_at=datetime.now(timezone.utc),
        code=code_record(),
    )
    return _write_folder(run_dir, config, result, samples)


def _comparisons(config: EvalConfig, names, base: dict, tuned: dict, references) -> list[MetricComparison]:
    settings = config.bootstrap
    paired = paired_bootstrap(base["answers"].texts, tuned["answers"].texts, references, names,
                              resamples=settings.resamples, confidence=settings.confidence, seed=settings.seed)
    versions = corpus_scores(base["answers"].texts, references, names)
    metrics = [
        MetricComparison(name=name, group="generation", higher_is_better=p.higher_is_better,
                         version=versions[name].version, base=p.base, tuned=p.tuned, delta=p.delta, ci_low=p.ci_low,
                         ci_high=p.ci_high, confidence=p.confidence, excludes_zero=p.excludes_zero, wins=p.wins,
                         ties=p.ties, losses=p.losses, n=p.n)
        for name, p in paired.items()
    ]
    bootstrap = {"resamples": settings.resamples, "confidence": settings.confidence, "seed": settings.seed}
    for which in ("response", "sequence"):
        metrics.append(compare_perplexity(f"{which}_perplexity", base["nlls"], tuned["nlls"], which,
                                          VERSIONS[which], **bootstrap))
    if base["general"]:
        metrics.append(compare_perplexity("general_text_perplexity", base["general"], tuned["general"], "sequence",
                                          VERSIONS["general"], **bootstrap))
    known = [m.name for m in metrics]
    if config.headline not in known:
        raise UsageError(f"headline metric {config.headline!r} was not evaluated; choose one of {', '.join(known)}")
    return metrics


def _timings(base: dict, tuned: dict) -> dict[str, float]:
    timings = {}
    for which, measured in (("base", base), ("tuned", tuned)):
        answers = measured["answers"]
        timings[f"{which}_perplexity_seconds"] = round(measured["score_seconds"], 2)
        timings[f"{which}_generation_seconds"] = round(answers.seconds, 2)
        timings[f"{which}_generation_tokens_per_s"] = round(answers.total_tokens / max(answers.seconds, 1e-9), 1)
    return timings


def _samples(rows, prompts, references, base: dict, tuned: dict, names) -> list[dict]:
    base_scores = example_scores(base["answers"].texts, list(references), names)
    tuned_scores = example_scores(tuned["answers"].texts, list(references), names)
    samples = []
    for i, row in enumerate(rows):
        b, t = base["nlls"][i], tuned["nlls"][i]
        samples.append({
            "id": row["id"], "prompt": prompts[i], "references": references[i],
            "base": base["answers"].texts[i], "tuned": tuned["answers"].texts[i],
            "scores": {name: {"base": base_scores[name][i], "tuned": tuned_scores[name][i]} for name in names},
            "response_nll": {"base": b.response_nll, "tuned": t.response_nll, "tokens": b.response_tokens},
        })
    return samples


def _write_folder(run_dir: Path, config: EvalConfig, result: EvalManifest, samples: list[dict]) -> Path:
    """Build `eval/<eval_id>/` beside the other evals, then rename it in; eval.json is written last.

    Only a folder of the same id (the same inputs, recomputed with --force) is ever replaced.
    """
    root = run_dir / EVAL_DIR
    with folder_lock(root, f"an eval of run {result.run_id}", wait=True):  # a write takes a moment: wait
        clear_stale_work(root, (STAGING_PREFIX,))  # we hold the lock, so these belong to killed evals
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        try:
            atomic_write_text(staging / SAMPLES_FILE,
                              "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
            dump_config(config, staging / "config.resolved.yaml")
            write_eval(result, staging)
            staging.chmod(0o755)
            _swap_in(staging, root / result.eval_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root / result.eval_id


def _swap_in(staging: Path, final: Path) -> None:
    if not final.exists():
        staging.rename(final)
        return
    retired = final.with_name(f"{STAGING_PREFIX}old-{final.name}")
    shutil.rmtree(retired, ignore_errors=True)
    final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)
