"""Callbacks: code that runs at fixed events of the training loop, so the loop itself stays short.

The Trainer calls, in this order (every method receives the trainer; read its attributes):

    on_fit_start(trainer)                      run folder ready, checkpoint restored when resuming
      on_epoch_start(trainer)                  trainer.epoch = 0-based epoch about to run
        on_step_start(trainer)                 before the batches of one optimizer update
        on_step_end(trainer)                   after it: trainer.step, trainer.loss, trainer.lr
      on_evaluate_end(trainer, metrics)        after each evaluation (dict from ConfusionMatrix.compute)
      on_epoch_end(trainer)                    trainer.epoch_loss, trainer.val_metrics
    on_fit_end(trainer)                        training finished normally
    on_exception(trainer, error)               training stopped with an error (NaN loss, Ctrl-C, ...)

Events fire on every process under DDP; a callback that writes files checks `trainer.is_main`.
A callback that must survive a resume (early-stopping patience, best value) implements `state_dict()`
and `load_state_dict(state)` with plain types; the Trainer stores them in the checkpoint by class name.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
from pathlib import Path

from tqdm.auto import tqdm

from .checkpoint import copy_checkpoint


class Callback:
    """Base class: override the events you need; the others do nothing."""

    def on_fit_start(self, trainer) -> None: ...
    def on_fit_end(self, trainer) -> None: ...
    def on_epoch_start(self, trainer) -> None: ...
    def on_epoch_end(self, trainer) -> None: ...
    def on_step_start(self, trainer) -> None: ...
    def on_step_end(self, trainer) -> None: ...
    def on_evaluate_end(self, trainer, metrics: dict) -> None: ...
    def on_exception(self, trainer, error: BaseException) -> None: ...


def is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """`value` beats `best` by more than `min_delta` ("max": larger is better, "min": smaller).

    NaN never wins.
    """
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def monitored_value(metrics: dict, name: str) -> float:
    """`metrics[name]` as a float, with a clear error listing the names that exist."""
    if name not in metrics:
        names = sorted(k for k, v in metrics.items() if isinstance(v, float | int))
        raise KeyError(f"metric {name!r} is not computed by the evaluation; choose one of {names}")
    return float(metrics[name])


class ProgressBar(Callback):
    """A `tqdm.auto` bar per epoch (terminal or notebook) showing the loss and learning rate of each step."""

    def __init__(self):
        self.bar = None

    def on_epoch_start(self, trainer) -> None:
        self.bar = tqdm(
            total=trainer.batches_per_epoch,
            initial=trainer.batches_done,
            desc=f"epoch {trainer.epoch + 1}/{trainer.epochs}",
            disable=not trainer.is_main,
            dynamic_ncols=True,
        )

    def on_step_end(self, trainer) -> None:
        self.bar.set_postfix(loss=f"{trainer.loss:.4f}", lr=f"{trainer.lr:.3g}", refresh=False)
        self.bar.update(trainer.batches_done - self.bar.n)

    def on_evaluate_end(self, trainer, metrics: dict) -> None:
        if self.bar is not None and trainer.fitting:
            self.bar.set_postfix(loss=f"{trainer.epoch_loss:.4f}", val_miou=f"{metrics['miou']:.4f}")

    def on_epoch_end(self, trainer) -> None:
        self.close()

    def on_exception(self, trainer, error: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsTable(Callback):
    """Prints the per-class table (`segkit.metrics.format_table`) after every evaluation (main process)."""

    def on_evaluate_end(self, trainer, metrics: dict) -> None:
        if not trainer.is_main:
            return
        from segkit.metrics import format_table

        where = "eval"
        if trainer.fitting:
            where = f"epoch {trainer.epoch + 1}/{trainer.epochs}, step {trainer.step}"
        tqdm.write(f"[{where}] validation: mIoU {metrics['miou']:.4f}, pixel accuracy "
                   f"{metrics['pixel_accuracy']:.4f}, loss {metrics.get('loss', float('nan')):.4f}")
        tqdm.write(format_table(metrics, trainer.class_names))


def epoch_row(trainer) -> dict:
    """One row of metrics.csv: where training stands and the last validation metrics (plain floats)."""
    row = {"epoch": trainer.epoch + 1, "step": trainer.step, "train_loss": trainer.epoch_loss}
    row["lr"] = trainer.lr
    metrics = trainer.val_metrics or {}
    row["val_loss"] = metrics.get("loss", "")
    for name in ("miou", "pixel_accuracy", "mean_class_accuracy", "fw_iou", "mean_precision", "mean_recall"):
        row[name] = metrics.get(name, "")
    iou = metrics.get("iou")
    for index, class_name in enumerate(trainer.class_names):
        row[f"iou_{class_name}"] = float(iou[index]) if iou is not None else ""
    return row


class CSVLogger(Callback):
    """Appends one row per epoch to `run_dir/metrics.csv` (header written once).

    When a run resumes, rows for epochs after the checkpoint (written by the killed run after its last
    checkpoint) are dropped first, so every epoch appears exactly once.
    """

    def __init__(self, filename: str = "metrics.csv"):
        self.filename = filename

    def path(self, trainer) -> Path:
        return Path(trainer.run_dir) / self.filename

    def on_fit_start(self, trainer) -> None:
        path = self.path(trainer)
        if not trainer.is_main or not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames, list(reader)
        kept = [row for row in rows if row.get("epoch", "").isdigit() and int(row["epoch"]) <= trainer.epoch]
        if header is None or len(kept) == len(rows):
            return
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(temporary, path)

    def on_epoch_end(self, trainer) -> None:
        if not trainer.is_main:
            return
        path = self.path(trainer)
        row = epoch_row(trainer)
        write_header = not path.is_file() or path.stat().st_size == 0
        if not write_header:
            with open(path, newline="") as f:
                header = next(csv.reader(f), None) or list(row)
        else:
            header = list(row)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
            if write_header:
                writer.writeheader()
            writer.writerow(row)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLogger(Callback):
    """Writes train/loss and train/lr per step and val/* per epoch under `run_dir/tensorboard`.

    Needs the `tensorboard` package; the Trainer adds this callback only when it is installed.
    """

    def __init__(self, folder: str = "tensorboard"):
        self.folder = folder
        self.writer = None

    def on_fit_start(self, trainer) -> None:
        if trainer.is_main:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events written after the checkpoint by a run that was killed
            self.writer = SummaryWriter(Path(trainer.run_dir) / self.folder, purge_step=trainer.step or None)

    def on_step_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss", trainer.loss, trainer.step)
            self.writer.add_scalar("train/lr", trainer.lr, trainer.step)

    def on_epoch_end(self, trainer) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("train/epoch_loss", trainer.epoch_loss, trainer.step)
        for name, value in (trainer.val_metrics or {}).items():
            if isinstance(value, float):
                self.writer.add_scalar(f"val/{name}", value, trainer.step)
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        self.close()

    def on_exception(self, trainer, error: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Checkpointer(Callback):
    """Saves `last.pt` every epoch (and every `every_steps` optimizer steps), `best.pt` when the monitored
    validation metric improves, and keeps the newest `keep_last_k` history files `step-00001234.pt`.

    Only good checkpoints are written: the model's parameters and buffers are checked finite first
    (`Trainer.check_finite_model`, which stops training otherwise). A history file is a copy of last.pt,
    an independent file, so damage to one (a truncation in place, a flipped bit) leaves the other intact.
    All processes build the checkpoint (the RNG states of every rank are gathered), rank 0 writes it.
    The Trainer makes it from its options (train.checkpoint_every_steps, train.keep_last_k,
    train.best_metric; mode "min" for the loss, else "max"), whose defaults live in segkit.config.
    """

    def __init__(self, every_steps: int | None, keep_last_k: int, metric: str, mode: str):
        self.every_steps = every_steps
        self.keep_last_k = keep_last_k
        self.metric = metric
        self.mode = mode
        self.best = None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]

    def on_step_end(self, trainer) -> None:
        if self.every_steps and trainer.step % self.every_steps == 0:
            self.save(trainer)

    def on_evaluate_end(self, trainer, metrics: dict) -> None:
        if not trainer.fitting:
            return
        value = monitored_value(metrics, self.metric)
        if is_better(value, self.best, self.mode):
            trainer.check_finite_model("best.pt")
            self.best = value
            state = trainer.checkpoint_state()
            if trainer.is_main:
                trainer.write_checkpoint(state, "best.pt")

    def on_epoch_end(self, trainer) -> None:
        self.save(trainer)

    def save(self, trainer) -> None:
        trainer.check_finite_model("last.pt")
        state = trainer.checkpoint_state()
        if not trainer.is_main:
            return
        run_dir = Path(trainer.run_dir)
        last = trainer.write_checkpoint(state, "last.pt")
        if self.keep_last_k > 0:
            history = run_dir / f"step-{trainer.step:08d}.pt"
            trainer.kept_on_failure(lambda: copy_checkpoint(last, history))
            for old in sorted(run_dir.glob("step-*.pt"))[: -self.keep_last_k]:
                old.unlink(missing_ok=True)


class EarlyStopping(Callback):
    """Stops training when the monitored validation metric has not improved for `patience` evaluations."""

    def __init__(self, metric: str = "miou", mode: str = "max", patience: int = 5, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience}")
        self.metric = metric
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.best = None
        self.bad_evaluations = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
        self.bad_evaluations = state["bad_evaluations"]

    def on_evaluate_end(self, trainer, metrics: dict) -> None:
        if not trainer.fitting:
            return
        value = monitored_value(metrics, self.metric)
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best = value
            self.bad_evaluations = 0
            return
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            trainer.should_stop = True
            if trainer.is_main:
                tqdm.write(f"early stopping: {self.metric} has not improved on {self.best:.4f} "
                           f"for {self.patience} evaluations")
