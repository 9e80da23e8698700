"""A tiny training run for the Trainer tests, started as a subprocess (or under torchrun).

    python tests/trainer_script.py RUN_DIR [--resume] [--epochs 3] [--pause-after-step K]
                                   [--hang-at-save N] [--dump-metrics]

Everything is deterministic on CPU: a generated in-memory dataset whose augmentation draws from torch,
`random` and numpy, a small conv net with dropout, AdamW and a polynomial schedule. It prints
"STEP n" after every optimizer step; `--pause-after-step K` makes it wait (for SIGKILL) after step K.
`--hang-at-save N` makes the N-th torch.save of a checkpoint write half of its bytes and then hang, to test
a kill in the middle of a checkpoint write. `--dump-metrics` writes each rank's confusion matrix and
metrics after a final evaluation to RUN_DIR/rank<r>.json (used by the DDP test).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segkit.trainer import Callback, Trainer, cleanup_distributed  # noqa: E402

NUM_CLASSES = 3
SIZE = 16


def make_sample(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (3, 16, 16) float and mask (16, 16) int64: a bright square (class 1 or 2), void border."""
    generator = torch.Generator().manual_seed(1000 + index)
    image = 0.1 * torch.randn(3, SIZE, SIZE, generator=generator)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.int64)
    cls = 1 + index % 2
    top, left = (int(v) for v in torch.randint(0, SIZE - 6, (2,), generator=generator))
    image[cls, top : top + 6, left : left + 6] += 1.0
    mask[top : top + 6, left : left + 6] = cls
    mask[top + 6 : top + 7, left : left + 6] = 255  # a void edge, like VOC object borders
    return image, mask


class ToyShapes(Dataset):
    """`size` generated samples; `augment` adds random flips and noise drawn from torch, random and numpy."""

    def __init__(self, size: int, offset: int = 0, augment: bool = False):
        self.samples = [make_sample(offset + i) for i in range(size)]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image, mask = self.samples[index]
        if self.augment:
            if torch.rand(()) < 0.5:
                image, mask = image.flip(-1), mask.flip(-1)
            if random.random() < 0.5:
                image, mask = image.flip(-2), mask.flip(-2)
            image = image + 0.05 * torch.randn_like(image) + float(np.random.uniform(-0.05, 0.05))
        return image, mask


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.1), nn.Conv2d(8, NUM_CLASSES, 1)
    )


class PrintSteps(Callback):
    """Prints STEP n after every step (flushed); after step `pause_after` waits to be killed."""

    def __init__(self, pause_after: int):
        self.pause_after = pause_after

    def on_step_end(self, trainer) -> None:
        print(f"STEP {trainer.step}", flush=True)
        if trainer.step == self.pause_after:
            time.sleep(600)


def hang_at_save(number: int) -> None:
    """Make the `number`-th torch.save write half of its bytes, flush, print WRITING, then hang."""
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] < number:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        print("WRITING", flush=True)
        time.sleep(600)

    torch.save = save


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pause-after-step", type=int, default=0)
    parser.add_argument("--hang-at-save", type=int, default=0)
    parser.add_argument("--dump-metrics", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # bitwise reproducibility across runs
    if args.hang_at_save:
        hang_at_save(args.hang_at_save)

    model = make_model()
    train_loader = DataLoader(ToyShapes(20, augment=True), batch_size=4, shuffle=True)
    val_loader = DataLoader(ToyShapes(7, offset=100), batch_size=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2, weight_decay=1e-4)
    trainer = Trainer(
        model, nn.CrossEntropyLoss(ignore_index=255), optimizer, train_loader, val_loader,
        num_classes=NUM_CLASSES, class_names=["background", "red", "green"], run_dir=args.run_dir,
        epochs=args.epochs, device="cpu", checkpoint_every_steps=2, keep_last_k=2, seed=7,
        resume=args.resume, progress_bar=False, print_table=False,
        config={"script": "tests/trainer_script.py", "epochs": args.epochs},
        callbacks=[PrintSteps(args.pause_after_step)],
        make_scheduler=lambda optimizer, total_steps: torch.optim.lr_scheduler.PolynomialLR(
            optimizer, total_iters=total_steps, power=0.9),
    )
    trainer.fit()
    if args.dump_metrics:
        metrics = trainer.evaluate()
        result = {"matrix": trainer.confusion.matrix.tolist(), "miou": metrics["miou"],
                  "world_size": trainer.dist.world_size}
        Path(args.run_dir, f"rank{trainer.dist.rank}.json").write_text(json.dumps(result))
    cleanup_distributed()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
