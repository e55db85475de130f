"""Train a LoRA adapter on a dataset card and write the run folder; run.json is written last.

The trainer is transformers' Trainer with atomic checkpoints (`train/checkpoints.py`), fed our token ids and
assistant-only labels (`chat.encode_rows`), length-grouped padded or padding-free batches (`train/batching.py`),
and the callbacks in `train/callbacks.py`.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from tunesmith.artifact_io import atomic_write_text
from tunesmith.artifacts import RunManifest, open_card, write_run
from tunesmith.chat import encode_rows
from tunesmith.errors import Interrupted, UsageError
from tunesmith.models import compute_dtype
from tunesmith.provenance import code_record
from tunesmith.train.batching import collator_for
from tunesmith.train.callbacks import ConfiguredIntervals, EarlyStopping, MetricsFile, RichProgress
from tunesmith.train.checkpoints import (
    AtomicCheckpointTrainer,
    checkpoint_step,
    discard_checkpoints,
    disk_full_is_clear,
    latest_checkpoint,
)
from tunesmith.train.config import TrainConfig
from tunesmith.train.data import preflight
from tunesmith.train.model import load_model_for_training
from tunesmith.train.run_folder import (
    after_interrupt,
    check_resume,
    claimed_run_folder,
    end_segment,
    finish,
    record_start,
    run_segments,
)

log = logging.getLogger(__name__)


def _arguments(config: TrainConfig, checkpoints: Path, has_eval: bool, device: str):
    from transformers import TrainingArguments

    evaluate_every = "steps" if config.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(checkpoints), per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accumulation,
        learning_rate=config.learning_rate, lr_scheduler_type=config.schedule, warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm, num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1, logging_steps=config.logging_steps, seed=config.seed,
        data_seed=config.seed, eval_strategy=evaluate_every if has_eval else "no", eval_steps=config.eval_steps,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps,
        save_total_limit=None, report_to=[], train_sampling_strategy="group_by_length", remove_unused_columns=False,
        restore_callback_states_from_checkpoint=True,  # early stopping's counters and best loss survive --resume
        include_num_input_tokens_seen=True, disable_tqdm=True, use_cpu=device == "cpu",
        logging_nan_inf_filter=False,  # a NaN loss must reach MetricsFile, which stops the run
        bf16=compute_dtype() == torch.bfloat16,
    )


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train on the card's training split and return the run folder; `resume` continues a killed run.

    The run folder is locked throughout, so a second writer of the same run id is refused. Ctrl-C or SIGTERM ends
    in `Interrupted`, whose message names the checkpoint kept (or says nothing was). A fresh run that fails before
    its first complete checkpoint leaves no folder (see `claimed_run_folder`); a failed segment's wall time is
    kept for the run.json of a later --resume.
    """
    started, began = time.perf_counter(), datetime.now(timezone.utc)
    splits = open_card(Path(config.card))
    rows = _split_rows(splits, config)
    if splits.card.tokenizer and splits.card.tokenizer.name != config.model:
        log.warning("the card counted tokens with %s but training uses %s: its token statistics may not hold",
                    splits.card.tokenizer.name, config.model)
    with claimed_run_folder(config, splits.card.fingerprint, resume) as run_dir:
        try:
            return _train_into(run_dir, config, splits, rows, resume, started)
        except BaseException as err:
            end_segment(run_dir, began, time.perf_counter() - started)
            if isinstance(err, KeyboardInterrupt):
                raise Interrupted(after_interrupt(run_dir)) from None
            raise


def _split_rows(splits, config: TrainConfig) -> tuple[list[dict], list[dict]]:
    """The training and evaluation rows; a split the card lacks is refused by name (a missing default
    `validation` split only means no eval loss)."""
    have = ", ".join(sorted(splits.rows)) or "none"
    if config.train_split not in splits.rows:
        raise UsageError(f"train_split={config.train_split!r}: the card {config.card} has no such split (it has: "
                         f"{have}); set train_split to one of them")
    if not config.eval_split:
        return splits.rows[config.train_split], []
    if config.eval_split not in splits.rows:
        if config.eval_split != "validation" or config.early_stopping_patience:
            raise UsageError(f"eval_split={config.eval_split!r}: the card {config.card} has no such split (it has: "
                             f"{have}); set eval_split to one of them, or eval_split=null")
        log.info("the card has no validation split: training without eval loss")
        return splits.rows[config.train_split], []
    return splits.rows[config.train_split], splits.rows[config.eval_split]


