"""`segkit train`, `segkit evaluate` and `segkit predict`: the command line around a training run.

    segkit train CONFIG [--set key.path=value ...] [--resume [auto|strict|best|restart]]
        -> runs/<name>/ with config.yaml, metrics.csv, last.pt, best.pt
    segkit evaluate CHECKPOINT|RUN_FOLDER [--split val] [--tta] [--sliding-window] ...
        -> the per-class table, and the metrics as JSON in <checkpoint>-<split>.json
    segkit predict CHECKPOINT|RUN_FOLDER [--split test] [--root FOLDER] --out FILE.zip
        -> a zip with one palette PNG per image, <image_id>.png

torch is imported inside the handlers, so `segkit --help` stays quick.
A checkpoint holds the resolved config, so `evaluate` and `predict` rebuild the model and the dataset
from it; nothing else needs to be given. Given a run folder instead of a file, they use its best.pt.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

TRAIN_EXAMPLES = """\
examples:
  segkit train shapes_unet                                 # a shipped config (segkit/configs/*.yaml)
  segkit train my_experiment.yaml --set train.epochs=5 optimizer.lr=0.003
  segkit train shapes_unet --set model.options.base_channels=16 run.name=unet16
  segkit train shapes_unet --resume                        # continue runs/shapes_unet (or start it)
  segkit train shapes_unet --resume strict                 # continue it; an error when it has no checkpoint
  segkit train shapes_unet --resume best --set train.clip_grad_norm=1   # rewind to best.pt, go on from there
  segkit train shapes_unet --resume restart                # move the old run to runs/shapes_unet/archive/
  segkit train voc_deeplabv3_resnet50 --print-config       # show the resolved config, do not train

Every config key, with its default (--set takes the same dotted paths; values are read as YAML):
"""

EVALUATE_EXAMPLES = """\
examples:
  segkit evaluate runs/shapes_unet/best.pt                 # val split, whole images
  segkit evaluate runs/shapes_unet                         # the same: a run folder means its best.pt
  segkit evaluate runs/shapes_unet/best.pt --tta           # + flip and scales 0.75, 1, 1.25
  segkit evaluate runs/voc/best.pt --sliding-window --scales 0.5 0.75 1 1.25 1.5 1.75 --flip
  segkit evaluate runs/voc/best.pt --window 513 --stride 341 --out results/voc_val.json

The metrics (per-class IoU, precision, recall; mIoU, pixel accuracy, ...) are computed over the whole
split (one confusion matrix, VOC's definition) and written as JSON to --out, by default next to the
checkpoint: <checkpoint>-<split>.json (with -tta when test-time augmentation was used).
"""

PREDICT_EXAMPLES = """\
examples:
  segkit predict runs/shapes_unet/best.pt --out submission.zip           # the test split
  segkit predict runs/shapes_unet/best.pt --root student-pack --out submission.zip   # a competition's images
  segkit predict runs/voc/best.pt --split val --out val_masks.zip --tta

The zip holds one palette PNG per image of the split, named <image_id>.png, flat (no folders), each at its
image's size with the predicted class index per pixel: the format the class competition scores. The
split's masks are never read: a split without masks (test masks are held back), or with some missing, is
predicted all the same, and data.cache is not used (each image is read once).
"""

TTA_SCALES = (0.75, 1.0, 1.25)
# segkit.trainer.RESUME_MODES, written out so that `segkit --help` does not import torch (a test compares).
RESUME_MODES = ("auto", "strict", "best", "restart")


def _run_train(args: argparse.Namespace) -> int:
    import yaml

    from segkit.config import find_config, load_config

    config = load_config(args.config, args.overrides)  # every config error is reported here, before torch
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=False, default_flow_style=None), end="")
        return 0
    from segkit.build import build_trainer

    source = str(find_config(args.config))
    trainer = build_trainer(config, resume=args.resume, source=source)
    if trainer.is_main:
        print(f"config {source} -> run folder {trainer.run_dir}")
        print(f"device {trainer.device}, {trainer.describe_batches()}")
        saved = trainer.run_dir / "config.yaml"
        if args.resume in ("auto", "strict", "best") and saved.is_file():
            _warn_about_changes(yaml.safe_load(saved.read_text()), config, saved)
    metrics = trainer.fit()
    if trainer.is_main:
        if metrics:
            print(f"done: epoch {trainer.epoch}/{trainer.epochs}, val mIoU {metrics['miou']:.4f}, "
                  f"pixel accuracy {metrics['pixel_accuracy']:.4f}")
        print(f"checkpoints, metrics.csv and config.yaml are in {trainer.run_dir}")
    return 0


def _flatten(config: dict, prefix: str = "") -> dict:
    """{'train': {'epochs': 5}} -> {'train.epochs': 5}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _warn_about_changes(saved: dict, config: dict, saved_path: Path) -> None:
    """Resuming with a different config is allowed (e.g. more epochs) but never silent."""
    before, after = _flatten(saved or {}), _flatten(config)
    changed = [f"{k} ({before.get(k)!r} -> {after.get(k)!r})" for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)]
    if changed:
        print(f"warning: resuming with a config that differs from {saved_path} in: {', '.join(changed)}")


