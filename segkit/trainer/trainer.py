"""The Trainer: one readable training loop, with everything else hung on events (see callbacks.py).

    trainer = Trainer(model, loss_fn, optimizer, train_loader, val_loader, num_classes=21,
                      class_names=VOC_CLASSES, run_dir="runs/unet", make_scheduler=scheduler_factory("poly"),
                      epochs=30, amp="bf16")
    trainer.fit()                      # train, evaluate every epoch, checkpoint, log
    metrics = trainer.evaluate()       # segkit.inference.evaluate: ConfusionMatrix.compute() + "loss"

The options (epochs, amp, grad_accum_steps, ...) are the keys of a config's `train` section: their defaults
and checks live in one place, segkit.config.SCHEMA["train"], for configs and for this class alike.

One optimizer update ("step") works on `grad_accum_steps` loader batches, each possibly split into
micro-batches. Every piece of the step's loss is weighted by its share of the step's non-void pixels:

    loss_step = sum_over_pieces  (valid pixels in piece / valid pixels in step) * loss(piece)

For a loss that is a mean over non-void pixels (cross-entropy with ignore_index=255, also with an aux
head: a sum of such means) this is *exactly* the loss of one big batch made of all the step's images,
so gradient accumulation and micro-batching give the same update as the big batch (up to float
rounding). For other losses (Dice, top-k, OHEM, class-weighted CE) it is a weighted average of the
pieces' losses: close, not equal. BatchNorm layers in training mode also see smaller batches, so their
statistics (and thus the update) differ with micro-batches or accumulation; prefer GroupNorm (or
frozen, eval-mode BatchNorm) when that matters. Under DDP each process weights its own pieces and DDP
averages the processes (SyncBatchNorm shares the statistics of the processes' batches, not of pieces).
"""

from __future__ import annotations

import contextlib
import errno
import math
import random
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import yaml
from torch import nn

from segkit.config import train_options
from segkit.data.masks import VOID_INDEX
from segkit.errors import StopError
from segkit.inference import autocast, evaluate, resolve_device, to_device
from segkit.paths import runs_root

from . import distributed
from .callbacks import (
    Callback,
    Checkpointer,
    CSVLogger,
    MetricsTable,
    ProgressBar,
    TensorBoardLogger,
    tensorboard_available,
)
from .checkpoint import (
    DiskFullError,
    archive_run_folder,
    capture_rng_state,
    existing_checkpoints,
    find_resume_checkpoint,
    format_bytes,
    load_checkpoint,
    remove_stale_temp_files,
    restore_rng_state,
    save_checkpoint,
    set_aside_after_best,
)
from .data_order import batch_sample_indices, describe_sample, seeded_train_loader, sharded_eval_loader
from .lock import RunFolderLock, RunFolderLocked
from .options import check_class_names, resume_mode

CHECKPOINT_FORMAT = 1


class NonFiniteLossError(StopError):
    """Training diverged: the loss became NaN or infinite (the model was not updated with it), or, as the
    subclass NonFiniteWeightsError, the model's weights or buffers did."""


class NonFiniteWeightsError(NonFiniteLossError):
    """The model's parameters or buffers hold NaN or infinite values: no checkpoint was written of them."""


def plain_metrics(metrics: dict) -> dict:
    """Metrics with tensors turned into lists, so they can go into a checkpoint or a JSON file."""
    return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}