def _train_into(run_dir: Path, config: TrainConfig, splits, rows, resume: bool, started: float) -> Path:
    checkpoint = latest_checkpoint(run_dir / "checkpoints") if resume else None
    step, fingerprint = (checkpoint_step(checkpoint) if checkpoint else 0), splits.card.fingerprint
    if checkpoint:  # before loading the model, then again once its weights' hash is known
        check_resume(run_dir, config, fingerprint, None, step)
    model, tokenizer, quantization, device, base = load_model_for_training(config)
    if checkpoint:
        check_resume(run_dir, config, fingerprint, base, step)
    record_start(run_dir, config, fingerprint, base, step)
    train_rows = encode_rows(tokenizer, rows[0], config.max_seq_len)
    preflight(tokenizer, train_rows, config.max_seq_len)
    eval_rows = encode_rows(tokenizer, rows[1], config.max_seq_len) if rows[1] else []
    trainer = _build_trainer(config, model, tokenizer, train_rows, eval_rows, run_dir, device, resume)
    if resume:
        log.info("resuming %s from %s", run_dir.name, checkpoint or "the start (no complete checkpoint)")
        _forget_metrics_after(run_dir / "metrics.jsonl", step)
    metrics = _fit(trainer, run_dir, checkpoint, config, bool(eval_rows))
    with disk_full_is_clear(run_dir / "adapter", "the adapter", "free some space, then run again with --resume"):
        model.save_pretrained(run_dir / "adapter", safe_serialization=True)
        tokenizer.save_pretrained(run_dir / "adapter")
    discard_checkpoints(run_dir / "checkpoints")  # they exist only while a run is unfinished
    resumed_at, segments = run_segments(run_dir, config, time.perf_counter() - started)
    manifest = RunManifest(
        run_id=run_dir.name, card_fingerprint=fingerprint, card_path=str(Path(config.card).resolve()),
        base_model=config.model, base_model_sha256=base.weights_sha256, base_model_fingerprint=base.fingerprint,
        quantization=quantization, device=device,
        config=config.model_dump(mode="json"), final_metrics=metrics, torch_threads=torch.get_num_threads(),
        wall_seconds=round(sum(s["seconds"] for s in segments), 2), created_at=datetime.now(timezone.utc),
        code=code_record(), resumed_at_steps=resumed_at, segments=segments,
    )
    with disk_full_is_clear(run_dir, "run.json", "free some space, then run again with --resume"):
        write_run(manifest, run_dir)
    finish(run_dir)
    return run_dir


def _fit(trainer, run_dir: Path, checkpoint: Path | None, config: TrainConfig, has_eval: bool) -> dict[str, float]:
    """Train (from `checkpoint` when resuming) and return the final metrics of the adapter about to be saved."""
    try:
        with disk_full_is_clear(run_dir, "training progress", "free some space, then run again with --resume"):
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, RichProgress):
                callback.close()
    metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
    best, restored = _restore_best(trainer, config)
    metrics.update(best)
    if has_eval:
        metrics.update(_final_eval(trainer, restored))
    return metrics


def _final_eval(trainer, restored: bool) -> dict[str, float]:
    """Eval loss of the adapter being saved; reuses the evaluation at the last step unless weights were restored."""
    step = trainer.state.global_step
    logged = [e for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == step]
    if logged and not restored:
        return {k: float(v) for k, v in logged[-1].items() if k.startswith("eval_") and isinstance(v, (int, float))}
    return {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}


def _restore_best(trainer, config: TrainConfig) -> tuple[dict[str, float], bool]:
    """With early stopping and restore_best, the saved adapter is the one with the lowest eval loss.

    Returns the best step's metrics and whether earlier weights were put back into the model.
    """
    stopper = next((c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStopping)), None)
    if stopper is None or stopper.best_step is None:
        return {}, False
    restored = config.restore_best and stopper.restore_best(trainer.model, trainer.state.global_step)
    return {"best_step": float(stopper.best_step), "best_eval_loss": float(stopper.best)}, restored


def _forget_metrics_after(path: Path, step: int) -> None:
    """Drop metric lines after the checkpoint a run resumes from (those steps run again) and any line a kill cut."""
    if path.is_file():
        steps = [(line, _step_of(line)) for line in path.read_text().splitlines()]
        kept = [line for line, logged in steps if logged is not None and logged <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError, TypeError):
        return None


def _build_trainer(config, model, tokenizer, train_rows, eval_rows, run_dir: Path, device: str, resume: bool):
    from datasets import Dataset
    from transformers import PrinterCallback

    callbacks = [ConfiguredIntervals(), MetricsFile(run_dir / "metrics.jsonl", append=resume), RichProgress()]
    if config.early_stopping_patience and eval_rows:
        callbacks.append(EarlyStopping(config.early_stopping_patience))
    trainer = AtomicCheckpointTrainer(
        model=model, args=_arguments(config, run_dir / "checkpoints", bool(eval_rows), device),
        train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        data_collator=collator_for(config.batching, tokenizer.pad_token_id), callbacks=callbacks,
    )
    trainer.keep_checkpoints = config.keep_checkpoints
    trainer.remove_callback(PrinterCallback)  # MetricsFile logs each step; nothing goes to stdout
    return trainer
