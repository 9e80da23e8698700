"""Trainer: the update rule (micro-batching, accumulation, clipping, AMP), events, checkpoints, logging.

The references are computed by hand in each test with plain PyTorch (one optimizer step on the full
batch), by torchmetrics, or by a bincount confusion matrix — never by the Trainer itself.
"""

from __future__ import annotations

import copy
import csv
import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from trainer_script import ToyShapes

from segkit.config import SCHEMA, validate_config
from segkit.trainer import (
    Callback,
    EarlyStopping,
    NonFiniteLossError,
    Trainer,
    atomic_save,
    capture_rng_state,
    find_resume_checkpoint,
    load_checkpoint,
    restore_rng_state,
)

CE = nn.CrossEntropyLoss(ignore_index=255)



def tiny_net(num_classes: int = 3, seed: int = 0) -> nn.Module:
    """Conv net without BatchNorm or dropout: its update does not depend on how a batch is split."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, num_classes, 1))


def uneven_void_batch(n: int = 4, size: int = 8, num_classes: int = 3):
    """Images and masks whose numbers of void (255) pixels differ a lot from image to image."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(n, 3, size, size, generator=generator)
    masks = torch.randint(0, num_classes, (n, size, size), generator=generator)
    for i in range(n):
        masks[i, : [0, 2, 4, 7][i % 4] * size // 8] = 255  # 0, 1/4, 1/2 or 7/8 of the rows are void
    return images, masks


def make_trainer(tmp_path, model, images, masks, batch_size, lr=0.5, **options):
    loader = DataLoader(TensorDataset(images, masks), batch_size=batch_size, shuffle=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    options = {"run_dir": tmp_path / "run", "device": "cpu", "progress_bar": False, "print_table": False,
               "num_classes": 3, "epochs": 1, **options}
    return Trainer(model, options.pop("loss_fn", CE), optimizer, loader, options.pop("val_loader", None),
                   **options)


def reference_step(model, images, masks, lr=0.5):
    """One plain SGD step on the whole batch: the update every split of the batch must reproduce."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    CE(model(images), masks).backward()
    optimizer.step()
    return model.state_dict()


def assert_same_weights(actual: dict, expected: dict, atol: float = 1e-6):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=atol, rtol=0, msg=name)


# ------------------------------------------------------------------------- the update rule


@pytest.mark.parametrize(
    "batch_size, options",
    [
        (4, {"micro_batch_size": 1}),  # split into 4 pieces of one image
        (4, {"micro_batch_size": 3}),  # unequal pieces: 3 + 1 images
        (2, {"grad_accum_steps": 2}),  # two loader batches, one update
        (2, {"grad_accum_steps": 2, "micro_batch_size": 1}),
    ],
)
def test_split_batches_give_the_full_batch_update(tmp_path, batch_size, options):
    images, masks = uneven_void_batch()
    model = tiny_net()
    expected = reference_step(model, images, masks)
    trainer = make_trainer(tmp_path, model, images, masks, batch_size, **options)
    trainer.fit()
    assert trainer.step == 1
    assert_same_weights(trainer.model.state_dict(), expected)
    # the logged loss is the full-batch loss too
    assert trainer.loss == pytest.approx(CE(tiny_net()(images), masks).item(), abs=1e-6)


def test_naive_per_sample_averaging_would_not_match(tmp_path):
    """Shows the test above is sharp: averaging the 4 one-image losses equally gives another update."""
    images, masks = uneven_void_batch()
    model = tiny_net()
    expected = reference_step(model, images, masks)
    naive = copy.deepcopy(model)
    optimizer = torch.optim.SGD(naive.parameters(), lr=0.5)
    sum(CE(naive(images[i : i + 1]), masks[i : i + 1]) / 4 for i in range(4)).backward()
    optimizer.step()
    largest = max((naive.state_dict()[k] - expected[k]).abs().max().item() for k in expected)
    assert largest > 1e-4


class OutOfMemoryAbove(nn.Module):
    """Wraps a model and raises torch.OutOfMemoryError for batches larger than `limit` (a fake small GPU)."""

    def __init__(self, model, limit):
        super().__init__()
        self.model, self.limit, self.sizes = model, limit, []

    def forward(self, images):
        self.sizes.append(len(images))
        if len(images) > self.limit:
            raise torch.OutOfMemoryError(f"fake: {len(images)} images do not fit")
        return self.model(images)


def test_auto_micro_batching_recovers_from_out_of_memory(tmp_path, capsys):
    images, masks = uneven_void_batch()
    model = tiny_net()
    expected = reference_step(model, images, masks)
    wrapped = OutOfMemoryAbove(model, limit=1)
    trainer = make_trainer(tmp_path, wrapped, images, masks, 4, micro_batch_size="auto")
    trainer.fit()
    assert wrapped.sizes == [4, 2, 1, 1, 1, 1]  # halved until it fits, then the whole batch in pieces
    assert trainer.auto_chunk == 1
    assert_same_weights(trainer.model.model.state_dict(), expected)
    assert "micro-batches of 1 images" in capsys.readouterr().out


def test_out_of_memory_without_auto_is_raised(tmp_path):
    images, masks = uneven_void_batch()
    trainer = make_trainer(tmp_path, OutOfMemoryAbove(tiny_net(), limit=1), images, masks, 4)
    with pytest.raises(torch.OutOfMemoryError):
        trainer.fit()


@pytest.mark.parametrize("amp", [None, "fp16"])
def test_gradient_clipping_clips_the_true_gradient(tmp_path, amp):
    """SGD with lr 1 moves the weights by exactly the clipped gradient, whose global norm is max_norm.

    With fp16 the GradScaler multiplies the loss by 65536: clipping before unscaling would shrink the
    step to max_norm / 65536, so this also checks that the gradients are unscaled first.
    """
    images, masks = uneven_void_batch()
    model = tiny_net()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(tmp_path, model, images, masks, 4, lr=1.0, clip_grad_norm=1e-3, amp=amp)
    trainer.fit()
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    after = list(model.parameters())
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(after, before, strict=True)))
    assert moved.item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("init_scale, skipped", [(2.0**40, True), (1.0, False)])
def test_fp16_overflow_skips_the_update_and_its_schedule_step(tmp_path, recwarn, init_scale, skipped):
    """A loss scale of 2^40 makes the fp16 gradients overflow: GradScaler skips optimizer.step(), and the
    Trainer then holds the schedule too (PyTorch would otherwise warn that the scheduler stepped first).
    With a scale of 1 the same step is an ordinary update."""
    images, masks = uneven_void_batch()
    model = tiny_net()
    before = copy.deepcopy(model.state_dict())
    trainer = make_trainer(tmp_path, model, images, masks, 4, amp="fp16", make_scheduler=lambda optimizer, _:
                           torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step)))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    trainer.train_step([(images, masks)])
    assert trainer.skipped_update is skipped
    assert trainer.scheduler.last_epoch == (0 if skipped else 1)
    assert trainer.optimizer.param_groups[0]["lr"] == (0.5 if skipped else 0.25)
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert unchanged is skipped
    assert trainer.step == 1  # the step is counted either way
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


def test_bf16_autocast_and_channels_last_reach_the_model(tmp_path):
    images, masks = uneven_void_batch()
    model = tiny_net()
    expected = reference_step(model, images, masks)
    seen = {}

    def record(module, inputs, output):
        seen["input_channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)
        seen["output_dtype"] = output.dtype

    model[0].register_forward_hook(record)
    trainer = make_trainer(tmp_path, model, images, masks, 4, amp="bf16", channels_last=True)
    trainer.fit()
    assert seen == {"input_channels_last": True, "output_dtype": torch.bfloat16}
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[0].weight.dtype == torch.float32  # master weights stay float32
    assert_same_weights(model.state_dict(), expected, atol=5e-2)  # bf16 rounding, same step


class StepAwareLoss(nn.Module):
    """Cross-entropy that records set_step calls and the type of output it receives; NaN at `nan_step`."""

    def __init__(self, nan_step=None):
        super().__init__()
        self.steps, self.output_types, self.nan_step, self.step = [], [], nan_step, None

    def set_step(self, step):
        self.steps.append(step)
        self.step = step

    def forward(self, output, target):
        self.output_types.append(type(output).__name__)
        logits = output["out"] if isinstance(output, dict) else output
        loss = CE(logits, target)
        if isinstance(output, dict):
            loss = loss + 0.5 * CE(output["aux"], target)
        return loss * float("nan") if self.step == self.nan_step else loss


class WithAuxHead(nn.Module):
    """Returns {"out", "aux"} in training mode and the main logits in eval mode (the segkit convention)."""

    def __init__(self):
        super().__init__()
        self.body, self.aux = tiny_net(), nn.Conv2d(3, 3, 1)

    def forward(self, images):
        out = self.body(images)
        return {"out": out, "aux": self.aux(images)} if self.training else out


def test_loss_gets_set_step_and_the_aux_dict_and_eval_uses_the_main_logits(tmp_path):
    images, masks = uneven_void_batch(n=6)
    loss_fn = StepAwareLoss()
    val_loader = DataLoader(TensorDataset(images, masks), batch_size=3)
    trainer = make_trainer(tmp_path, WithAuxHead(), images, masks, 2, loss_fn=loss_fn, epochs=2,
                           val_loader=val_loader)
    trainer.fit()
    assert loss_fn.steps == [0, 1, 2, 3, 4, 5]
    # per epoch: 3 training steps (dict), then the evaluation's 2 batches of 3 images (plain tensor)
    assert loss_fn.output_types == (["dict"] * 3 + ["Tensor"] * 2) * 2
    # evaluation metrics equal a bincount confusion matrix of the main head's argmax
    model = trainer.model.eval()
    with torch.no_grad():
        pred = model(images).argmax(1)
    valid = masks != 255
    expected = torch.bincount(3 * masks[valid] + pred[valid], minlength=9).reshape(3, 3)
    assert torch.equal(trainer.confusion.matrix.cpu(), expected)


# ------------------------------------------------------------------- events, safety, debug modes


class RecordEvents(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append("fit_start")

    def on_epoch_start(self, trainer):
        self.events.append(f"epoch_start {trainer.epoch}")

    def on_step_start(self, trainer):
        self.events.append("step_start")

    def on_step_end(self, trainer):
        self.events.append(f"step_end {trainer.step}")

    def on_evaluate_end(self, trainer, metrics):
        self.events.append(f"evaluate_end {metrics['miou']:.3f}")

    def on_epoch_end(self, trainer):
        self.events.append(f"epoch_end {trainer.epoch}")

    def on_fit_end(self, trainer):
        self.events.append("fit_end")


def test_events_fire_in_order(tmp_path):
    images, masks = uneven_void_batch()
    recorder = RecordEvents()
    val_loader = DataLoader(TensorDataset(images, masks), batch_size=4)
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 2, epochs=2, callbacks=[recorder],
                           val_loader=val_loader)
    metrics = trainer.fit()
    miou = f"{metrics['miou']:.3f}"
    assert recorder.events[:7] == ["fit_start", "epoch_start 0", "step_start", "step_end 1", "step_start",
                                   "step_end 2", recorder.events[6]]
    assert recorder.events[6].startswith("evaluate_end") and recorder.events[7] == "epoch_end 0"
    assert recorder.events[8:] == ["epoch_start 1", "step_start", "step_end 3", "step_start", "step_end 4",
                                   f"evaluate_end {miou}", "epoch_end 1", "fit_end"]


def test_nan_loss_stops_with_step_and_batch_and_keeps_last_good_checkpoint(tmp_path):
    images, masks = uneven_void_batch(n=8)
    loss_fn = StepAwareLoss(nan_step=3)
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 2, loss_fn=loss_fn, epochs=2,
                           checkpoint_every_steps=1)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit()
    message = str(error.value)
    assert "loss is nan at step 3, epoch 0, batch 3 of the epoch" in message
    assert str(tmp_path / "run" / "last.pt") in message
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["step"] == 3
    assert_same_weights(trainer.model.state_dict(), last["model"], atol=0)  # the NaN update was not applied
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_overfit_batches_drives_miou_close_to_one(tmp_path):
    """Debug mode: segkit's UNet (4 base channels, depth 2) learns 2 batches of 2 images by heart."""
    from segkit.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", num_classes=3, base_channels=4, depth=2)
    dataset = ToyShapes(32)  # 16 x 16 images, two square classes on background, void borders
    loader = DataLoader(dataset, batch_size=2, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    trainer = Trainer(model, CE, optimizer, loader, num_classes=3, run_dir=tmp_path / "run", device="cpu",
                      epochs=30, overfit_batches=2, progress_bar=False, print_table=False, keep_last_k=0)
    assert len(trainer.train_loader) == 2 and len(trainer.val_loader) == 2
    metrics = trainer.fit()
    assert metrics["miou"] > 0.9
    # the evaluation saw exactly the 4 training images: check against torchmetrics on them
    from torchmetrics.classification import MulticlassJaccardIndex

    images = torch.stack([dataset[i][0] for i in range(4)])
    masks = torch.stack([dataset[i][1] for i in range(4)])
    with torch.no_grad():
        pred = trainer.model.eval()(images).argmax(1)
    jaccard = MulticlassJaccardIndex(3, average="macro", ignore_index=255)
    assert metrics["miou"] == pytest.approx(jaccard(pred, masks).item(), abs=1e-6)


def test_limit_batches_limits_training_and_evaluation(tmp_path):
    images, masks = uneven_void_batch(n=10)
    val_loader = DataLoader(TensorDataset(images, masks), batch_size=2)
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 2, epochs=2, limit_batches=2,
                           val_loader=val_loader)
    trainer.fit()
    assert trainer.step == 4  # 2 of the 5 batches in each of 2 epochs
    assert trainer.confusion.matrix.sum().item() == (masks[:4] != 255).sum().item()


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    images, masks = uneven_void_batch()
    val_loader = DataLoader(TensorDataset(images, masks), batch_size=4)
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 4, lr=0.0, epochs=10, val_loader=val_loader,
                           callbacks=[EarlyStopping("miou", patience=2)])
    trainer.fit()
    assert trainer.epoch == 3  # best at epoch 1, no improvement at 2 and 3
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


# ------------------------------------------------------------------------ checkpoints and logs


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand(3), np.random.randn())
    torch.manual_seed(2), random.seed(2), np.random.seed(2)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    actual = (torch.rand(3), random.random(), np.random.rand(3), np.random.randn())
    assert torch.equal(actual[0], expected[0]) and actual[1] == expected[1]
    assert np.array_equal(actual[2], expected[2]) and actual[3] == expected[3]


