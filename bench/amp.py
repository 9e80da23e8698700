"""Mixed precision and channels_last: training images/s of the VOC DeepLabV3-ResNet50 step, as ratios.

The step is `Trainer.train_step` with the model, loss, optimizer and schedule of a shipped config
(default segkit/configs/voc_deeplabv3_resnet50.yaml: DeepLabV3-ResNet50, output stride 16, aux head with
weight 0.5, SGD momentum 0.9, poly schedule; pretrained_backbone off: the weights do not change the speed).
Each setting is the same Trainer with other options:

  fp32        amp=None. On Ampere and newer GPUs PyTorch runs fp32 convolutions in TF32 by default
              (torch.backends.cudnn.allow_tf32); --no-tf32 turns that off for a strict fp32 baseline.
  bf16        amp="bf16": torch.autocast with bfloat16.
  fp16        amp="fp16": torch.autocast with float16 and a GradScaler.
  <x>+cl      the same with channels_last=True: weights and images in NHWC memory layout.

What is timed: forward, loss, backward, optimizer and schedule step, and the Trainer's own per-step work
(non-void pixel count, NaN check), on one fixed batch of --batch random images of --size x --size with
block masks and 10% void. Data loading is left out: bench/loader.py measures it.

First every setting takes one step from the same initial weights on the same batch (dropout off, so that
no random mask differs), and the script stops unless each loss agrees with fp32's within a relative
tolerance (2% for bf16, 1% for fp16, 0.5% for fp32 in another layout): all settings do the same work.
Then --rounds rounds; in each round every setting, in turn, runs --warmup untimed steps and --steps timed
steps (alternating the settings, so that a change in the machine's clock or load hits all alike).
Printed per setting: median images/s over the rounds, ms per step, peak memory of a step on a GPU, and
the ratio to fp32 (above 1: faster than fp32).

Published anchors: automatic mixed precision trains segmentation networks 1.4-2x faster than fp32 on
tensor-core GPUs, channels_last adds 8-35% on top (NVIDIA and PyTorch performance guides).

    .venv/bin/python bench/amp.py                                 # on a GPU: batch 8 at 512 x 512
    .venv/bin/python bench/amp.py --device cpu --size 128 --batch 2 --steps 1 --rounds 1   # a CPU check
    .venv/bin/python bench/amp.py --settings fp32 bf16 bf16+cl --cudnn-benchmark
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segkit.build import (  # noqa: E402
    loss_from_config,
    model_from_config,
    optimizer_from_config,
    scheduler_from_config,
    without_pretrained_weights,
)
from segkit.config import load_config  # noqa: E402
from segkit.trainer import Trainer  # noqa: E402

# setting name -> (Trainer amp option, Trainer channels_last option)
SETTINGS = {
    "fp32": (None, False),
    "fp32+cl": (None, True),
    "bf16": ("bf16", False),
    "bf16+cl": ("bf16", True),
    "fp16": ("fp16", False),
    "fp16+cl": ("fp16", True),
}
DEFAULT_SETTINGS = ("fp32", "bf16", "fp16", "bf16+cl", "fp16+cl")
# Largest relative difference from fp32's loss on the first step that still counts as "the same work".
LOSS_TOLERANCE = {None: 0.005, "bf16": 0.02, "fp16": 0.01}
NUM_CLASSES = 21


def make_batch(batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (batch, 3, size, size) ~ N(0, 1) (already "normalised"), masks (batch, size, size) int64
    with classes 0..20 in 8 x 8-pixel-cell blocks and 10% void (255)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=generator)
    cells = max(1, size // 8)
    coarse = torch.randint(0, NUM_CLASSES, (batch, 1, cells, cells), generator=generator).float()
    masks = nn.functional.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()
    masks[torch.rand(batch, size, size, generator=generator) < 0.1] = 255
    return images, masks


def load_bench_config(name: str) -> dict:
    """The shipped config `name` with every pretrained-weights option off (nothing is downloaded)."""
    return without_pretrained_weights(load_config(name))


def make_trainer(config: dict, initial_model: nn.Module, batch, setting: str, device: str, run_dir: str):
    """A Trainer for `setting` on a copy of `initial_model`, fed with the single batch `batch`."""
    amp, channels_last = SETTINGS[setting]
    model = copy.deepcopy(initial_model)
    loader = DataLoader(TensorDataset(*batch), batch_size=len(batch[0]))
    trainer = Trainer(model, loss_from_config(config), optimizer_from_config(config, model), loader,
                      num_classes=NUM_CLASSES, run_dir=run_dir, device=device, amp=amp,
                      channels_last=channels_last, progress_bar=False, print_table=False, tensorboard=False,
                      make_scheduler=lambda optimizer, _: scheduler_from_config(config, optimizer, 1_000_000))
    return trainer


def without_dropout(model: nn.Module) -> nn.Module:
    """A copy of `model` whose dropout layers drop nothing (p = 0)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return model


