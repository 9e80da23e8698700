"""Benchmark: segkit.metrics.ConfusionMatrix.update vs torchmetrics' MulticlassConfusionMatrix.update.

Both accumulate a 21-class confusion matrix over the same batches of 8 x 512 x 512 label maps (about 10%
void pixels, 255), the evaluation hot path. torchmetrics runs with validate_args=False (its fastest
setting; with validation it calls torch.unique on every batch). segkit always validates value ranges.

Run:  .venv/bin/python bench/metrics.py [--batches 4] [--repeats 5] [--device cpu] [--logits]

Prints the median time per batch, Mpixel/s for each, and the ratio segkit / torchmetrics (> 1: segkit is
faster), after checking that both give the same matrix.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from segkit.metrics import ConfusionMatrix


def make_batches(num_batches, batch, size, num_classes, void_fraction, device, logits):
    """`num_batches` pairs (pred, target) on `device`: target (batch, size, size) int64 with void 255,
    pred int64 labels of the same shape, or float logits (batch, num_classes, size, size)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(num_batches):
        target = torch.randint(0, num_classes, (batch, size, size), generator=generator)
        target[torch.rand(batch, size, size, generator=generator) < void_fraction] = 255
        if logits:
            pred = torch.randn(batch, num_classes, size, size, generator=generator)
        else:
            pred = torch.randint(0, num_classes, (batch, size, size), generator=generator)
        batches.append((pred.to(device), target.to(device)))
    return batches


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_updates(update, batches, repeats: int, device) -> list[float]:
    """Seconds per batch for each repetition (one repetition = one pass over all batches), after a warm-up."""
    for pred, target in batches[:2]:
        update(pred, target)
    synchronize(device)
    per_batch = []
    for _ in range(repeats):
        start = time.perf_counter()
        for pred, target in batches:
            update(pred, target)
        synchronize(device)
        per_batch.append((time.perf_counter() - start) / len(batches))
    return per_batch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--void", type=float, default=0.1, help="fraction of void (255) pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--logits", action="store_true", help="pass (N, C, H, W) logits instead of labels")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    C = args.num_classes
    batches = make_batches(args.batches, args.batch_size, args.size, C, args.void, args.device, args.logits)
    pixels = args.batch_size * args.size * args.size

    ours = ConfusionMatrix(C, ignore_index=255, device=args.device)
    theirs = MulticlassConfusionMatrix(num_classes=C, ignore_index=255, validate_args=False).to(args.device)

    # Same result first: one pass over the batches with each.
    for pred, target in batches:
        ours.update(pred, target)
        theirs.update(pred, target)
    same = torch.equal(ours.matrix.cpu(), theirs.compute().cpu())
    print(f"same matrix as torchmetrics: {same}")
    if not same:
        raise SystemExit("segkit and torchmetrics disagree: the benchmark is meaningless")

    results = {}
    # Interleave the two so that a noisy, shared machine hurts both alike.
    times = {"segkit": [], "torchmetrics": []}
    for _ in range(args.repeats):
        times["segkit"] += time_updates(ours.update, batches, 1, args.device)
        times["torchmetrics"] += time_updates(theirs.update, batches, 1, args.device)
    for name, seconds in times.items():
        median = statistics.median(seconds)
        results[name] = pixels / median / 1e6
        print(f"{name:>12}: {1000 * median:8.2f} ms per batch   {results[name]:8.1f} Mpixel/s   "
              f"(best {pixels / min(seconds) / 1e6:.1f})")
    kind = "logits" if args.logits else "labels"
    print(f"batch {args.batch_size}x{args.size}x{args.size}, {C} classes, {args.void:.0%} void, {kind}, "
          f"device {args.device}, {torch.get_num_threads()} threads")
    print(f"ratio segkit / torchmetrics (throughput): {results['segkit'] / results['torchmetrics']:.2f}x")


if __name__ == "__main__":
    main()