def test_checkpoints_metrics_csv_config_and_best(tmp_path):
    images, masks = uneven_void_batch(n=8)
    val_loader = DataLoader(TensorDataset(images[:4], masks[:4]), batch_size=2)
    recorder = RecordEvents()
    config = {"model": {"name": "tiny", "channels": [6]}, "epochs": 4}
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 2, lr=0.3, epochs=4, val_loader=val_loader,
                           checkpoint_every_steps=3, keep_last_k=2, config=config, callbacks=[recorder],
                           class_names=["bg", "a", "b"])
    history = []
    trainer.callbacks.append(type("Keep", (Callback,), {
        "on_evaluate_end": lambda self, t, m: history.append((t.step, m["miou"], m["pixel_accuracy"]))})())
    trainer.fit()
    run = tmp_path / "run"
    # keep-last-k history files: the two newest of steps 3, 4, 6, 8, 9, 12, 15, 16
    assert sorted(p.name for p in run.glob("step-*.pt")) == ["step-00000015.pt", "step-00000016.pt"]
    last = torch.load(run / "last.pt", weights_only=True)
    assert (last["epoch"], last["batches_done"], last["step"]) == (4, 0, 16)
    assert last["config"] == config and last["class_names"] == ["bg", "a", "b"]
    assert_same_weights(last["model"], trainer.model.state_dict(), atol=0)
    # metrics.csv: one header, one row per epoch, the values the evaluations reported
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16]
    assert [float(r["miou"]) for r in rows] == [m for _, m, _ in history]
    assert [float(r["pixel_accuracy"]) for r in rows] == [a for _, _, a in history]
    assert (run / "metrics.csv").read_text().count("epoch,step,train_loss") == 1
    # best.pt holds the evaluation with the highest mIoU (the first one, on ties)
    best_value = max(m for _, m, _ in history)
    best_step = next(s for s, m, _ in history if m == best_value)
    best = load_checkpoint(run / "best.pt")
    assert best["step"] == best_step and best["val_metrics"]["miou"] == best_value
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text()) == config


