"""Does the data pipeline keep the model fed? Loader images/s next to training-step images/s, same run.

For each shipped VOC config (voc_deeplabv3_resnet50, voc_unet), on a synthetic VOC-sized set written to a
temporary folder in the VOC layout (500 x 375 JPEGs and palette PNG masks; VOC itself is not needed):

  loader   the config's training pipeline exactly as `segkit train` builds it: segkit.build.build_dataset
           (JPEG + PNG decode, ScaleJitter, pad + crop at data.crop_size, flip, normalise) and
           segkit.build.train_loader (data.batch_size, data.num_workers workers, collation). Images/s
           over --epochs whole epochs after one untimed warm-up epoch (worker start-up).
  cached   the same with segkit.data.CachedDataset: decoded images and masks read from a memory-mapped
           cache, the (all random) augmentation still done per sample.
  1 proc   both again in this process alone (num_workers=0, one torch thread like a worker): images per
           wall-clock second and per CPU second of this process, i.e. what one worker delivers on a core
           of its own. Loader figures are medians of --repeats runs, plain and cached in alternation.
  step     Trainer.train_step of segkit.build.build_trainer(config) (the config's model, loss, optimizer
           and amp; pretrained_backbone off, since nothing is downloaded) on batches at the config's crop
           size. On a CPU a step of 16 images takes minutes, so --step-batch images per step (default 2)
           are timed and the rate is reported per image.

It prints loader / step (goal: at least 1.5) and cached / uncached, both as ratios, then estimates how
many workers a GPU needs: the model's training FLOPs per image (torch.utils.flop_counter, on the meta
device) against ResNet-50's at 224 x 224, scaled from NVIDIA's published ResNet-50 training throughput
(DeepLearningExamples, PyTorch ResNet-50 v1.5, one GPU: A100 80GB 2470 img/s with AMP, 938 img/s TF32;
V100 16GB 1200 img/s AMP, 367 img/s FP32). Segmentation networks use a GPU less efficiently than
ResNet-50 at 224 (large activations, upsampling, batch norm are memory-bound), so these step rates are
upper bounds and the worker counts derived from them err on the safe side. An estimate, not a measurement.

    .venv/bin/python bench/loader.py                              # both configs, about 6 minutes here
    .venv/bin/python bench/loader.py --configs voc_unet --epochs 2 --steps 1
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image, ImageDraw
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segkit.build import build_dataset, build_trainer, train_loader  # noqa: E402
from segkit.config import load_config  # noqa: E402
from segkit.data import CachedDataset, VOCSegmentation, train_transforms, write_mask  # noqa: E402
from segkit.models import build_model  # noqa: E402

# One GPU, training images/s of ResNet-50 v1.5 at 224 x 224 (NVIDIA DeepLearningExamples, PyTorch).
PUBLISHED_RESNET50 = {"A100 80GB, AMP": 2470, "A100 80GB, TF32": 938, "V100 16GB, AMP": 1200,
                      "V100 16GB, FP32": 367}  # fmt: skip
GOAL = 1.5


def make_voc_like(root: Path, count: int, seed: int = 0) -> None:
    """`count` 500 x 375 JPEGs (quality 90, smooth colour fields, texture, noise, 1-3 filled ellipses)
    with palette masks (the ellipses' classes, a 5-pixel void outline), in the VOC layout; split 'train'
    holds them all, 'val' the first 4."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = 500, 375
    ids = [f"2012_{i:06d}" for i in range(count)]
    for image_id in ids:
        grid = rng.uniform(0, 255, (4, 5, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC), dtype=np.float32)
        coarse = (rng.normal(0, 40, (height // 4, width // 4, 3)) + 128).clip(0, 255).astype(np.uint8)
        texture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), np.float32)
        texture -= 128
        pixels = (base + texture + rng.normal(0, 9, (height, width, 3))).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        mask = Image.new("L", (width, height), 0)
        draw_image, draw_mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
        for _ in range(rng.integers(1, 4)):
            x0, y0 = int(rng.integers(0, width - 100)), int(rng.integers(0, height - 100))
            box = [x0, y0, x0 + int(rng.integers(40, 200)), y0 + int(rng.integers(40, 200))]
            draw_image.ellipse(box, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            draw_mask.ellipse(box, fill=int(rng.integers(1, 21)), outline=255, width=5)
        image.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
        write_mask(voc / "SegmentationClass" / f"{image_id}.png", np.asarray(mask))
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[:4]) + "\n")


def loader_rate(loader, epochs: int) -> tuple[float, float, float]:
    """(images/s, seconds of the untimed first epoch, images per CPU-second of this process).

    The first epoch is a warm-up (worker start-up; meanwhile the workers prepare batches in advance, which
    would flatter a rate measured from its first batch). The next `epochs` epochs are timed whole,
    including each epoch's refill of the workers' queues, as in training (persistent workers).
    """
    start = time.perf_counter()
    for _ in loader:
        pass
    warm_up = time.perf_counter() - start
    start, cpu_start, images = time.perf_counter(), time.process_time(), 0
    for _ in range(epochs):
        for images_batch, _ in loader:
            images += len(images_batch)
    wall = time.perf_counter() - start
    return images / wall, warm_up, images / max(time.process_time() - cpu_start, 1e-9)


def step_rate(config: dict, batch_size: int, steps: int) -> tuple[float, float]:
    """(images/s of Trainer.train_step on batches of `batch_size`, seconds per step), one warm-up step."""
    config["train"]["print_table"] = False
    config["train"]["progress_bar"] = False
    trainer = build_trainer(config)
    images, masks = next(iter(trainer.train_loader))
    batch = [(images[:batch_size], masks[:batch_size])]
    trainer.train_step(batch)  # warm-up: allocations, autocast caches
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    seconds = (time.perf_counter() - start) / steps
    return batch_size / seconds, seconds


def training_gflop(make_model, size: int) -> float:
    """Forward + backward GFLOP per image of `make_model()` in training mode at size x size, counted by
    torch.utils.flop_counter on the meta device (shapes only: nothing is computed)."""
    with torch.device("meta"):
        model = make_model()
        images = torch.randn(2, 3, size, size)  # two images: batch norm needs more than one value
    model.train()
    with FlopCounterMode(display=False) as counter:
        output = model(images)
        outputs = output.values() if isinstance(output, dict) else [output]
        sum(o.sum() for o in outputs).backward()
    return counter.get_total_flops() / 2 / 1e9


def measure(name: str, root: Path, work: Path, args) -> dict:
    # train.epochs only sets the schedule's length (long enough for the warm-up), not the cost of a step
    overrides = [f"data.root={root}", f"run.dir={work / 'runs'}", "train.device=cpu", "train.epochs=1000"]
    if "deeplab" in name:
        overrides.append("model.options.pretrained_backbone=false")
    config = load_config(name, overrides)
    data = config["data"]
    workers = data["num_workers"] if args.workers is None else args.workers
    config["data"]["num_workers"] = workers
    result = {"name": name, "crop": data["crop_size"], "batch": data["batch_size"], "workers": workers}
    plain = build_dataset(config, "train", train=True)
    chain = train_transforms(crop_size=data["crop_size"], base_size=data["base_size"],
                             scale_range=tuple(data["scale_range"]), hflip=data["hflip"], vflip=data["vflip"],
                             mean=tuple(data["mean"]), std=tuple(data["std"]))  # fmt: skip
    start = time.perf_counter()
    cached = CachedDataset(VOCSegmentation(root, "train"), chain, cache_root=work / "cache", verbose=False)
    seconds = time.perf_counter() - start
    result["cache"] = f"cache built in {seconds:.1f} s" if cached.built else "cache reused"
    single = dict(config, data=dict(data, num_workers=0))
    runs = {key: [] for key in ("plain", "cached", "plain_1proc", "cached_1proc")}
    for _ in range(args.repeats):  # alternate, so that a busy neighbour slows both alike
        for label, dataset in (("plain", plain), ("cached", cached)):
            runs[label].append(loader_rate(train_loader(config, dataset), args.epochs))
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as in a DataLoader worker
            runs[label + "_1proc"].append(loader_rate(train_loader(single, dataset), args.epochs))
            torch.set_num_threads(threads)
    for key, values in runs.items():  # the median of each column over the repeats
        result[key] = tuple(float(np.median(column)) for column in zip(*values, strict=True))
    model = config["model"]
    options = {k: v for k, v in model["options"].items() if k != "pretrained_backbone"}
    result["gflop"] = training_gflop(lambda: build_model(model["name"], **options), data["crop_size"])
    result["amp"] = config["train"]["amp"]
    result["step"] = step_rate(dict(config, data=dict(data, num_workers=0)), args.step_batch, args.steps)
    return result


def report(results: list[dict], args, mean_kb: float) -> None:
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPU cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.images} synthetic 500x375 images "
          f"(mean JPEG {mean_kb:.0f} KB), {args.epochs} timed epochs after a warm-up epoch")  # fmt: skip
    resnet = training_gflop(torchvision.models.resnet50, 224)
    for r in results:
        plain, cached, step = r["plain"][0], r["cached"][0], r["step"][0]
        print(f"\n{r['name']}: crop {r['crop']}, batch {r['batch']}, {r['workers']} workers")
        print(f"  loader          {plain:8.1f} images/s   (warm-up epoch {r['plain'][1]:.1f} s)")
        warm_up = r["cached"][1]
        print(f"  loader, cached  {cached:8.1f} images/s   (warm-up epoch {warm_up:.1f} s; {r['cache']})")
        for label in ("plain", "cached"):
            wall, _, per_cpu = r[label + "_1proc"]
            print(f"  1 process, {label:<6} {wall:8.1f} images/s wall, {per_cpu:6.1f} images per CPU-second")
        print(f"  training step   {step:8.2f} images/s   ({args.step_batch} images per step, "
              f"{r['step'][1]:.1f} s per step, amp={r['amp']})")
        print(f"  ratio loader / step          {plain / step:8.1f}   (goal >= {GOAL})")
        print(f"  ratio cached loader / step   {cached / step:8.1f}")
        print(f"  ratio cached / uncached      {cached / plain:8.2f}   ({args.epochs} epochs, "
              f"{r['workers']} workers)")  # fmt: skip
        one_plain, one_cached = r["plain_1proc"][2], r["cached_1proc"][2]
        print(f"  ratio cached / uncached      {one_cached / one_plain:8.2f}   (1 process, per CPU-second)")
        print(f"  GPU estimate: {r['gflop']:.0f} GFLOP per image per step = {r['gflop'] / resnet:.1f} x "
              f"ResNet-50 at 224 ({resnet:.1f})")  # fmt: skip
        for gpu, rate in PUBLISHED_RESNET50.items():
            gpu_rate = rate * resnet / r["gflop"]
            need = math.ceil(GOAL * gpu_rate / one_plain)
            need_cached = math.ceil(GOAL * gpu_rate / one_cached)
            print(f"    {gpu:<16} <= {gpu_rate:6.1f} images/s -> {need:3d} workers ({need_cached} with the "
                  f"cache) at {one_plain:.0f} / {one_cached:.0f} images per worker-second")  # fmt: skip


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--configs", nargs="+", default=["voc_deeplabv3_resnet50", "voc_unet"])
    parser.add_argument("--images", type=int, default=100, help="synthetic training images (default 100)")
    parser.add_argument("--epochs", type=int, default=3, help="loader epochs to time (default 3)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3, help="loader measurements, median (default 3)")
    parser.add_argument("--step-batch", type=int, default=2, help="images per timed training step")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps after one warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # The configs ask for 8 workers whatever the machine: say so once instead of torch's repeated warning.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        root = work / "voc"
        start = time.perf_counter()
        make_voc_like(root, args.images)
        jpegs = list((root / "VOCdevkit" / "VOC2012" / "JPEGImages").iterdir())
        mean_kb = sum(p.stat().st_size for p in jpegs) / len(jpegs) / 1e3
        print(f"wrote {args.images} images in {time.perf_counter() - start:.1f} s", flush=True)
        results = []
        for name in args.configs:
            print(f"measuring {name} ...", flush=True)
            results.append(measure(name, root, work, args))
        report(results, args, mean_kb)


if __name__ == "__main__":
    main()
