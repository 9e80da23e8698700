"""Training configs: YAML files checked against a schema written as plain Python.

A config is a YAML file with seven sections. Every key is described in `SCHEMA` below: its type, its
default, the values it may take, and what it means. `load_config` reads a file (or the name of a config
shipped in segkit/configs/), applies `--set key.path=value` overrides, checks every key and returns the
*resolved* config: a plain nested dict with every default filled in, which is what the run folder and the
checkpoints store.

    data       which dataset, where, augmentation, batch sizes, on-disk cache
    model      name (a key of segkit.models.MODELS) + options passed to build_model
    loss       name (a key of segkit.losses.LOSSES) + options passed to build_loss
    optimizer  name, learning rate, weight decay + options passed to build_optimizer
    schedule   name (a key of segkit.optim's schedules) + options passed to build_scheduler
    train      epochs, mixed precision, accumulation, clipping, evaluation, checkpoints, seed, debug modes
    run        where the run folder goes and its name

Checking happens in one pass that collects every problem, so a config with three mistakes gets one error
listing all three, each with the key path and what was expected:

    segkit/configs/x.yaml: 2 problems
      optimizer.lr: expected a number > 0, got -0.1
      train.epoch: unknown key (did you mean 'epochs'?)

Names are checked here too, against the registries (segkit.registry: unknown model 'unte', did you mean
'unet'?), without importing torch. What needs the constructors themselves (does this option exist for that
model?) is checked when the parts are built, in segkit.build, with errors that name the key the same way.

The `train` section is also the one home of the Trainer's options: `train_options(**given)` checks keyword
arguments of the Python API against the same fields and fills the same defaults.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from segkit.data.masks import VOID_INDEX
from segkit.losses import LOSSES
from segkit.models import MODELS
from segkit.optim import OPTIMIZERS, SCHEDULERS
from segkit.registry import RegistryError, did_you_mean

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SECTION_NAMES = ("data", "model", "loss", "optimizer", "schedule", "train", "run")


class ConfigError(ValueError):
    """A config that does not match the schema. `problems` lists one 'key.path: message' per fault."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(f"{source}: {count}\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Field:
    """One key of a config.

    kind: bool | int | float | str | list | dict. A float key also takes an integer (1 -> 1.0).
        A dict key is a free mapping of options handed on as keyword arguments (checked when built).
    default: the value when the key is absent (lists and dicts are copied).
    help: one line saying what the key does.
    choices: the allowed values, when there is a fixed set.
    minimum / above / maximum: bounds for numbers (for a list: for each item). `above` is strict (> x).
    items, length: for lists, the type of each item and the required number of items.
    nullable: whether `null` (None) is allowed; it usually means "derive it" (see help).
    also: other values accepted as they are, e.g. "auto" for a number that can also be chosen for you.
    """

    kind: type
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    items: type | None = None
    length: int | None = None
    nullable: bool = False
    also: tuple = ()


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

