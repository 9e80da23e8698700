"""`segkit data shapes` and `segkit data stats`: generate the synthetic dataset, print dataset statistics."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DATA_EXAMPLES = """\
examples:
  segkit data shapes                                  # write the shapes set to data/shapes
  segkit data shapes --out /tmp/shapes --seed 1 --size 96 --n-train 50 --n-val 20 --n-test 20
  segkit data shapes --if-missing                     # only when not already generated
  segkit data stats data/shapes --split train         # class and size statistics
  segkit data stats data --split val                  # VOC-2012 under data/VOCdevkit
  segkit data stats my_dataset                        # a folder with images/ and masks/
"""


def _run_shapes(args: argparse.Namespace) -> int:
    from segkit.data.shapes import default_shapes_dir, make_shapes, shapes_is_complete

    out_dir = Path(args.out) if args.out is not None else default_shapes_dir()
    params = dict(seed=args.seed, size=args.size, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test)
    if args.if_missing and shapes_is_complete(out_dir, **params):
        print(f"shapes dataset already complete in {out_dir} (nothing to do)")
        return 0
    start = time.perf_counter()
    make_shapes(out_dir, **params)
    seconds = time.perf_counter() - start
    print(
        f"wrote the shapes dataset to {out_dir} in {seconds:.1f} s: "
        f"train/val/test = {args.n_train}/{args.n_val}/{args.n_test} images of {args.size}x{args.size} "
        "(the test split has images only: the competition's test set comes from `segkit competition setup`)"
    )
    print(f"next: segkit data stats {out_dir} --split train")
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    from segkit.data.folder import FolderDataset
    from segkit.data.stats import dataset_stats
    from segkit.data.voc import VOCSegmentation

    root = Path(args.root)
    folder_layout = (root / "images").is_dir() or ((root / "data").is_dir() and (root / "labels").is_dir())
    if folder_layout:
        dataset = FolderDataset(root, split=args.split)
    else:
        dataset = VOCSegmentation(root, split=args.split or "train")
    print(dataset_stats(dataset).table())
    return 0


def add_data_commands(subparsers) -> None:
    """Register `segkit data shapes` and `segkit data stats`."""
    data = subparsers.add_parser(
        "data",
        help="generate the shapes dataset, print dataset statistics",
        description="Datasets: generate the synthetic shapes set, print statistics of a dataset.",
        epilog=DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = data.add_subparsers(dest="data_command", metavar="{shapes,stats}")
    commands.required = True

    shapes = commands.add_parser(
        "shapes",
        help="write the small synthetic dataset in the VOC layout",
        description="Write the shapes dataset (VOC layout; the test split has images only, no masks). "
        "Deterministic: the same seed gives the same bytes.",
        epilog=DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shapes.add_argument("--out", default=None, help="output folder (default: <data root>/shapes)")
    shapes.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    shapes.add_argument("--size", type=int, default=128, help="image height = width in pixels (default: 128)")
    shapes.add_argument("--n-train", type=int, default=300, help="training images (default: 300)")
    shapes.add_argument("--n-val", type=int, default=100, help="validation images (default: 100)")
    shapes.add_argument("--n-test", type=int, default=100, help="test images, without masks (default: 100)")
    shapes.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing if OUT already holds a complete set with these options",
    )
    shapes.set_defaults(func=_run_shapes)

    stats = commands.add_parser(
        "stats",
        help="per-class pixel/image counts and image sizes of a dataset split",
        description="Print per-class pixel counts and frequencies (void separately), the number of images "
        "containing each class, and the image-size distribution.",
        epilog=DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("root", help="a VOC-layout root (holding VOCdevkit, or VOC2012 itself), or a folder "
                       "with images/ + masks/ or data/<split>/ + labels/<split>/")  # fmt: skip
    stats.add_argument("--split", default=None, help="split name (VOC default: train)")
    stats.set_defaults(func=_run_stats)