class Trainer:
    """Trains `model` with `loss_fn` and `optimizer` on `train_loader`; evaluates on `val_loader`.

    Args:
        model: maps images (N, 3, H, W) float to logits (N, C, H, W), or in training mode to a dict
            {"out": logits, "aux": aux_logits}, which is handed to `loss_fn` as is.
        loss_fn: `loss_fn(output, target (N, H, W) int64) -> scalar`; its `set_step(step)` is called
            before every step when it has one.
        optimizer: built on `model.parameters()` (moving the model to the device keeps them).
        train_loader, val_loader: DataLoaders of (image, mask) made with shuffle=True / False; the
            Trainer re-creates them with a seeded, resumable, sharded order (see data_order.py).
        num_classes, class_names: for the confusion matrix and the per-class table.
        make_scheduler: `make_scheduler(optimizer, total_steps) -> scheduler`, called once the number of
            steps is known; the scheduler is stepped once per optimizer step (segkit.optim.scheduler_factory
            makes one from a schedule name). A segkit schedule resumed in a run with another number of
            steps is stretched to it (see `stretch_schedule`); PyTorch's own keep their saved length.
        run_dir: run folder; default `runs_root() / run-<date-time>` (runs/ or $SEGKIT_RUNS).
        resume: what to do with what the run folder already holds (True means "auto"):
            False / None  refuse a folder that holds checkpoints (FileExistsError): never overwrite a run.
            "auto"        continue from last.pt (else the newest loadable step-*.pt); start fresh when the
                          folder has no checkpoint.
            "strict"      the same, but a folder without a checkpoint is an error (a mistyped run name
                          does not silently start a new run).
            "best"        continue from best.pt instead: rewind the run to its best evaluation (weights,
                          optimizer, schedule, position, RNGs) and train on from there. Later checkpoints
                          are moved to run_dir/archive/<date-time>/ (see `start_run`).
            "restart"     move everything in the folder to run_dir/archive/<date-time>/, start fresh.
        ignore_index: mask value of void pixels (config: data.ignore_index), left out of the metrics and of
            the pixel weights of a step.
        config: the resolved configuration (plain dict), saved as config.yaml and in every checkpoint.
        callbacks: extra `Callback`s, run after the built-in ones.
        **options: the training options, keys of segkit.config.SCHEMA["train"] with its defaults and checks
            (`segkit train --help` lists them): epochs, device ("auto": CUDA, else MPS, else CPU), amp (None,
            "bf16" or "fp16"; fp16 adds a GradScaler, which skips a step whose gradients overflow, and the
            schedule then waits too), channels_last, grad_accum_steps, micro_batch_size (None, an int, or
            "auto": halved on CUDA out-of-memory until the step fits), clip_grad_norm, overfit_batches
            (train *and* validate on the first n training batches), limit_batches (the first n batches of
            every epoch and evaluation), checkpoint_every_steps, keep_last_k (history checkpoints
            step-XXXXXXXX.pt), best_metric (picks best.pt; "loss" is minimised, the others maximised), seed
            (data order, augmentations and, for a fresh run, torch/random/numpy), sync_batchnorm,
            print_table, progress_bar, tensorboard. Read them back as `trainer.options.<name>`.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: torch.utils.data.DataLoader,
        val_loader: torch.utils.data.DataLoader | None = None,
        *,
        num_classes: int,
        class_names: list[str] | tuple[str, ...] | None = None,
        make_scheduler=None,
        run_dir: str | Path | None = None,
        resume: bool | str | None = False,
        ignore_index: int = VOID_INDEX,
        config: dict | None = None,
        callbacks: list[Callback] | None = None,
        **options,
    ):
        self.options = SimpleNamespace(**train_options("Trainer", **options))
        options = self.options
        self.num_classes = num_classes
        self.class_names = check_class_names(num_classes, class_names)
        self.epochs = options.epochs
        self.seed = options.seed
        self.resume = resume_mode(resume)  # None or one of RESUME_MODES
        self.ignore_index = ignore_index
        self.config = config if config is not None else {}
        micro_batch_size = options.micro_batch_size
        device = options.device

        # Where this process stands, and the device it computes on.
        try:
            self.device = resolve_device(device)
        except ValueError as error:
            raise ValueError(f"train.device: {error}") from None
        if options.sync_batchnorm and self.device.type != "cuda":
            raise ValueError(f"train.sync_batchnorm: SyncBatchNorm needs CUDA devices (it synchronises "
                             f"through NCCL) and this run's device is {self.device.type}; leave it off: each "
                             "process then keeps its own BatchNorm statistics and evaluation uses rank 0's")
        self.dist = distributed.init_distributed(self.device.type)
        if self.dist.is_distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.dist.is_distributed and micro_batch_size == "auto":
            raise ValueError("micro_batch_size='auto' cannot run under DDP (an out-of-memory retry on one "
                             "process would stall the others); give an int instead")
        self.is_main = self.dist.is_main
        if run_dir is None:
            run_dir = distributed.broadcast_object(str(runs_root() / time.strftime("run-%Y%m%d-%H%M%S")))
        self.run_dir = Path(run_dir)

        # The model on its device; `train_model` is what the training step calls (DDP wrapper or model).
        self.channels_last = options.channels_last
        memory_format = torch.channels_last if options.channels_last else torch.preserve_format
        if options.sync_batchnorm and self.dist.is_distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device, memory_format=memory_format)
        self.train_model = self.model
        if self.dist.is_distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.loss_fn = loss_fn.to(self.device) if isinstance(loss_fn, nn.Module) else loss_fn
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=options.amp == "fp16")

        # Data in a seeded, resumable order (overfit mode: the same first batches for train and val).
        rank, world = self.dist.rank, self.dist.world_size
        overfit_batches = options.overfit_batches
        first = overfit_batches * (train_loader.batch_size or 1) if overfit_batches else None
        self.train_loader = seeded_train_loader(train_loader, self.seed, rank, world, first_samples=first)
        if overfit_batches:
            self.val_loader = sharded_eval_loader(train_loader, rank, world, first_samples=first)
        else:
            self.val_loader = sharded_eval_loader(val_loader, rank, world) if val_loader is not None else None
        self.batches_per_epoch = self.limited(len(self.train_loader))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / options.grad_accum_steps)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.scheduler = make_scheduler(optimizer, self.total_steps) if make_scheduler is not None else None

        # Training state: all of it goes into checkpoints.
        self.epoch = 0  # 0-based epoch in progress
        self.batches_done = 0  # loader batches of this epoch already trained on
        self.step = 0  # optimizer steps done since the start of the run
        self.epoch_loss_sum = 0.0
        self.epoch_steps = 0
        self.should_stop = False
        self.loss = float("nan")  # loss of the last step
        self.skipped_update = False  # fp16: the last step's gradients overflowed, no update was applied
        self.lr = optimizer.param_groups[0]["lr"]
        self.val_metrics = None
        self.confusion = None  # ConfusionMatrix of the last evaluation
        self.fitting = False
        self.epoch_finished = False
        self.auto_chunk = None  # micro-batch size found by micro_batch_size="auto"
        self.last_good = None  # (path, step) of the newest checkpoint written or resumed from
        self.lock = RunFolderLock(self.run_dir)

        self.callbacks = [ProgressBar()] if options.progress_bar else []
        self.callbacks.append(CSVLogger())
        if options.tensorboard and tensorboard_available():
            self.callbacks.append(TensorBoardLogger())
        if options.print_table:
            self.callbacks.append(MetricsTable())
        best_mode = "min" if options.best_metric == "loss" else "max"
        self.callbacks.append(Checkpointer(options.checkpoint_every_steps, options.keep_last_k,
                                           options.best_metric, best_mode))
        self.callbacks += list(callbacks or [])

    # ----------------------------------------------------------------------------------------- the loop

    def fit(self) -> dict | None:
        """Train for `epochs` epochs (from the checkpoint when resuming); returns the last val metrics."""
        self.start_run()
        self.fitting = True
        try:
            self.fire("on_fit_start")
            while self.epoch < self.epochs and not self.should_stop:
                self.fire("on_epoch_start")
                self.train_one_epoch()
                if self.val_loader is not None:
                    self.evaluate()
                self.epoch_finished = True
                self.fire("on_epoch_end")
                self.epoch, self.batches_done, self.epoch_finished = self.epoch + 1, 0, False
                self.epoch_loss_sum, self.epoch_steps = 0.0, 0
        except BaseException as error:
            self.fire("on_exception", error)
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                free = format_bytes(shutil.disk_usage(self.run_dir).free)
                raise StopError(f"disk full: cannot write {error.filename or 'a file'} ({free} free on the "
                                f"run folder's file system); training stopped and {self.kept_checkpoint()}. "
                                "Free some space (or move run.dir) and resume with --resume") from error
            raise
        finally:
            self.fitting = False
            self.lock.release()
        self.fire("on_fit_end")
        return self.val_metrics

    def train_one_epoch(self) -> float:
        """One pass over the training data (the rest of it when resuming mid-epoch); returns the mean loss."""
        self.train_model.train()
        sampler = self.train_loader.sampler
        sampler.set_epoch(self.epoch)
        sampler.skip = self.batches_done * self.train_loader.batch_size  # batches seen before a resume
        remaining = self.batches_per_epoch - self.batches_done
        step_batches = []
        for batch in iter_limited(self.train_loader, remaining):
            step_batches.append(batch)
            position = self.batches_done + len(step_batches)
            if position % self.options.grad_accum_steps == 0 or position == self.batches_per_epoch:
                self.train_step(step_batches)
                step_batches = []
        return self.epoch_loss

    def train_step(self, batches: list) -> float:
        """One optimizer update from `batches`, a list of (images (N,3,H,W), masks (N,H,W)) pairs."""
        self.fire("on_step_start")
        if hasattr(self.loss_fn, "set_step"):
            self.loss_fn.set_step(self.step)
        batch_losses = self.accumulate_gradients(batches)
        self.check_finite(batch_losses)
        if self.options.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.clip_grad_norm)
        self.lr = self.optimizer.param_groups[0]["lr"]
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)  # = optimizer.step(), skipped by fp16 scaling when grads overflow
        self.scaler.update()  # an overflow halves the scale: that is how a skipped update shows
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_update = scale is not None and self.scaler.get_scale() < scale
        if self.scheduler is not None and not self.skipped_update:  # the schedule follows real updates
            self.scheduler.step()
        self.step += 1
        self.batches_done += len(batches)
        self.loss = sum(batch_losses)
        self.epoch_loss_sum += self.loss
        self.epoch_steps += 1
        self.fire("on_step_end")
        return self.loss

    def accumulate_gradients(self, batches: list) -> list[float]:
        """Backward passes of one step; with micro_batch_size="auto", retried with halved pieces on OOM."""
        while True:
            micro_batch_size = self.options.micro_batch_size
            chunk = micro_batch_size if isinstance(micro_batch_size, int) else self.auto_chunk
            try:
                return self.forward_backward(batches, chunk)
            except torch.OutOfMemoryError:
                largest = chunk or max(len(images) for images, _ in batches)
                if micro_batch_size != "auto" or largest == 1:
                    raise
            # Outside the except block, so the failed attempt's tensors can be freed.
            self.optimizer.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.auto_chunk = max(1, largest // 2)
            if self.is_main:
                print(f"out of memory: splitting batches into micro-batches of {self.auto_chunk} images")

    def forward_backward(self, batches: list, chunk: int | None) -> list[float]:
        """Forward and backward of every piece; returns each batch's weighted share of the step loss.

        Piece weight = its non-void pixels / the step's non-void pixels (see the module docstring).
        """
        self.check_mask_values(batches)
        pieces = []  # (batch index, images, masks)
        for index, (images, masks) in enumerate(batches):
            size = chunk or len(images)
            for i in range(0, len(images), size):
                pieces.append((index, images[i : i + size], masks[i : i + size]))
        valid = [int((masks != self.ignore_index).sum()) for _, _, masks in pieces]
        total_valid, total_images = sum(valid), sum(len(images) for _, images, _ in pieces)
        if total_valid:  # weight by non-void pixels; an all-void piece has weight 0: skip it
            weights = [v / total_valid for v in valid]
        else:  # nothing but void pixels in the whole step: weight by images
            weights = [len(images) / total_images for _, images, _ in pieces]
        pieces = [(piece, weight) for piece, weight in zip(pieces, weights, strict=True) if weight > 0]
        batch_losses = [torch.zeros((), device=self.device) for _ in batches]
        for number, ((index, images, masks), weight) in enumerate(pieces):
            images, masks = to_device(images, masks, self.device, self.channels_last)
            last_piece = number == len(pieces) - 1
            no_sync = self.train_model.no_sync if self.dist.is_distributed and not last_piece else None
            with no_sync() if no_sync else contextlib.nullcontext():  # DDP averages gradients once per step
                with self.autocast():
                    loss = self.loss_fn(self.train_model(images), masks)
                self.scaler.scale(loss * weight).backward()
            batch_losses[index] += loss.detach().float() * weight
        losses = torch.stack(batch_losses)
        if self.dist.is_distributed:  # every process sees the mean loss (and every process sees a NaN)
            losses = distributed.all_reduce_sum(losses) / self.dist.world_size
        return losses.tolist()

    def check_mask_values(self, batches: list) -> None:
        """Every mask value must be a class index (0 .. num_classes - 1) or the void label; otherwise raise
        ValueError naming the value and the mask file it came from (the loss would fail on it with a
        message about a tensor, or silently index past its classes)."""
        for index, (_, masks) in enumerate(batches):
            bad = ((masks < 0) | (masks >= self.num_classes)) & (masks != self.ignore_index)
            if not bool(bad.any()):
                continue
            row = int(bad.flatten(1).any(1).nonzero()[0]) if masks.dim() > 1 else 0
            values = sorted({int(v) for v in masks[row][bad[row]].unique()})
            position = self.batches_done + index
            sample = batch_sample_indices(self.train_loader, position)[row]
            where = describe_sample(self.train_loader.dataset, sample)
            raise ValueError(
                f"mask value{'s' if len(values) > 1 else ''} {', '.join(map(str, values[:5]))} in {where} "
                f"(training sample {sample}): masks must hold class indices 0..{self.num_classes - 1} or the "
                f"void label {self.ignore_index} (data.ignore_index)")

    def check_finite(self, batch_losses: list[float]) -> None:
        """Stop with an error naming the step and the batch when a loss is NaN or infinite."""
        for index, value in enumerate(batch_losses):
            if not math.isfinite(value):
                self.optimizer.zero_grad(set_to_none=True)
                batch = self.batches_done + index
                where = f"step {self.step}, epoch {self.epoch}, batch {batch} of the epoch (counted from 0)"
                raise NonFiniteLossError(
                    f"the loss is {value} at {where}; training stopped without applying this update and "
                    f"{self.kept_checkpoint()}. Try a lower learning rate, gradient clipping "
                    "(clip_grad_norm) or bf16 instead of fp16."
                )

    def check_finite_model(self, name: str) -> None:
        """Before a checkpoint `name` is written: every parameter and buffer of the model must be finite
        (a BatchNorm running_var can become inf while the loss is still finite). Otherwise raise
        NonFiniteWeightsError naming the first tensors at fault and the last good checkpoint, on every
        process (a tensor at fault on any rank stops them all)."""
        bad = [key for key, tensor in self.model.state_dict().items()
               if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        count = distributed.all_reduce_sum(torch.tensor([len(bad)], device=self.device))
        if int(count.item()) == 0:
            return
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteWeightsError(
            f"at step {self.step} the model holds non-finite values ({len(bad)} tensors on this process: "
            f"{shown or 'on another process'}); {name} was not written, training stopped and "
            f"{self.kept_checkpoint()}. Try a lower learning rate or gradient clipping (clip_grad_norm).")

    def kept_checkpoint(self) -> str:
        """'the last good checkpoint runs/x/last.pt (step 12) is kept', or that there is none."""
        if self.last_good is None:
            return "no checkpoint was written yet"
        path, step = self.last_good
        return f"the last good checkpoint {path} (step {step}) is kept"

    def write_checkpoint(self, state: dict, name: str) -> Path:
        """save_checkpoint(state, run_dir / name) (checksum, room checked, atomic); a full disk stops the
        run with one line naming the path, the bytes needed and free, and the checkpoint that is kept."""
        path = self.kept_on_failure(lambda: save_checkpoint(state, self.run_dir / name))
        if name == "last.pt":
            self.last_good = (path, self.step)
        return path

    def kept_on_failure(self, write):
        """`write()`, with the kept checkpoint added to the message of a DiskFullError."""
        try:
            return write()
        except DiskFullError as error:
            raise StopError(f"{error}; it was not written, training stopped and {self.kept_checkpoint()}. "
                            "Free some space (or move run.dir) and resume with --resume") from error

    # ----------------------------------------------------------------------------------- evaluation

    def evaluate(self, loader: torch.utils.data.DataLoader | None = None) -> dict:
        """segkit.inference.evaluate of the model on `loader` (default: the validation loader), with this
        run's loss, void label, mixed precision and limit_batches; every process evaluates its shard and the
        counts are summed. Under DDP the buffers of rank 0 (BatchNorm running statistics, which DDP does not
        average: each rank updates its own with its own batches) are first copied to every rank, so the
        metrics are those of rank 0's model, the one the checkpoints hold, exactly what a one-process
        `segkit evaluate` of the checkpoint gives. Returns the metrics (ConfusionMatrix.compute() plus
        "loss"), keeps the ConfusionMatrix as `trainer.confusion`, and fires on_evaluate_end."""
        if loader is None:
            if self.val_loader is None:
                raise ValueError("Trainer.evaluate() needs a loader: this Trainer has no val_loader")
            loader = self.val_loader
        else:
            loader = sharded_eval_loader(loader, self.dist.rank, self.dist.world_size)
        distributed.broadcast_buffers(self.model)  # every rank evaluates rank 0's model: the one saved
        metrics = evaluate(self.model, loader, self.num_classes, ignore_index=self.ignore_index,
                           loss_fn=self.loss_fn, amp=self.options.amp, channels_last=self.channels_last,
                           max_batches=self.limited(len(loader)))
        self.confusion = metrics.pop("confusion_matrix")
        metrics.pop("num_images")
        self.val_metrics = metrics
        self.fire("on_evaluate_end", metrics)
        return metrics

    # ------------------------------------------------------------------------------- checkpoints, runs

    def checkpoint_state(self) -> dict:
        """Everything needed to continue this run exactly, as tensors and plain types (all ranks call it)."""
        if self.epoch_finished:  # saved after the epoch's evaluation: continue with the next epoch
            epoch, batches_done, loss_sum, steps = self.epoch + 1, 0, 0.0, 0
        else:
            epoch, batches_done = self.epoch, self.batches_done
            loss_sum, steps = self.epoch_loss_sum, self.epoch_steps
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "batches_done": batches_done,
            "step": self.step,
            "epoch_loss_sum": loss_sum,
            "epoch_steps": steps,
            "should_stop": self.should_stop,
            "loss": self.loss,  # loss and learning rate of the last step (for logs)
            "lr": self.lr,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "config": self.config,
            "val_metrics": plain_metrics(self.val_metrics) if self.val_metrics else None,
            "data_order": {"seed": self.seed, "world_size": self.dist.world_size,
                           "batch_size": self.train_loader.batch_size},
            "rng": distributed.all_gather_objects(capture_rng_state()),  # one entry per rank
            "callbacks": {type(c).__name__: c.state_dict() for c in self.callbacks
                          if hasattr(c, "state_dict")},
        }

    def load_state(self, state: dict, source: str = "checkpoint") -> None:
        """Restore a `checkpoint_state()` dict: weights, optimizer, schedule, scaler, position, RNGs."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{source}: not a segkit trainer checkpoint (format {state.get('format')!r}, "
                             f"expected {CHECKPOINT_FORMAT})")
        if state["num_classes"] != self.num_classes:
            raise ValueError(f"{source} was trained with num_classes={state['num_classes']}, "
                             f"this Trainer has {self.num_classes}")
        order = state["data_order"]
        mine = {"seed": self.seed, "world_size": self.dist.world_size,
                "batch_size": self.train_loader.batch_size}
        if order != mine:
            raise ValueError(f"{source} was written with data order {order}, this run has {mine}: resuming "
                             "would not continue the same run (keep seed, batch size and process count)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None:
            if self.scheduler is None:
                raise ValueError(f"{source} holds a learning-rate schedule but this Trainer has no scheduler")
            total_steps = getattr(self.scheduler, "total_steps", None)
            self.scheduler.load_state_dict(state["scheduler"])
            if total_steps is not None and self.scheduler.total_steps != total_steps:
                self.stretch_schedule(total_steps)
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batches_done, self.step = state["epoch"], state["batches_done"], state["step"]
        self.epoch_loss_sum, self.epoch_steps = state["epoch_loss_sum"], state["epoch_steps"]
        self.should_stop = state["should_stop"]
        self.loss, self.lr = state["loss"], state["lr"]
        self.val_metrics = state["val_metrics"]
        for callback in self.callbacks:
            name = type(callback).__name__
            if hasattr(callback, "load_state_dict") and name in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][name])
        restore_rng_state(state["rng"][self.dist.rank])

    def stretch_schedule(self, total_steps: int) -> None:
        """After loading a schedule made for another number of steps (the run is resumed with more or
        fewer epochs): keep its position t and make its curve end at this run's `total_steps`. Without
        this a poly schedule resumed with more epochs would train the added epochs at its final rate, 0.
        """
        saved_total, step = self.scheduler.total_steps, self.scheduler.last_epoch
        before = self.optimizer.param_groups[0]["lr"]
        self.scheduler.set_total_steps(total_steps)
        if self.is_main:
            after = self.optimizer.param_groups[0]["lr"]
            print(f"the learning-rate schedule was made for {saved_total} steps and this run has "
                  f"{total_steps}: it now ends at step {total_steps}; at step {step} the rate goes from "
                  f"{before:.4g} to {after:.4g}")

    def start_run(self) -> None:
        """Prepare the run folder as `resume` says (see the class docstring); restore a checkpoint or seed.

        Resuming from best.pt ("best") is resuming from a checkpoint written in the middle of an epoch's
        end: the run continues exactly as if it had been stopped right after its best evaluation. That
        evaluation and the epoch end run again (same weights: same metrics; metrics.csv gets that epoch's
        row back), then training goes on with the optimizer, schedule, data order and RNG states of that
        moment. With nothing changed a deterministic run therefore repeats its later epochs; the point is
        to change something first (more epochs, clip_grad_norm after a divergence, ...). Nothing that came
        after best.pt is lost: `set_aside_after_best` moves it to run_dir/archive/<date-time>/.

        First of all the run folder is locked (lock.py): a second training into the same folder is refused
        with RunFolderLocked naming the one that holds it; the lock of a training that was killed is taken
        over. It is released when `fit` ends, however it ends.
        """
        existed = self.run_dir.is_dir()
        self.lock_run_folder()
        try:
            self.prepare_run_folder(existed)
        except BaseException:
            self.lock.release()
            if not existed and self.is_main:  # leave no empty folder behind a refused start
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()
            raise

    def lock_run_folder(self) -> None:
        """Rank 0 creates the run folder and takes its lock; every rank raises RunFolderLocked if it
        cannot."""
        problem = None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                stale = self.lock.acquire()
            except RunFolderLocked as error:
                problem = str(error)
            else:
                if stale:
                    print(f"{self.run_dir}: the training that held this folder ({stale}) ended without "
                          "releasing it (killed?); its lock is taken over")
        problem = distributed.broadcast_object(problem)
        if problem:
            raise RunFolderLocked(problem)

    def prepare_run_folder(self, existed: bool) -> None:
        """The part of start_run after the lock: check the folder, load or seed, write config.yaml."""
        mode, run_dir = self.resume, self.run_dir
        existing = existing_checkpoints(run_dir)
        if existing and mode is None:
            raise FileExistsError(
                f"run folder {run_dir} already holds checkpoints "
                f"({', '.join(p.name for p in existing)}); pass resume=True (segkit train ... --resume) "
                "to continue that run, resume='restart' (--resume restart) to archive it and start again, "
                "or choose a new run folder"
            )
        if mode == "strict" and not existing:
            where = "is empty" if existed else "does not exist"
            raise FileNotFoundError(
                f"resume='strict': nothing to resume in run folder {run_dir}: it {where} (looked for "
                "last.pt and step-*.pt). Check the run name, or use resume='auto' to start the run"
            )
        # Load (and check) the checkpoint before anything in the folder changes.
        path = state = None
        if mode == "best":
            path = run_dir / "best.pt"
            if not path.is_file():
                raise FileNotFoundError(
                    f"resume='best': run folder {run_dir} has no best.pt (it is written when an evaluation "
                    "during training improves the best metric; a run without a val_loader has none)"
                )
            state = load_checkpoint(path)
        elif existing and mode != "restart":
            path, state = find_resume_checkpoint(run_dir)
        if state is not None:
            self.load_state(state, source=str(path))
            self.last_good = (path, self.step)
        distributed.barrier()  # nobody writes before every process has looked at the folder
        if self.is_main:
            if mode == "restart" and (archive := archive_run_folder(run_dir)) is not None:
                print(f"restarting {run_dir}: the previous run was moved to {archive}")
            run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(run_dir)
            if mode == "best":
                archive = set_aside_after_best(run_dir, state["step"])
                print(f"rewinding {run_dir} to best.pt (step {state['step']}): the later checkpoints were "
                      f"moved to {archive}, with a copy of the logs")
        if state is not None:
            if self.is_main:
                where = (f"epoch {self.epoch + 1}/{self.epochs}" if self.epoch < self.epochs
                         else f"all {self.epochs} epochs are done")
                print(f"resuming {run_dir} from {path.name}: step {self.step}, {where}")
                self.save_config()
            return
        torch.manual_seed(self.seed + self.dist.rank)  # a fresh run: seed every global RNG
        random.seed(self.seed + self.dist.rank)
        np.random.seed(self.seed + self.dist.rank)
        if self.is_main:
            self.save_config()

    def save_config(self) -> None:
        """Write the config to run_dir/config.yaml. When a resumed run changed it (more epochs, ...), the
        previous file is kept as config-until-step-XXXXXXXX.yaml (the step this run resumed from)."""
        try:
            text = yaml.safe_dump(self.config, sort_keys=False)
        except yaml.YAMLError as error:
            raise TypeError(f"config must hold only plain types (dict, list, str, numbers): {error}") \
                from None
        path = self.run_dir / "config.yaml"
        if path.is_file():
            if path.read_text() == text:
                return
            path.replace(path.with_name(f"config-until-step-{self.step:08d}.yaml"))
        path.write_text(text)

    # ----------------------------------------------------------------------------------------- helpers

    def fire(self, event: str, *args) -> None:
        """Call `event` on every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def autocast(self):
        """Mixed-precision context (`torch.autocast` with train.amp's dtype), or a no-op without amp."""
        return autocast(self.device, self.options.amp)

    def limited(self, num_batches: int) -> int:
        """How many of `num_batches` an epoch or evaluation uses under `limit_batches`."""
        if self.options.limit_batches is None:
            return num_batches
        return min(num_batches, self.options.limit_batches)

    def describe_batches(self) -> str:
        """'global batch 8 = 4 images per process x 2 processes x 1 accumulation step; 3 steps per epoch'."""
        per_process, world = self.train_loader.batch_size, self.dist.world_size
        accumulation = self.options.grad_accum_steps
        return (f"global batch {per_process * world * accumulation} = {per_process} images per process x "
                f"{world} process{'es' if world > 1 else ''} x {accumulation} accumulation "
                f"step{'s' if accumulation > 1 else ''}; {self.steps_per_epoch} steps per epoch")

    @property
    def epoch_loss(self) -> float:
        """Mean step loss of the current epoch so far."""
        return self.epoch_loss_sum / self.epoch_steps if self.epoch_steps else float("nan")


def iter_limited(loader, num_batches: int):
    """The first `num_batches` batches of `loader`."""
    for index, batch in enumerate(loader):
        if index >= num_batches:
            return
        yield batch
