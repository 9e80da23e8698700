"""Benchmark: the Trainer's overhead over a bare PyTorch training loop doing the same work.

Both train the same model (segkit's UNet, same initial weights) on the same in-memory images with the
same loss (cross-entropy, ignore_index=255), optimizer (SGD, momentum 0.9) and per-step poly schedule:

- bare loop: `for images, masks in DataLoader(shuffle=True): forward, loss, backward, step, zero_grad,
  scheduler.step()` — nothing else;
- Trainer: `Trainer(...).fit()` with its defaults: progress bar, metrics.csv, last.pt + a history
  checkpoint written atomically (fsync) after every epoch, the seeded resumable sampler with per-sample
  seeding, the non-void pixel count and the NaN check (one host sync) per step. No validation set, so
  neither side evaluates.

First both run one epoch without shuffling and the script stops unless they end with the same weights
(the same work is being done). Then they are timed in alternation, `--repeats` pairs (bare, Trainer).
Printed: images/s of each (median), and the median over pairs of the ratio Trainer / bare (1.0 = no
overhead), for wall-clock time and for the CPU time of this process. On a shared machine the wall-clock
rate swings with the neighbours' load; the CPU time (with --threads 1) counts only the work done, but
leaves out waiting for the disk (the checkpoints' fsync), which the wall-clock time includes.

`--model conv1x1` replaces the UNet by a single 1x1 convolution: the step then costs almost nothing and
what remains is the Trainer's fixed cost per image, per step and per epoch.

Run:  .venv/bin/python bench/trainer.py [--device cpu] [--threads 1] [--size 96] [--batch 8]
      [--images 256] [--epochs 1] [--repeats 5] [--base-channels 16] [--model unet|conv1x1]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from segkit.data.masks import VOID_INDEX
from segkit.models import build_model
from segkit.trainer import Trainer


def make_data(images: int, size: int, num_classes: int) -> TensorDataset:
    """Random images (images, 3, size, size) float and masks with classes in blocks and 10% void."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(images, 3, size, size, generator=generator)
    coarse = torch.randint(0, num_classes, (images, 1, size // 8, size // 8), generator=generator)
    masks = nn.functional.interpolate(coarse.float(), size=(size, size), mode="nearest")[:, 0].long()
    masks[torch.rand(images, size, size, generator=generator) < 0.1] = 255
    return TensorDataset(x, masks)


def model_and_optimizer(model0: nn.Module, device):
    """A fresh copy of the initial model and an SGD optimizer on it."""
    model = copy.deepcopy(model0).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


def poly_schedule(optimizer, total_steps: int):
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=0.9)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Clock:
    """Wall-clock and CPU seconds of this process between start() and stop()."""

    def __init__(self, device):
        self.device = device

    def start(self) -> None:
        synchronize(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        synchronize(self.device)
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_bare(model0, dataset, args, shuffle=True) -> tuple[tuple[float, float], nn.Module]:
    """The bare loop; returns ((wall seconds, CPU seconds), trained model)."""
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=shuffle,
                        generator=torch.Generator().manual_seed(0))
    model, optimizer = model_and_optimizer(model0, args.device)
    scheduler = poly_schedule(optimizer, args.epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss(ignore_index=VOID_INDEX)
    clock = Clock(args.device)
    clock.start()
    model.train()
    for _ in range(args.epochs):
        for images, masks in loader:
            images, masks = images.to(args.device), masks.to(args.device)
            loss = loss_fn(model(images), masks)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
    return clock.stop(), model


def run_trainer(model0, dataset, args, shuffle=True) -> tuple[tuple[float, float], nn.Module]:
    """The same training through Trainer.fit() in a fresh run folder; returns (times, trained model)."""
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=shuffle)
    model, optimizer = model_and_optimizer(model0, args.device)
    loss_fn = nn.CrossEntropyLoss(ignore_index=VOID_INDEX)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, loss_fn, optimizer, loader, num_classes=args.classes,
                          run_dir=f"{run_dir}/run", epochs=args.epochs, device=args.device,
                          make_scheduler=poly_schedule)
        clock = Clock(args.device)
        clock.start()
        with contextlib.redirect_stderr(io.StringIO()):  # the progress bar: drawn, not shown
            trainer.fit()
        return clock.stop(), model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=256, help="images in the training set")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs (bare, Trainer)")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--base-channels", type=int, default=16, help="UNet width (depth 3)")
    parser.add_argument("--model", choices=["unet", "conv1x1"], default="unet")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "unet":
        model0 = build_model("unet", num_classes=args.classes, base_channels=args.base_channels, depth=3)
        described = f"UNet(base {args.base_channels}, depth 3)"
    else:
        model0, described = nn.Conv2d(3, args.classes, 1), "one 1x1 conv"
    dataset = make_data(args.images, args.size, args.classes)

    # Same work: one epoch in file order gives the same weights.
    check = argparse.Namespace(**{**vars(args), "epochs": 1})
    _, bare = run_bare(model0, dataset, check, shuffle=False)
    _, trained = run_trainer(model0, dataset, check, shuffle=False)
    for (name, a), b in zip(bare.state_dict().items(), trained.state_dict().values(), strict=True):
        if not torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5):
            raise SystemExit(f"the bare loop and the Trainer disagree on {name}: not the same work")

    images = args.epochs * args.images
    bare_times, trainer_times = [], []
    for _ in range(args.repeats):  # alternate, so a busy neighbour slows both alike
        bare_times.append(run_bare(model0, dataset, args)[0])
        trainer_times.append(run_trainer(model0, dataset, args)[0])
    steps = args.epochs * -(-args.images // args.batch)
    print(f"{described}, {args.images} images {args.size}x{args.size}, batch "
          f"{args.batch}, {args.epochs} epochs = {steps} steps, device {args.device}, "
          f"{torch.get_num_threads()} threads, {args.repeats} pairs")
    for clock, index in (("wall-clock", 0), ("CPU time", 1)):
        bare_rates = [images / t[index] for t in bare_times]
        trainer_rates = [images / t[index] for t in trainer_times]
        ratios = [t / b for t, b in zip(trainer_rates, bare_rates, strict=True)]
        ratio = statistics.median(ratios)
        print(f"{clock:10s}: bare {statistics.median(bare_rates):7.1f} images/s, Trainer "
              f"{statistics.median(trainer_rates):7.1f} images/s; ratio Trainer / bare {ratio:.3f} "
              f"(overhead {100 * (1 - ratio):+.1f}%; pairs {min(ratios):.3f} to {max(ratios):.3f})")


if __name__ == "__main__":
    main()