def _predict_options(args: argparse.Namespace, config: dict) -> dict:
    """segkit.inference options from --tta / --flip / --scales / --sliding-window / --window / --stride."""
    scales = args.scales if args.scales else (TTA_SCALES if args.tta else (1.0,))
    options = {"scales": tuple(scales), "flip": args.flip or args.tta}
    if args.sliding_window or args.window is not None or args.stride is not None:
        options["window"] = args.window or config["data"]["crop_size"]
        options["stride"] = args.stride
    return options


def _device(args: argparse.Namespace, config: dict):
    from segkit.inference import resolve_device

    if args.device:
        return resolve_device(args.device)
    try:
        return resolve_device(config["train"]["device"])
    except ValueError as error:
        raise ValueError(f"{error} (train.device of the checkpoint's config; choose one with --device)") \
            from None


def _describe(options: dict) -> str:
    text = "whole image" if "window" not in options else f"sliding window {options['window']}"
    if options.get("stride"):
        text += f" stride {options['stride']}"
    if options["scales"] != (1.0,):
        text += ", scales " + ", ".join(f"{s:g}" for s in options["scales"])
    return text + (", flip" if options["flip"] else "")


def _run_evaluate(args: argparse.Namespace) -> int:
    from segkit.build import build_dataset, eval_loader, loss_from_config
    from segkit.inference import evaluate
    from segkit.metrics import format_table

    checkpoint = _checkpoint_path(args.checkpoint)
    model, config = _load(checkpoint, args)
    split = args.split or config["data"]["val_split"]
    dataset = build_dataset(config, split, train=False, source=f"{checkpoint} (config)")
    if args.batch_size:
        config["data"]["eval_batch_size"] = args.batch_size
    options = _predict_options(args, config)
    print(f"evaluating {checkpoint} on {len(dataset)} images of split {split!r} ({_describe(options)})")
    # The Trainer's validation calls the same function with the same loss, void label and precision.
    metrics = evaluate(model, eval_loader(config, dataset), len(config["data"]["classes"]),
                       ignore_index=config["data"]["ignore_index"], loss_fn=loss_from_config(config),
                       amp=config["train"]["amp"], channels_last=config["train"]["channels_last"], **options)
    metrics.pop("confusion_matrix")
    print(format_table(metrics, config["data"]["classes"]))
    print(f"mIoU {metrics['miou']:.4f}   pixel accuracy {metrics['pixel_accuracy']:.4f}   "
          f"loss {metrics['loss']:.4f}")

    suffix = "-tta" if options["flip"] or options["scales"] != (1.0,) else ""
    out = Path(args.out) if args.out else checkpoint.with_name(f"{checkpoint.stem}-{split}{suffix}.json")
    report = {
        "checkpoint": str(checkpoint), "split": split, "num_images": metrics.pop("num_images"),
        "inference": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "classes": list(config["data"]["classes"]),
        **{k: _plain(v) for k, v in metrics.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"metrics written to {out}")
    return 0


def _plain(value):
    """Tensors -> lists and NaN -> None, so the JSON is standard (no NaN literal)."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _checkpoint_path(given: str) -> Path:
    """A checkpoint file as given, or the best.pt of a run folder (the model of its best evaluation)."""
    path = Path(given)
    if not path.is_dir():
        return path
    best = path / "best.pt"
    if not best.is_file():
        others = sorted(p.name for p in path.glob("*.pt"))
        instead = f"; give one of its checkpoints instead: {', '.join(others)}" if others else ""
        raise FileNotFoundError(f"run folder {path} has no best.pt (written when an evaluation during "
                                f"training improves train.best_metric){instead}")
    print(f"run folder {path}: using its best checkpoint {best}, with the config stored in it")
    return best


def _load(checkpoint: Path, args: argparse.Namespace):
    """(model on its device, config); --root, when given, replaces the config's data.root."""
    from segkit.build import model_from_checkpoint

    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    try:
        model, config = model_from_checkpoint(checkpoint)
    except RuntimeError as error:  # damaged file, or weights that do not fit the model: a bad input
        raise ValueError(str(error)) from error
    if args.root is not None:
        config["data"]["root"] = str(args.root)
    return model.to(_device(args, config)), config


def _run_predict(args: argparse.Namespace) -> int:
    from segkit.build import build_dataset
    from segkit.inference import write_submission

    checkpoint = _checkpoint_path(args.checkpoint)
    model, config = _load(checkpoint, args)
    split = args.split or config["data"]["test_split"]
    # masks="none": the images only, never a mask (none of the split's mask files is looked for or opened)
    # and no data.cache (each image is read once).
    dataset = build_dataset(config, split, masks="none", source=f"{checkpoint} (config)")
    options = _predict_options(args, config)
    out = Path(args.out) if args.out else checkpoint.with_name(f"submission-{split}.zip")
    print(f"predicting {len(dataset)} images of split {split!r} with {checkpoint} ({_describe(options)})")
    count = write_submission(model, dataset, out, **options)
    print(f"wrote {count} masks to {out}")
    return 0


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference (see segkit.inference)")
    group.add_argument("--tta", action="store_true",
                       help=f"test-time augmentation: --flip and --scales {' '.join(map(str, TTA_SCALES))}")
    group.add_argument("--flip", action="store_true", help="also predict the mirrored image and average")
    group.add_argument("--scales", type=float, nargs="+", metavar="S",
                       help="multi-scale: resize by each factor, average probabilities at full size")
    group.add_argument("--sliding-window", action="store_true",
                       help="predict overlapping windows of the training crop size and average them")
    group.add_argument("--window", type=int, metavar="PIXELS", help="sliding-window size (implies it)")
    group.add_argument("--stride", type=int, metavar="PIXELS",
                       help="sliding-window step (default: two thirds of the window)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the config's train.device)")
    parser.add_argument("--root", help="dataset folder to read instead of the config's data.root, e.g. a "
                                       "competition's student pack")


def add_run_commands(subparsers) -> None:
    """Register `segkit train`, `segkit evaluate` and `segkit predict`."""
    from segkit.config import format_schema, training_configs

    raw = argparse.RawDescriptionHelpFormatter
    train = subparsers.add_parser(
        "train", help="train a model from a YAML config", formatter_class=raw,
        description="Train from a config: a YAML file or the name of a shipped one "
                    f"({', '.join(training_configs())}). The run folder is run.dir/run.name "
                    "(default runs/<config name>); it receives config.yaml, metrics.csv, last.pt, best.pt.",
        epilog=TRAIN_EXAMPLES + format_schema(),
    )
    train.add_argument("config", help="a YAML file, or the name of a shipped config")
    train.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="override config keys, e.g. --set train.epochs=5 data.batch_size=4")
    train.add_argument("--resume", nargs="?", const="auto", choices=RESUME_MODES, metavar="MODE",
                       help="what to do with a run folder that already holds a run (without --resume it is "
                            "refused). auto (a bare --resume): continue from last.pt, or start the run when "
                            "there is no checkpoint; strict: continue, and fail when there is none; best: "
                            "rewind to best.pt and continue from there (later checkpoints are moved to "
                            "<run folder>/archive/<date-time>/); restart: move the old run to "
                            "<run folder>/archive/<date-time>/ and start again. Write it after CONFIG")
    train.add_argument("--print-config", action="store_true",
                       help="print the resolved config (defaults filled in) and exit")
    train.set_defaults(func=_run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="metrics of a checkpoint on a split (per-class table + JSON)", formatter_class=raw,
        description="Evaluate a checkpoint written by `segkit train` (or the best.pt of a run folder) on a "
                    "split of its dataset, with the config stored in the checkpoint.",
        epilog=EVALUATE_EXAMPLES,
    )
    evaluate.add_argument("checkpoint", help="a .pt file written by segkit train (best.pt, last.pt, ...), or "
                                             "a run folder (its best.pt)")
    evaluate.add_argument("--split", help="split to evaluate (default: the config's data.val_split)")
    evaluate.add_argument("--out", help="JSON file for the metrics (default: next to the checkpoint)")
    evaluate.add_argument("--batch-size", type=int, help="images per batch (default: data.eval_batch_size)")
    _add_inference_options(evaluate)
    evaluate.set_defaults(func=_run_evaluate)

    predict = subparsers.add_parser(
        "predict", help="write predicted masks of a split as a submission zip", formatter_class=raw,
        description="Predict every image of a split and write the masks as a zip of palette PNGs.",
        epilog=PREDICT_EXAMPLES,
    )
    predict.add_argument("checkpoint",
                         help="a .pt file written by segkit train, or a run folder (its best.pt)")
    predict.add_argument("--split", help="split to predict (default: the config's data.test_split)")
    predict.add_argument("--out", help="zip file to write (default: submission-<split>.zip next to the "
                                       "checkpoint)")
    _add_inference_options(predict)
    predict.set_defaults(func=_run_predict)