def first_step_losses(config: dict, initial_model: nn.Module, batch, settings, device: str) -> dict:
    """{setting: loss of one train_step from `initial_model`'s weights on `batch`}.

    Dropout is switched off for this comparison: its random masks are drawn differently for another
    dtype or memory layout, which would hide the numerical difference being checked.
    """
    losses = {}
    model = without_dropout(initial_model)
    with tempfile.TemporaryDirectory() as work:
        for setting in settings:
            trainer = make_trainer(config, model, batch, setting, device, f"{work}/{setting}")
            losses[setting] = trainer.train_step([batch])
            del trainer
    return losses


def check_same_work(losses: dict) -> list[str]:
    """Problems (empty: none) where a setting's first loss differs from fp32's beyond its tolerance."""
    reference = losses["fp32"]
    problems = []
    for setting, loss in losses.items():
        amp = SETTINGS[setting][0]
        difference = abs(loss - reference) / abs(reference)
        if not difference <= LOSS_TOLERANCE[amp]:  # also catches NaN
            problems.append(f"{setting}: first-step loss {loss:.5f} vs fp32 {reference:.5f} (relative "
                            f"difference {difference:.4f} > {LOSS_TOLERANCE[amp]})")
    return problems


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_steps(trainer: Trainer, batch, warmup: int, steps: int, device: str) -> tuple[float, int | None]:
    """(seconds per step over `steps` timed steps after `warmup` untimed ones, peak bytes allocated
    during the timed steps above what was allocated before them (CUDA only, else None))."""
    for _ in range(warmup):
        trainer.train_step([batch])
    synchronize(device)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step([batch])  # ends with a host sync (the loss is read for the NaN check)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    return seconds, (torch.cuda.max_memory_allocated() - before) if cuda else None


def describe_device(device: str) -> str:
    if torch.device(device).type != "cuda":
        return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    return (f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, TF32 convolutions "
            f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}, cudnn.benchmark "
            f"{'on' if torch.backends.cudnn.benchmark else 'off'}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="voc_deeplabv3_resnet50", help="a shipped config or a YAML path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=8, help="images per step")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per setting and round")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all settings (median reported)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(DEFAULT_SETTINGS))
    parser.add_argument("--no-tf32", action="store_true", help="strict fp32 convolutions and matmuls")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN pick the fastest algorithms per shape (segkit train leaves it off)")
    args = parser.parse_args(argv)
    settings = ["fp32"] + [s for s in args.settings if s != "fp32"]  # fp32 is the reference: always run
    torch.backends.cudnn.allow_tf32 = not args.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = False if args.no_tf32 else torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    config = load_bench_config(args.config)
    torch.manual_seed(0)
    initial_model = model_from_config(config, num_classes=NUM_CLASSES)
    batch = make_batch(args.batch, args.size)
    print(f"{args.config}: {config['model']['name']} {config['model']['options']}")
    print(f"batch {args.batch} x {args.size} x {args.size}; device: {describe_device(args.device)}")

    losses = first_step_losses(config, initial_model, batch, settings, args.device)
    problems = check_same_work(losses)
    print("first-step losses: " + ", ".join(f"{s} {v:.5f}" for s, v in losses.items()))
    if problems:
        raise SystemExit("the settings do not do the same work:\n  " + "\n  ".join(problems))

    seconds = {setting: [] for setting in settings}
    memory = {}
    with tempfile.TemporaryDirectory() as work:
        trainers = {s: make_trainer(config, initial_model, batch, s, args.device, f"{work}/{s}")
                    for s in settings}
        for _ in range(args.rounds):
            for setting in settings:
                trainer = trainers[setting]
                step_seconds, peak = time_steps(trainer, batch, args.warmup, args.steps, args.device)
                seconds[setting].append(step_seconds)
                memory[setting] = None if peak is None else max(peak, memory.get(setting) or 0)

    rates = {s: [args.batch / t for t in seconds[s]] for s in settings}
    base = statistics.median(rates["fp32"])
    print(f"\n{'setting':9s} {'images/s':>9s} {'ms/step':>8s} {'step memory':>12s} {'vs fp32':>8s}  (rounds)")
    for setting in settings:
        rate = statistics.median(rates[setting])
        gib = f"{memory[setting] / 2**30:.1f} GiB" if memory[setting] is not None else "-"
        spread = ", ".join(f"{r:.1f}" for r in rates[setting])
        print(f"{setting:9s} {rate:9.2f} {1000 * args.batch / rate:8.1f} {gib:>12s} {rate / base:7.2f}x"
              f"  ({spread})")


if __name__ == "__main__":
    main()