def test_refuses_a_run_folder_that_holds_checkpoints(tmp_path):
    images, masks = uneven_void_batch()
    make_trainer(tmp_path, tiny_net(), images, masks, 4).fit()
    with pytest.raises(FileExistsError, match=r"run folder .*run already holds checkpoints.*--resume"):
        make_trainer(tmp_path, tiny_net(), images, masks, 4).fit()


def test_resume_after_an_epoch_matches_an_uninterrupted_run(tmp_path):
    images, masks = uneven_void_batch(n=8)

    def run(folder, epochs, resume=False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(6, 3, 1))
        loader = DataLoader(TensorDataset(images, masks), batch_size=2, shuffle=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        trainer = Trainer(model, CE, optimizer, loader, num_classes=3, run_dir=tmp_path / folder,
                          device="cpu", epochs=epochs, resume=resume, progress_bar=False, print_table=False,
                          seed=5)
        trainer.fit()
        return trainer

    straight = run("straight", 3)
    run("stopped", 1)
    resumed = run("stopped", 3, resume=True)
    assert resumed.step == straight.step == 12
    assert_same_weights(resumed.model.state_dict(), straight.model.state_dict(), atol=0)


def test_resume_falls_back_to_history_when_last_is_damaged(tmp_path):
    images, masks = uneven_void_batch()
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 2, epochs=2, keep_last_k=3)
    trainer.fit()
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("step-*.pt")) == ["step-00000002.pt", "step-00000004.pt"]
    # step-00000004.pt holds the same step as last.pt, in a file of its own: damage in place hits one
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:100])  # as if the disk lost it
    path, state = find_resume_checkpoint(run)
    assert path.name == "step-00000004.pt" and state["step"] == 4