SCHEMA: dict[str, dict[str, Field]] = {
    "data": {
        "dataset": Field(str, "shapes", "the reader: VOC-2012 layout, the generated shapes set, or a folder",
                         choices=("voc", "shapes", "folder")),
        "root": Field(str, None, "dataset folder; null = $SEGKIT_DATA or data/ (data/shapes for shapes)",
                      nullable=True),
        "train_split": Field(str, "train", "split used for training"),
        "val_split": Field(str, "val", "split used for evaluation during training"),
        "test_split": Field(str, "test", "split used by `segkit predict` (its masks may be absent)"),
        "classes": Field(list, None, "class names, index = label; null = the dataset's own (VOC: 21)",
                         items=str, nullable=True),
        "crop_size": Field(int, 256, "training crop, square side in pixels", minimum=1),
        "base_size": Field(int, None, "images are scaled relative to a base_size square; null = crop_size",
                           minimum=1, nullable=True),
        "scale_range": Field(list, [0.5, 2.0], "random scale factor range [low, high]",
                             items=float, length=2, above=0),
        "hflip": Field(bool, True, "random horizontal flip (p = 0.5)"),
        "vflip": Field(bool, False, "random vertical flip (p = 0.5)"),
        "mean": Field(list, IMAGENET_MEAN, "per-channel mean for normalisation (RGB, 0..1)",
                      items=float, length=3),
        "std": Field(list, IMAGENET_STD, "per-channel standard deviation for normalisation",
                     items=float, length=3, above=0),
        "batch_size": Field(int, 8, "images per loader batch, per process: under torchrun a step uses "
                            "batch_size x processes x grad_accum_steps images",
                            minimum=1),
        "eval_batch_size": Field(int, 1, "images per evaluation batch (1 for images of different sizes)",
                                 minimum=1),
        "num_workers": Field(int, 0, "DataLoader worker processes (0 = load in the main process)",
                             minimum=0),
        "cache": Field(bool, False, "keep decoded samples on disk (segkit.data.CachedDataset); "
                       "augmentation stays random"),
        "cache_dir": Field(str, None, "folder for data.cache; null = $SEGKIT_CACHE or data/cache",
                           nullable=True),
        "ignore_index": Field(int, VOID_INDEX, "mask value of void pixels, left out of the loss, the metrics "
                              "and the Trainer's pixel weights; padding of crops is filled with it",
                              minimum=0, maximum=255),
    },
    "model": {
        "name": Field(str, "unet", "a name in segkit.models.MODELS"),
        "options": Field(dict, {}, "keyword arguments for build_model (num_classes comes from the data)"),
    },
    "loss": {
        "name": Field(str, "cross_entropy", "a name in segkit.losses.LOSSES"),
        "options": Field(dict, {}, "keyword arguments for build_loss; name 'aux' wraps options.loss for "
                         "models with an auxiliary head"),
    },
    "optimizer": {
        "name": Field(str, "sgd", "sgd | adam | adamw (see segkit.optim)"),
        "lr": Field(float, 0.01, "base learning rate", above=0),
        "weight_decay": Field(float, 1e-4, "L2 penalty / decoupled weight decay", minimum=0),
        "options": Field(dict, {}, "other keyword arguments for build_optimizer (momentum, betas, ...)"),
    },
    "schedule": {
        "name": Field(str, "poly", "learning-rate schedule, stepped once per iteration (see segkit.optim)"),
        "options": Field(dict, {}, "keyword arguments for build_scheduler (power, slow_start_steps, ...)"),
    },
    "train": {
        "epochs": Field(int, 10, "passes over the training split", minimum=1),
        "amp": Field(str, None, "mixed precision: null (off), bf16 or fp16 (fp16 adds a GradScaler)",
                     choices=("bf16", "fp16"), nullable=True),
        "channels_last": Field(bool, False, "store images and weights in NHWC memory format"),
        "grad_accum_steps": Field(int, 1, "loader batches accumulated into one optimizer step", minimum=1),
        "micro_batch_size": Field(int, None, "split batches into pieces of this many images (same update); "
                                  "'auto' halves them on CUDA out-of-memory; null = whole batches",
                                  minimum=1, nullable=True, also=("auto",)),
        "clip_grad_norm": Field(float, None, "clip the global gradient norm to this; null = no clipping",
                                above=0, nullable=True),
        "checkpoint_every_steps": Field(int, None, "also write last.pt every N steps; null = per epoch",
                                        minimum=1, nullable=True),
        "keep_last_k": Field(int, 1, "history checkpoints step-*.pt kept besides last.pt and best.pt",
                             minimum=0),
        "best_metric": Field(str, "miou", "validation metric that picks best.pt (loss: lower is better, "
                             "the others: higher)",
                             choices=("miou", "pixel_accuracy", "mean_class_accuracy", "fw_iou", "loss")),
        "seed": Field(int, 0, "seed for the data order, augmentations and initial weights", minimum=0),
        "overfit_batches": Field(int, 0, "debug: train and validate on the first N batches only; 0 = off",
                                 minimum=0),
        "limit_batches": Field(int, None, "debug: use only the first N batches of every epoch and "
                               "evaluation; null = all", minimum=1, nullable=True),
        "device": Field(str, "auto", "auto (cuda, else mps, when available), cpu, cuda, cuda:1, mps "
                        "(checked against the devices this machine has)"),
        "check_memory": Field(bool, True, "refuse a model whose estimated training memory (weights, "
                              "gradients, optimizer state, activations) exceeds the device's; false = build "
                              "it anyway"),
        "sync_batchnorm": Field(bool, False, "under torchrun: convert BatchNorm to SyncBatchNorm (needs "
                                "CUDA: NCCL); without it each process keeps its own statistics and "
                                "evaluation uses rank 0's"),
        "print_table": Field(bool, True, "print the per-class table after every evaluation"),
        "progress_bar": Field(bool, True, "a progress bar per epoch (terminal or notebook)"),
        "tensorboard": Field(bool, True, "also log to <run folder>/tensorboard when the tensorboard package "
                             "is installed (segkit[tensorboard])"),
    },
    "run": {
        "dir": Field(str, None, "folder that holds run folders; null = $SEGKIT_RUNS or runs/", nullable=True),
        "name": Field(str, None, "run folder name; null = the config file's name", nullable=True),
    },
}


# ---------------------------------------------------------------------------------------------------------
# Checking one value against its Field
# ---------------------------------------------------------------------------------------------------------


