"""Trainer callbacks: metrics.jsonl line by line, a stop on non-finite loss, early stopping keeping the best
adapter, and a progress bar."""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from tunesmith.train.data import NonFiniteLoss  # defined in data.py so the CLI can catch it without torch

log = logging.getLogger(__name__)


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MetricsFile(TrainerCallback):
    """Append one JSON line per log event: step, loss, eval_loss, lr, tokens/s, peak memory; stop on NaN/inf."""

    def __init__(self, path: Path, append: bool = False):
        self.path = Path(path)
        if not append:
            self.path.write_text("")
        self._last = (time.perf_counter(), 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        for key in ("loss", "eval_loss"):
            if key in logs and not math.isfinite(logs[key]):
                raise NonFiniteLoss(f"{key} became {logs[key]} at step {state.global_step}; lower the learning rate "
                                    "or check the data")
        now, seen = time.perf_counter(), int(getattr(state, "num_input_tokens_seen", 0) or 0)
        then, seen_before = self._last
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for source, target in (("loss", "loss"), ("eval_loss", "eval_loss"), ("learning_rate", "lr"),
                               ("grad_norm", "grad_norm")):
            if source in logs:
                record[target] = float(logs[source])
        if "loss" in logs and seen > seen_before:
            record["tokens_per_s"] = round((seen - seen_before) / max(now - then, 1e-9), 1)
            self._last = (now, seen)
        record["peak_memory_mb"] = round(peak_memory_mb(), 1)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        log.debug("step %d/%d %s", state.global_step, state.max_steps,  # the progress bar shows these
                 "  ".join(f"{k}={v:.4g}" for k, v in record.items() if k in ("loss", "eval_loss", "lr", "tokens_per_s")))


class ConfiguredIntervals(TrainerCallback):
    """On --resume transformers keeps the checkpoint's logging, eval and save intervals; use the configured ones,
    which are the ones run.json records (changing them on resume is allowed: they do not change the adapter)."""

    def on_train_begin(self, args, state, control, **kwargs):
        state.compute_steps(args, state.max_steps)


BEST_ADAPTER = "best_adapter.safetensors"


class EarlyStopping(TrainerCallback, ExportableState):
    """Stop when eval loss has not improved for `patience` evaluations, keeping the best adapter weights.

    The best trainable tensors are held in memory and written into every checkpoint (`BEST_ADAPTER`),
    so a resumed run restores the same best; `restore_best` puts them back into the model at the end.
    """

    def __init__(self, patience: int, best: float | None = None, bad: int = 0, best_step: int | None = None):
        self.patience, self.best, self.bad, self.best_step = patience, best, bad, best_step
        self.best_tensors: dict[str, torch.Tensor] | None = None

    def state(self) -> dict:
        return {"args": {"patience": self.patience},
                "attributes": {"best": self.best, "bad": self.bad, "best_step": self.best_step}}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / BEST_ADAPTER
        if self.best_step is not None and self.best_tensors is None and saved.is_file():
            from safetensors.torch import load_file

            self.best_tensors = load_file(saved)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        if self.best is None or loss < self.best:
            self.best, self.bad, self.best_step = loss, 0, state.global_step
            if model is not None:
                self.best_tensors = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
                                     if p.requires_grad}
        else:
            self.bad += 1
            if self.bad >= self.patience:
                log.info("early stopping at step %d: eval loss has not improved for %d evaluations",
                         state.global_step, self.bad)
                control.should_training_stop = True

    def save_into_checkpoint(self, folder: Path) -> None:
        """Called by AtomicCheckpointTrainer on the staged checkpoint, so a resume finds the same best."""
        if self.best_tensors:
            from safetensors.torch import save_file

            save_file(self.best_tensors, str(Path(folder) / BEST_ADAPTER))

    def restore_best(self, model, final_step: int) -> bool:
        """Put the best weights back into the model if a later step was worse; True when it did."""
        if not self.best_tensors or self.best_step == final_step:
            return False
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in self.best_tensors.items():
                parameters[name].copy_(tensor.to(parameters[name].device))
        log.info("restored the adapter from step %d, the lowest eval loss (%.4f)", self.best_step, self.best)
        return True


class RichProgress(TrainerCallback):
    """A progress bar on stderr: step of max_steps, loss, eval loss, tokens/s and the time left."""

    def __init__(self):
        self.progress = None
        self.task = None
        self.fields = {"loss": "–", "eval": "–", "tps": "–"}

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("training"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  eval {task.fields[eval]}  {task.fields[tps]} tok/s"),
            TimeRemainingColumn(), console=Console(stderr=True), transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, **self.fields)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.progress is None:
            return
        if "loss" in logs:
            self.fields["loss"] = f"{logs['loss']:.4f}"
        if "eval_loss" in logs:
            self.fields["eval"] = f"{logs['eval_loss']:.4f}"
        seen = getattr(state, "num_input_tokens_seen", 0) or 0
        elapsed = self.progress.tasks[0].elapsed or 0
        if seen and elapsed:
            self.fields["tps"] = f"{seen / elapsed:,.0f}"
        self.progress.update(self.task, completed=state.global_step, **self.fields)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
        self.close()

    def close(self) -> None:
        """Stop the bar; also called when training ends with an error."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
