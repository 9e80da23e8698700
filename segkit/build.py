"""From a resolved config (segkit.config) to the parts of a training run, one small function per part.

    config = load_config("shapes_unet")
    train_set = build_dataset(config, "train")        # data.dataset, data.root, augmentation, data.cache
    model = model_from_config(config)                 # segkit.models.build_model(model.name, ...)
    loss_fn = loss_from_config(config)                # segkit.losses.build_loss(...)
    optimizer = optimizer_from_config(config, model)  # segkit.optim.build_optimizer(...)
    trainer = build_trainer(config)                   # all of the above, wired into a Trainer

Each function only translates config keys into the arguments of the function that really builds the part
(nothing is re-implemented here). When that function refuses an option, the error is re-raised as a
ConfigError that names the config key at fault, e.g. `model.options: model 'unet' has no option 'depht' (did
you mean 'depth'?); ...`. Names were checked already, by segkit.config, against the registries.

The number of classes and their names come from the dataset: `build_trainer` writes them into the config
(`data.classes`), so checkpoints carry them and `segkit evaluate` / `segkit predict` can rebuild the model
without guessing.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from segkit import paths
from segkit.config import ConfigError
from segkit.data.cache import CachedDataset
from segkit.data.folder import FolderDataset
from segkit.data.shapes import default_shapes_dir
from segkit.data.transforms import eval_transforms, train_transforms
from segkit.data.voc import VOCSegmentation
from segkit.losses import build_loss
from segkit.models import build_model
from segkit.optim import build_optimizer, build_scheduler


@contextmanager
def blame(key: str, source: str = "config"):
    """Turn a ValueError/TypeError raised while building a part into a ConfigError naming `key`
    (and prefix a FileNotFoundError's message with the key)."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        if getattr(error, "option", None) and getattr(error, "detail", None):  # an option of the wrong type
            problem = f"{key}.{error.option}: {error.detail}"
        elif str(error).startswith(f"{key}."):  # the message names the key already
            problem = str(error)
        else:
            problem = f"{key}: {error}"
        raise ConfigError(source, [problem]) from error
    except FileNotFoundError as error:  # a folder named by the config is missing: name the key too
        raise FileNotFoundError(f"{source}: {key}: {error}") from error


# ------------------------------------------------------------------------------------------------ data


def dataset_root(config: dict) -> Path:
    """data.root, or the default for the dataset: data/shapes for shapes, data/ for VOC ($SEGKIT_DATA)."""
    data = config["data"]
    if data["root"] is not None:
        return Path(data["root"]).expanduser()
    if data["dataset"] == "shapes":
        return default_shapes_dir()
    if data["dataset"] == "voc":
        return paths.data_root()
    raise ConfigError("config", ["data.root: the folder dataset needs a root (the folder holding your data)"])


def build_dataset(
    config: dict, split: str, train: bool = False, masks: str = "required", source: str = "config",
):
    """The dataset of `split` with training augmentation (train=True) or evaluation transforms.

    voc, shapes: segkit.data.VOCSegmentation (shapes is in the VOC layout).
    folder: segkit.data.FolderDataset: `<root>/<split>/` when it holds images/, otherwise the
        data/<split>/ + labels/<split>/ layout under root.
    masks: the readers' switch (segkit.data.samples.mask_choice): "required", "optional" (a split whose
        masks are held back gives (image, None) samples; some missing is still an error) or "none": the
        images only, for `segkit predict`, which never needs a mask: the split's masks, all, some or none
        of them on disk, are never looked for nor opened; samples are (image, None). With "none" data.cache
        is not used:
        predict reads each image once, so building a cache (which decodes and stores every image and mask)
        would only add work.
    data.cache: true wraps the reader, built without transforms, in
        segkit.data.CachedDataset(reader, transforms, cache_root=data.cache_dir): the decoded files and the
        deterministic start of the chain (ToDtype + Normalize of the evaluation chain, nothing of the training
        chain, which starts with a random scale) are stored under data.cache_dir, else $SEGKIT_CACHE, else
        data/cache; the random steps still run at every access, so the samples are those without a cache.
    Samples are (image float32 (3, H, W) normalised, mask int64 (H, W), 255 = void).
    """
    data = config["data"]
    if train:
        transforms = train_transforms(
            crop_size=data["crop_size"], base_size=data["base_size"], scale_range=tuple(data["scale_range"]),
            hflip=data["hflip"], vflip=data["vflip"], mean=tuple(data["mean"]), std=tuple(data["std"]),
            ignore_index=data["ignore_index"],
        )
    else:
        transforms = eval_transforms(mean=tuple(data["mean"]), std=tuple(data["std"]))
    root = dataset_root(config)
    if data["dataset"] == "shapes" and not (root / "VOCdevkit").is_dir():
        raise FileNotFoundError(f"{source}: data.root: no shapes dataset in {root}; generate it with: "
                                f"segkit data shapes --out {root}")
    use_cache = data["cache"] and masks != "none"
    reader_transforms = None if use_cache else transforms  # with a cache, CachedDataset applies them
    with blame("data", source):
        dataset = read_split(config, root, split, reader_transforms, masks)
    if data["classes"] is not None and list(data["classes"]) != list(dataset.classes):
        raise ConfigError(source, [f"data.classes: the {data['dataset']} dataset has the classes "
                                   f"{list(dataset.classes)}; got {data['classes']}"])
    if use_cache:
        with blame("data.cache", source):
            dataset = CachedDataset(dataset, transforms, cache_root=data["cache_dir"],
                                    num_workers=data["num_workers"])
    return dataset


def read_split(config: dict, root: Path, split: str, transforms, masks: str = "required"):
    """The reader of data.dataset for `split` under `root`: FolderDataset (folder) or VOCSegmentation.
    `masks` is passed on to the reader."""
    data = config["data"]
    if data["dataset"] == "folder":
        extra = {"classes": tuple(data["classes"])} if data["classes"] is not None else {}
        if (root / split / "images").is_dir():
            return FolderDataset(root / split, None, transforms, **extra, masks=masks)
        return FolderDataset(root, split, transforms, **extra, masks=masks)
    return VOCSegmentation(root, split, transforms, masks=masks)


def train_loader(config: dict, dataset) -> DataLoader:
    """Shuffled batches of data.batch_size. The last incomplete batch is dropped (a batch of one image
    breaks BatchNorm) unless the dataset is smaller than one batch."""
    data = config["data"]
    return DataLoader(
        dataset, batch_size=data["batch_size"], shuffle=True, num_workers=data["num_workers"],
        drop_last=len(dataset) >= data["batch_size"], pin_memory=torch.cuda.is_available(),
        persistent_workers=data["num_workers"] > 0,
    )


def eval_loader(config: dict, dataset) -> DataLoader:
    """Batches of data.eval_batch_size in a fixed order, every sample once."""
    data = config["data"]
    return DataLoader(dataset, batch_size=data["eval_batch_size"], shuffle=False,
                      num_workers=data["num_workers"], pin_memory=torch.cuda.is_available())


# ------------------------------------------------------------------------------ model, loss, optimizer


def model_from_config(config: dict, num_classes: int | None = None, source: str = "config"):
    """segkit.models.build_model(model.name, num_classes, **model.options).

    num_classes: default len(data.classes) (filled in by build_trainer from the dataset).
    """
    if num_classes is None:
        classes = config["data"]["classes"]
        if classes is None:
            raise ConfigError(source, ["data.classes: unknown; build the dataset first (build_trainer does)"])
        num_classes = len(classes)
    model = config["model"]
    with blame("model.options", source):
        return build_model(model["name"], num_classes=num_classes, **model["options"])


def loss_from_config(config: dict, source: str = "config") -> torch.nn.Module:
    """segkit.losses.build_loss({"name": loss.name, **loss.options}, ignore_index=data.ignore_index)."""
    loss = config["loss"]
    with blame("loss.options", source):
        spec = {"name": loss["name"], **loss["options"]}
        return build_loss(spec, ignore_index=config["data"]["ignore_index"])


def optimizer_from_config(config: dict, model: torch.nn.Module, source: str = "config"):
    """segkit.optim.build_optimizer(model, optimizer.name, lr, weight_decay, **optimizer.options)."""
    opt = config["optimizer"]
    with blame("optimizer.options", source):
        return build_optimizer(model, opt["name"], lr=opt["lr"], weight_decay=opt["weight_decay"],
                               **opt["options"])


def scheduler_from_config(config: dict, optimizer, total_steps: int, source: str = "config"):
    """segkit.optim.build_scheduler(optimizer, schedule.name, total_steps, **schedule.options)."""
    schedule = config["schedule"]
    with blame("schedule.options", source):
        return build_scheduler(optimizer, schedule["name"], total_steps=total_steps, **schedule["options"])


# -------------------------------------------------------------------------------------------- the run


def run_dir(config: dict) -> Path:
    """run.dir (default $SEGKIT_RUNS or runs/) / run.name."""
    run = config["run"]
    if run["name"] is None:
        raise ConfigError("config", ["run.name: needed to name the run folder"])
    return paths.runs_root(run["dir"]) / run["name"]


def check_training_memory(config: dict, num_classes: int, source: str = "config",
                          available: int | None = None):
    """Refuse, before anything is allocated, a model whose training would not fit in memory.

    segkit.models.footprint.training_footprint estimates the parameters, the bytes of weights, gradients
    and optimizer state (Adam and AdamW keep two values per weight, SGD one) and of the activations of one
    batch of data.batch_size crops of data.crop_size; the total is compared with `available` (default:
    the memory of train.device: a GPU's total, or the machine's available RAM). Too big: ConfigError
    naming model.options with the estimate. train.check_memory: false skips the check. Returns the
    Footprint (None when skipped). Out-of-range model options (a UNet of depth 12) fail here too, fast:
    the model is built on the meta device first.
    """
    from segkit.inference import resolve_device
    from segkit.models.footprint import available_memory, training_footprint
    from segkit.trainer.checkpoint import format_bytes

    if not config["train"]["check_memory"]:
        return None
    data, model = config["data"], config["model"]
    slots = 2 if config["optimizer"]["name"] in ("adam", "adamw") else 1
    shape = (data["batch_size"], 3, data["crop_size"], data["crop_size"])
    footprint = training_footprint(lambda: model_from_config(config, num_classes, source), shape, slots)
    if available is None:
        with blame("train.device", source):
            device = resolve_device(config["train"]["device"])
        available = available_memory(device)
        where = f"device {device} has"
    else:
        where = "the limit is"
    if available is None or footprint.total_bytes <= available:
        return footprint
    activations = ("activations not estimated" if footprint.activation_bytes is None else
                   f"{format_bytes(footprint.activation_bytes)} of activations for a batch of "
                   f"{data['batch_size']} crops of {data['crop_size']}x{data['crop_size']}")
    raise ConfigError(source, [
        f"model.options: training {model['name']} with options {model['options']} needs about "
        f"{format_bytes(footprint.total_bytes)}: {footprint.parameters:,} parameters, "
        f"{format_bytes(footprint.state_bytes)} for weights, gradients and optimizer state, {activations}; "
        f"{where} {format_bytes(available)}. Make the model, the batch or the crop smaller, or set "
        "train.check_memory=false to build it anyway"])


def build_trainer(config: dict, resume: bool | str | None = False, source: str = "config", callbacks=None):
    """A Trainer for `config`: datasets, loaders, model, loss, optimizer, schedule, run folder.

    resume: False, True (= "auto") or a mode of segkit.trainer.RESUME_MODES (see the Trainer's `resume`).
    callbacks: extra segkit.trainer.Callback objects. Every other Trainer option comes from the config's
    train section (train.progress_bar, train.print_table, ...).

    Fills `config["data"]["classes"]` from the training set (so the saved config and every checkpoint
    name the classes). The schedule is built by the Trainer once it knows its number of steps.
    """
    from segkit.trainer import Trainer

    train_set = build_dataset(config, config["data"]["train_split"], train=True, source=source)
    val_set = build_dataset(config, config["data"]["val_split"], train=False, source=source)
    config["data"]["classes"] = list(train_set.classes)
    check_training_memory(config, len(train_set.classes), source=source)
    torch.manual_seed(config["train"]["seed"])  # the initial weights depend on the seed only
    model = model_from_config(config, source=source)
    loss_fn = loss_from_config(config, source=source)
    optimizer = optimizer_from_config(config, model, source=source)

    def make_scheduler(optimizer, total_steps: int):
        return scheduler_from_config(config, optimizer, total_steps, source=source)

    with blame("train", source):
        return Trainer(
            model, loss_fn, optimizer, train_loader(config, train_set), eval_loader(config, val_set),
            num_classes=len(train_set.classes), class_names=list(train_set.classes), run_dir=run_dir(config),
            make_scheduler=make_scheduler, resume=resume, ignore_index=config["data"]["ignore_index"],
            config=config, callbacks=callbacks, **config["train"],
        )


# ------------------------------------------------------------------------------------- from a checkpoint

# Options that would fetch pretrained weights: off when the weights come from a checkpoint anyway.
PRETRAINED_OPTIONS = {"pretrained": False, "pretrained_backbone": False, "encoder_weights": None}


def without_pretrained_weights(config: dict) -> dict:
    """Switch off, in place, every model option of `config` that would fetch pretrained weights (those of
    PRETRAINED_OPTIONS that model.options sets); returns `config`."""
    options = config["model"]["options"]
    for key, off in PRETRAINED_OPTIONS.items():
        if key in options:
            options[key] = off
    return config


def model_from_checkpoint(path, device: str | torch.device = "cpu"):
    """Rebuild the model of a Trainer checkpoint and load its weights; returns (model in eval mode, config).

    The checkpoint's config (a plain dict) is checked again with segkit.config.validate_config, the model
    is built from it with num_classes from the checkpoint and pretrained downloads switched off (the
    weights come from the file), then `load_state_dict` puts the trained weights in.
    """
    from segkit.config import validate_config
    from segkit.trainer import load_checkpoint

    checkpoint = load_checkpoint(path)
    source = f"{path} (the config stored in the checkpoint)"
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or not checkpoint.get("config"):
        raise ValueError(f"{path} is not a segkit Trainer checkpoint (it needs 'model' and 'config' entries)")
    config = without_pretrained_weights(validate_config(checkpoint["config"], source=source))
    model = model_from_config(config, num_classes=checkpoint["num_classes"], source=source)
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), config