def describe(field: Field) -> str:
    """What a field expects, in words: 'a number > 0', 'one of 'voc', 'shapes'', 'a list of 3 numbers'."""
    if field.choices:
        text = "one of " + ", ".join(repr(c) for c in field.choices)
    elif field.kind is list:
        count = f"{field.length} " if field.length else ""
        noun = {str: "strings", int: "integers", float: "numbers"}[field.items]
        text = f"a list of {count}{noun}{_bounds(field)}"
    else:
        noun = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                dict: "a mapping of options (key: value)"}[field.kind]
        text = noun + _bounds(field)
    text += "".join(f", {value!r}" for value in field.also)
    return text + (" or null" if field.nullable else "")


def _bounds(field: Field) -> str:
    parts = []
    if field.above is not None:
        parts.append(f"> {field.above:g}")
    if field.minimum is not None:
        parts.append(f">= {field.minimum:g}")
    if field.maximum is not None:
        parts.append(f"<= {field.maximum:g}")
    if not parts:
        return ""
    return (" each " if field.kind is list else " ") + " and ".join(parts)


def _as_type(value: Any, kind: type) -> tuple[bool, Any]:
    """(ok, converted value). bool is not an int here, although Python says True == 1.

    Infinity and NaN are refused. A string like "1e-4" is accepted as a float: YAML 1.1 (PyYAML) reads
    1e-4 without a dot as a string.
    """
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return False, value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        else:
            return False, value
        return math.isfinite(number), number
    return isinstance(value, kind), value


def _in_bounds(number: float, field: Field) -> bool:
    return not (
        (field.above is not None and not number > field.above)
        or (field.minimum is not None and number < field.minimum)
        or (field.maximum is not None and number > field.maximum)
    )


def check_value(value: Any, field: Field) -> Any:
    """Return `value` converted to the field's type, or raise ValueError('expected ..., got ...')."""
    if (value is None and field.nullable) or (value in field.also and not isinstance(value, bool)):
        return value
    hint = ""
    if isinstance(value, bool) and field.kind is not bool:
        hint = " (YAML reads yes/no/on/off/true/false as booleans: quote a word you mean as text)"
    problem = ValueError(f"expected {describe(field)}, got {_show(value)}{hint}")
    ok, value = _as_type(value, field.kind)
    if not ok:
        raise problem
    if field.kind is list:
        if field.length is not None and len(value) != field.length:
            raise problem
        checked = []
        for item in value:
            ok, item = _as_type(item, field.items)
            if not ok or (field.items is not str and not _in_bounds(item, field)):
                raise problem
            checked.append(item)
        return checked
    if field.choices and value not in field.choices:
        raise problem
    if field.kind in (int, float) and not _in_bounds(value, field):
        raise problem
    if field.kind is dict:
        bad_keys = [k for k in value if not isinstance(k, str)]
        if bad_keys:
            raise ValueError(f"option names must be strings, got {bad_keys[0]!r}")
        return dict(value)
    return value


def _show(value: Any) -> str:
    kind = "null" if value is None else type(value).__name__
    return f"{value!r} ({kind})"


# ---------------------------------------------------------------------------------------------------------
# Whole configs
# ---------------------------------------------------------------------------------------------------------


def validate_config(raw: dict, source: str = "config") -> dict:
    """Check a config (nested dict, as read from YAML) and return it resolved, with defaults filled in.

    Raises ConfigError listing every unknown key, wrong type and impossible value with its key path.
    """
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"the top level must be a mapping of sections, got {_show(raw)}"])
    problems = []
    resolved = {}
    for section in raw:
        if section not in SCHEMA:
            problems.append(f"{section}: unknown section{did_you_mean(str(section), SCHEMA)}; "
                            f"sections are {', '.join(SECTION_NAMES)}")
    for section in SCHEMA:
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            problems.append(f"{section}: expected a mapping of keys, got {_show(given)}")
            given = {}
        resolved[section], section_problems = check_section(section, given)
        problems += section_problems
    if not problems:
        problems = _check_together(resolved)
    if problems:
        raise ConfigError(source, problems)
    return resolved


def check_section(section: str, given: dict) -> tuple[dict, list[str]]:
    """(the section with defaults filled in, its problems as 'section.key: message' strings)."""
    fields = SCHEMA[section]
    problems = [f"{section}.{key}: unknown key{did_you_mean(str(key), fields)}" for key in given
                if key not in fields]
    resolved = {}
    for key, field in fields.items():
        if key not in given:
            value = field.default
            resolved[key] = list(value) if isinstance(value, list) else (
                dict(value) if isinstance(value, dict) else value)
            continue
        try:
            resolved[key] = check_value(given[key], field)
        except ValueError as error:
            problems.append(f"{section}.{key}: {error}")
    return resolved, problems


