"""segkit.losses: segmentation losses, a registry and `build_loss(spec)`.

Every loss is an nn.Module with `forward(logits, target) -> scalar`, where
    logits: (N, C, H, W) float, target: (N, H, W) int64 with 255 = void (`ignore_index`).
Losses that depend on the training step have `set_step(step)`; the Trainer calls it when present.

A spec is a registry name or a dict with "name" and the constructor's keyword arguments:
    "cross_entropy"
    {"name": "focal", "gamma": 2.0}
    {"name": "sum", "terms": [{"name": "cross_entropy", "weight": 1.0}, {"name": "dice", "weight": 0.5}]}
    {"name": "aux", "loss": "cross_entropy", "aux_weight": 0.4}
    {"name": "multiscale", "loss": {"name": "dice"}, "resize": "labels"}
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence

import torch.nn as nn

from .boundary import BoundaryLoss, class_distance_maps, signed_distance_map
from .combine import AuxLoss, MultiScaleLoss, WeightedSum, resize_labels_nearest
from .cross_entropy import CrossEntropyLoss, inverse_frequency_weights, median_frequency_weights
from .focal import FocalLoss
from .hard_pixels import OHEMCrossEntropyLoss, TopKCrossEntropyLoss
from .lovasz import LovaszSoftmaxLoss
from .region import DiceLoss, JaccardLoss

LOSSES = {
    "cross_entropy": CrossEntropyLoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "lovasz": LovaszSoftmaxLoss,
    "top_k": TopKCrossEntropyLoss,
    "ohem": OHEMCrossEntropyLoss,
    "boundary": BoundaryLoss,
    "sum": WeightedSum,
    "aux": AuxLoss,
    "multiscale": MultiScaleLoss,
}

__all__ = [
    "LOSSES", "build_loss", "AuxLoss", "BoundaryLoss", "CrossEntropyLoss", "DiceLoss", "FocalLoss",
    "JaccardLoss", "LovaszSoftmaxLoss", "MultiScaleLoss", "OHEMCrossEntropyLoss", "TopKCrossEntropyLoss",
    "WeightedSum", "class_distance_maps", "inverse_frequency_weights", "median_frequency_weights",
    "resize_labels_nearest", "signed_distance_map",
]


def build_loss(spec: str | dict) -> nn.Module:
    """Build a loss from a spec (see the module docstring).

    - "sum": "terms" is a list of specs, each with an optional "weight" (default 1.0).
    - "aux" and "multiscale": "loss" is itself a spec.
    - Every other key is passed to the constructor of `LOSSES[name]` after checking that the
      constructor has such an argument and that the value has the annotated type.
    Errors (ValueError / TypeError) say where in the spec the fault is,
    e.g. "loss ('sum').terms[1] ('focal'): unknown argument 'gama'; it accepts: gamma, alpha, ignore_index".
    """
    return _build(spec, "loss")


def _build(spec, where: str) -> nn.Module:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise TypeError(f"{where}: a loss spec must be a name or a dict with 'name', got {spec!r}")
    if "name" not in spec:
        raise ValueError(f"{where}: the loss spec {spec!r} has no 'name'; known losses: {', '.join(LOSSES)}")
    options = dict(spec)
    name = options.pop("name")
    if name not in LOSSES:
        raise ValueError(f"{where}: unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
    where = f"{where} ({name!r})"
    constructor = LOSSES[name]
    _check_argument_names(constructor, options, where)

    if name == "sum":
        terms = options["terms"]
        if not isinstance(terms, list | tuple) or not terms:
            raise ValueError(f"{where}: 'terms' must be a non-empty list of loss specs, got {terms!r}")
        built = []
        for index, term in enumerate(terms):
            term_where = f"{where}.terms[{index}]"
            if isinstance(term, str):
                term = {"name": term}
            if not isinstance(term, dict):
                raise TypeError(f"{term_where}: a loss spec must be a name or a dict with 'name', "
                                f"got {term!r}")
            term = dict(term)
            weight = term.pop("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise TypeError(f"{term_where}: 'weight' must be a number, got {weight!r}")
            built.append((_build(term, term_where), float(weight)))
        options["terms"] = built
    elif name in ("aux", "multiscale"):
        if "loss" not in options:
            raise ValueError(f"{where}: missing 'loss', the spec of the loss to wrap")
        options["loss"] = _build(options["loss"], f"{where}.loss")

    _check_argument_types(constructor, options, where)
    try:
        return constructor(**options)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where}: {error}") from error


def _check_argument_names(constructor, options: dict, where: str) -> None:
    parameters = inspect.signature(constructor).parameters
    accepted = [p for p in parameters if p != "self"]
    for key in options:
        if key not in accepted:
            raise ValueError(f"{where}: unknown argument {key!r}; it accepts: {', '.join(accepted)}")
    required = [p.name for p in parameters.values() if p.default is inspect.Parameter.empty]
    missing = [p for p in required if p not in options]
    if missing:
        raise ValueError(f"{where}: missing required argument(s) {', '.join(missing)}")


def _check_argument_types(constructor, options: dict, where: str) -> None:
    hints = typing.get_type_hints(constructor.__init__)
    for key, value in options.items():
        expected = hints.get(key)
        if expected is not None and not _has_type(value, expected):
            raise TypeError(f"{where}: argument {key!r} should be {_describe(expected)}, "
                            f"got {value!r} ({type(value).__name__})")


def _has_type(value, expected) -> bool:
    """Whether `value` fits the annotation `expected` (the few annotation forms the losses use)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is typing.Any:
        return True
    if expected is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in args)
    if origin is typing.Literal:
        return value in args
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple | list) and len(value) == len(args) and all(
            _has_type(item, arg) for item, arg in zip(value, args, strict=True))
    if origin in (Sequence, list):
        return isinstance(value, list | tuple) and all(_has_type(item, args[0]) for item in value)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def _describe(expected) -> str:
    if expected is float:
        return "a number"
    if isinstance(expected, type):
        return expected.__name__
    text = str(expected).replace("typing.", "").replace("collections.abc.", "")
    return text.replace("torch.nn.modules.module.Module", "a loss").replace("torch.Tensor", "Tensor")

