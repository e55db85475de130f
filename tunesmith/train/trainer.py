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
from transformers import set_seed

from tunesmith.artifact_io import atomic_write_text
from tunesmith.artifacts import RunManifest, open_card, write_run
from tunesmith.chat import encode_rows
from tunesmith.config import dump_config
from tunesmith.models import compute_dtype
from tunesmith.provenance import code_record
from tunesmith.train.batching import collator_for
from tunesmith.train.callbacks import EarlyStopping, MetricsFile, RichProgress
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


def run_name(config: TrainConfig, fingerprint: str) -> str:
    return config.run_id or f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{fingerprint[:8]}"


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train on the card's training split and return the run folder; `resume` continues a killed run."""
    started = time.perf_counter()
    splits = open_card(Path(config.card))
    set_seed(config.seed)
    if splits.card.tokenizer and splits.card.tokenizer.name != config.model:
        log.warning("the card counted tokens with %s but training uses %s: its token statistics may not hold",
                    splits.card.tokenizer.name, config.model)
    model, tokenizer, quantization, device, weights_sha = load_model_for_training(config)
    train_rows = encode_rows(tokenizer, splits.rows[config.train_split], config.max_seq_len)
    preflight(tokenizer, train_rows)
    eval_rows = encode_rows(tokenizer, splits.rows.get(config.eval_split, []), config.max_seq_len) \
        if config.eval_split else []
    run_dir = _run_folder(config, splits.card.fingerprint, resume)
    trainer = _build_trainer(config, model, tokenizer, train_rows, eval_rows, run_dir, device, resume)
    checkpoint = latest_checkpoint(run_dir / "checkpoints") if resume else None
    if resume:
        log.info("resuming %s from %s", run_dir.name, checkpoint or "the start (no complete checkpoint)")
        _forget_metrics_after(run_dir / "metrics.jsonl", checkpoint_step(checkpoint) if checkpoint else 0)
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
    if eval_rows:
        metrics.update(_final_eval(trainer, restored))
    with disk_full_is_clear(run_dir / "adapter", "the adapter", "free some space, then run again with --resume"):
        model.save_pretrained(run_dir / "adapter", safe_serialization=True)
        tokenizer.save_pretrained(run_dir / "adapter")
    discard_checkpoints(run_dir / "checkpoints")  # they exist only while a run is unfinished
    manifest = RunManifest(
        run_id=run_dir.name, card_fingerprint=splits.card.fingerprint, card_path=str(Path(config.card).resolve()),
        base_model=config.model, base_model_sha256=weights_sha, quantization=quantization, device=device,
        config=config.model_dump(mode="json"), final_metrics=metrics,
        wall_seconds=round(time.perf_counter() - started, 2), created_at=datetime.now(timezone.utc), code=code_record(),
    )
    with disk_full_is_clear(run_dir, "run.json", "free some space, then run again with --resume"):
        write_run(manifest, run_dir)
    return run_dir


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


def _run_folder(config: TrainConfig, fingerprint: str, resume: bool) -> Path:
    if resume and not config.run_id:
        raise FileNotFoundError("--resume needs the run_id of the run to continue")
    run_dir = Path(config.output_dir) / run_name(config, fingerprint)
    if (run_dir / "run.json").exists():
        raise FileExistsError(f"{run_dir} already holds a finished run; choose another run_id")
    if resume and not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no run to resume")
    if not resume and (run_dir / "checkpoints").is_dir():
        raise FileExistsError(f"{run_dir} holds an unfinished run; continue it with --resume or pick another run_id")
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.resolved.yaml")
    return run_dir


def _build_trainer(config, model, tokenizer, train_rows, eval_rows, run_dir: Path, device: str, resume: bool):
    from datasets import Dataset
    from transformers import PrinterCallback

    callbacks = [MetricsFile(run_dir / "metrics.jsonl", append=resume), RichProgress()]
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