# The registry of each section's `name` key (looking a name up imports neither torch nor the part).
REGISTRIES = {"model": MODELS, "loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULERS}


def _check_together(config: dict) -> list[str]:
    """Rules that involve two keys at once, and the part names (against their registries)."""
    problems = []
    low, high = config["data"]["scale_range"]
    if low > high:
        problems.append(f"data.scale_range: expected [low, high] with low <= high, got {[low, high]}")
    problems += _train_rules(config["train"])
    for section, registry in REGISTRIES.items():
        try:
            registry.check_name(config[section]["name"])
        except RegistryError as error:
            problems.append(f"{section}.name: {error}")
    return problems


def _train_rules(train: dict) -> list[str]:
    if train["overfit_batches"] and train["limit_batches"] is not None:
        return ["train.limit_batches: cannot be combined with train.overfit_batches; set one of them"]
    return []


def train_options(source: str = "Trainer", **given) -> dict:
    """The Trainer's options: `given` checked against SCHEMA["train"] (the keys of a config's train
    section), the defaults of the schema filled in. Raises ConfigError naming every option at fault."""
    resolved, problems = check_section("train", given)
    problems += _train_rules(resolved)
    if problems:
        raise ConfigError(source, problems)
    return resolved


def shipped_configs() -> list[str]:
    """Names of the configs shipped in segkit/configs/ (without .yaml), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def training_configs() -> list[str]:
    """The shipped configs that `segkit train` takes: those without a `search` section (an architecture
    search config, for `segkit search`, adds one to a training config)."""
    names = shipped_configs()
    return [name for name in names if "search" not in (read_yaml(CONFIG_DIR / f"{name}.yaml") or {})]


def find_config(name_or_path: str | os.PathLike) -> Path:
    """A config file from a path, or the name of a shipped config ('shapes_unet' or 'shapes_unet.yaml')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} is neither a file nor a shipped config"
        f"{did_you_mean(path.stem, shipped_configs())}; shipped configs: {', '.join(shipped_configs())}"
    )


def read_yaml(path: str | os.PathLike) -> Any:
    """yaml.safe_load of a file, with the file named in the error when it is not valid YAML."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [f"not valid YAML: {error}"]) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optimizer.lr=0.1' -> (['optimizer', 'lr'], 0.1). The value is read as YAML, so
    '5' is an int, '1.0e-3' a float, 'true' a bool, 'null' None and '[0.5, 2.0]' a list."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", [f"{text!r}: expected key.path=value, e.g. train.epochs=5"])
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ConfigError("--set", [f"{key}: the value {value!r} is not valid YAML ({error})"]) from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides) -> dict:
    """Set each 'a.b=value' of `overrides` in a copy of `raw`. Paths must exist in SCHEMA, except below a
    free mapping of options ('model.options.base_channels=16' is fine)."""
    raw = _deep_copy(raw if isinstance(raw, dict) else {})
    all_paths = [f"{s}.{k}" for s, fields in SCHEMA.items() for k in fields]
    for text in overrides:
        keys, value = parse_override(text)
        field = SCHEMA.get(keys[0], {}).get(keys[1]) if len(keys) >= 2 else None
        free_below = field is not None and field.kind is dict
        if field is None or (len(keys) > 2 and not free_below):
            dotted = ".".join(keys)
            raise ConfigError("--set", [f"{dotted}: unknown key{did_you_mean(dotted, all_paths)}"])
        node = raw
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return raw


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def load_config(name_or_path: str | os.PathLike, overrides=()) -> dict:
    """Read, override and check a config; returns the resolved dict.

    name_or_path: a YAML file, or the name of a shipped config ('shapes_unet').
    overrides: strings 'key.path=value' (what `--set` takes on the command line).
    run.name defaults to the file's name without .yaml.
    """
    path = find_config(name_or_path)
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides)
    config = validate_config(raw, source=str(path))
    if config["run"]["name"] is None:
        config["run"]["name"] = path.stem
    return config


def save_config(config: dict, path: str | os.PathLike) -> Path:
    """Write a resolved config as YAML (keys in schema order), readable back with load_config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    return path


def format_schema() -> str:
    """Every key with its default and meaning, one per line (printed by `segkit train --help`)."""
    lines = []
    for section, fields in SCHEMA.items():
        lines.append(f"{section}:")
        for key, field in fields.items():
            default = yaml.safe_dump(field.default, default_flow_style=True).removesuffix("...\n").strip()
            lines.append(f"  {key:<22} {default:<22} {field.help}")
    return "\n".join(lines)