def test_option_errors_name_the_option(tmp_path):
    images, masks = uneven_void_batch()
    for options, message in [({"amp": "fp8"}, "train.amp: expected one of 'bf16', 'fp16' or null, got"),
                             ({"grad_accum_steps": 0}, "train.grad_accum_steps: expected an integer >= 1"),
                             ({"micro_batch_size": "big"}, "train.micro_batch_size: expected an integer"),
                             ({"limit_batches": 0.5}, "train.limit_batches: expected an integer >= 1"),
                             ({"epoch": 3}, r"train.epoch: unknown key \(did you mean 'epochs'\?\)"),
                             ({"class_names": ["a"]}, "class_names has 1 names")]:
        with pytest.raises(ValueError, match=message):
            make_trainer(tmp_path, tiny_net(), images, masks, 4, **options)
    with pytest.raises(ValueError, match="custom sampler"):
        sampler = torch.utils.data.WeightedRandomSampler([1.0] * 4, 4)
        Trainer(tiny_net(), CE, torch.optim.SGD(tiny_net().parameters(), lr=1),
                DataLoader(TensorDataset(images, masks), batch_size=2, sampler=sampler), num_classes=3,
                run_dir=tmp_path / "x")
    assert math.isfinite(1.0)


def test_trainer_options_are_the_config_train_section():
    """One home for the training options: the Trainer's defaults are the schema's, key for key."""
    images, masks = uneven_void_batch()
    loader = DataLoader(TensorDataset(images, masks), batch_size=2)
    trainer = Trainer(tiny_net(), CE, torch.optim.SGD(tiny_net().parameters(), lr=1), loader, num_classes=3,
                      device="cpu")
    defaults = {key: field.default for key, field in SCHEMA["train"].items()}
    assert vars(trainer.options) == {**defaults, "device": "cpu"}
    assert trainer.options.keep_last_k == validate_config({})["train"]["keep_last_k"]


def test_tensorboard_logger_writes_scalars_and_purges_after_a_resume(tmp_path, monkeypatch):
    """TensorBoard is optional (not installed here): a stand-in SummaryWriter records the calls."""
    import sys
    import types

    writers = []

    class RecordingWriter:
        def __init__(self, log_dir, purge_step=None):
            self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
            writers.append(self)

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, step, value))

        def flush(self):
            pass

        def close(self):
            self.closed = True

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = RecordingWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    monkeypatch.setattr("segkit.trainer.trainer.tensorboard_available", lambda: True)
    images, masks = uneven_void_batch()
    val_loader = DataLoader(TensorDataset(images, masks), batch_size=4)
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 2, val_loader=val_loader)
    trainer.fit()
    writer = writers[0]
    assert writer.log_dir == tmp_path / "run" / "tensorboard" and writer.purge_step is None and writer.closed
    losses = [(step, value) for tag, step, value in writer.scalars if tag == "train/loss"]
    assert [step for step, _ in losses] == [1, 2]
    miou = [value for tag, _, value in writer.scalars if tag == "val/miou"]
    assert miou == [trainer.val_metrics["miou"]]
    resumed = make_trainer(tmp_path, tiny_net(), images, masks, 2, val_loader=val_loader, epochs=2,
                           resume=True)
    resumed.fit()
    assert writers[1].purge_step == 2  # events after the checkpoint's step are dropped


def test_augmentation_and_weights_do_not_depend_on_num_workers(tmp_path):
    """Every sample is loaded with RNGs seeded by (seed, epoch, index): 0 or 2 worker processes load the
    same augmented batches, so training gives bitwise the same weights."""

    def train(folder, workers):
        torch.manual_seed(0)
        model = tiny_net()
        loader = DataLoader(ToyShapes(12, augment=True), batch_size=4, shuffle=True, num_workers=workers)
        trainer = Trainer(model, CE, torch.optim.SGD(model.parameters(), lr=0.5), loader, num_classes=3,
                          run_dir=tmp_path / folder, device="cpu", epochs=2, progress_bar=False)
        trainer.fit()
        return model.state_dict()

    assert_same_weights(train("workers0", 0), train("workers2", 2), atol=0)


def test_resume_refuses_a_different_data_order(tmp_path):
    images, masks = uneven_void_batch()
    make_trainer(tmp_path, tiny_net(), images, masks, 2).fit()
    trainer = make_trainer(tmp_path, tiny_net(), images, masks, 4, epochs=2, resume=True)
    with pytest.raises(ValueError, match="batch_size.*keep seed, batch size and process count"):
        trainer.fit()
