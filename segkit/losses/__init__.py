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

The registry `LOSSES` (a segkit.registry.Registry) names each loss; its module is imported when the loss is
first built, so scipy, needed by the boundary loss alone, loads only for it. The void label is an argument
of every loss, `ignore_index` (default segkit.data.masks.VOID_INDEX = 255); segkit.build passes the config's
`data.ignore_index`.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING

from segkit.lazy import lazy_exports
from segkit.registry import Registry

if TYPE_CHECKING:
    import torch.nn as nn

LOSSES = Registry("loss", plural="losses", entries={
    "cross_entropy": "segkit.losses.cross_entropy:CrossEntropyLoss",
    "focal": "segkit.losses.focal:FocalLoss",
    "dice": "segkit.losses.region:DiceLoss",
    "jaccard": "segkit.losses.region:JaccardLoss",
    "lovasz": "segkit.losses.lovasz:LovaszSoftmaxLoss",
    "top_k": "segkit.losses.hard_pixels:TopKCrossEntropyLoss",
    "ohem": "segkit.losses.hard_pixels:OHEMCrossEntropyLoss",
    "boundary": "segkit.losses.boundary:BoundaryLoss",
    "sum": "segkit.losses.combine:WeightedSum",
    "aux": "segkit.losses.combine:AuxLoss",
    "multiscale": "segkit.losses.combine:MultiScaleLoss",
})

__getattr__, __dir__ = lazy_exports(__name__, {
    "AuxLoss": ".combine", "MultiScaleLoss": ".combine", "WeightedSum": ".combine",
    "resize_labels_nearest": ".combine",
    "BoundaryLoss": ".boundary", "class_distance_maps": ".boundary", "signed_distance_map": ".boundary",
    "CrossEntropyLoss": ".cross_entropy", "inverse_frequency_weights": ".cross_entropy",
    "median_frequency_weights": ".cross_entropy",
    "FocalLoss": ".focal",
    "OHEMCrossEntropyLoss": ".hard_pixels", "TopKCrossEntropyLoss": ".hard_pixels",
    "LovaszSoftmaxLoss": ".lovasz",
    "DiceLoss": ".region", "JaccardLoss": ".region",
})

__all__ = [
    "LOSSES", "build_loss", "AuxLoss", "BoundaryLoss", "CrossEntropyLoss", "DiceLoss", "FocalLoss",
    "JaccardLoss", "LovaszSoftmaxLoss", "MultiScaleLoss", "OHEMCrossEntropyLoss", "TopKCrossEntropyLoss",
    "WeightedSum", "class_distance_maps", "inverse_frequency_weights", "median_frequency_weights",
    "resize_labels_nearest", "signed_distance_map",
]


def build_loss(spec: str | dict, ignore_index: int | None = None) -> nn.Module:
    """Build a loss from a spec (see the module docstring).

    ignore_index: the void label (config: data.ignore_index), given to every loss of the spec that takes
    one; a spec that sets another value for it is refused. None: each loss's own default (VOID_INDEX).
    - "sum": "terms" is a list of specs, each with an optional "weight" (default 1.0).
    - "aux" and "multiscale": "loss" is itself a spec.
    - Every other key is passed to the constructor of `LOSSES[name]` after checking that the
      constructor has such an argument and that the value has the annotated type.
    Errors say where in the spec the fault is: an unknown name or argument is a segkit.registry.RegistryError
    (a ValueError), e.g. "loss ('sum').terms[1] ('focal'): loss 'focal' has no option 'gama' (did you mean
    'gamma'?); its options: gamma, alpha, ignore_index"; a value of the wrong type a TypeError.
    """
    return _build(spec, "loss", ignore_index)


def _build(spec, where: str, ignore_index: int | None) -> nn.Module:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise TypeError(f"{where}: a loss spec must be a name or a dict with 'name', got {spec!r}")
    if "name" not in spec:
        raise ValueError(f"{where}: the loss spec {spec!r} has no 'name'; known losses: "
                         f"{', '.join(LOSSES.names())}")
    options = dict(spec)
    name = options.pop("name")
    _blame(where if where != "loss" else "", LOSSES.check_name, name)
    where = f"{where} ({name!r})"
    constructor = LOSSES.get(name)
    _blame(where, LOSSES.check_options, name, options)
    _check_required(constructor, options, where)
    if ignore_index is not None and "ignore_index" in LOSSES.options(name):
        given = options.setdefault("ignore_index", ignore_index)
        if given != ignore_index:
            raise ValueError(f"{where}: ignore_index={given!r} differs from the data's void label "
                             f"{ignore_index} (data.ignore_index); set that instead")

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
            built.append((_build(term, term_where, ignore_index), float(weight)))
        options["terms"] = built
    elif name in ("aux", "multiscale"):
        if "loss" not in options:
            raise ValueError(f"{where}: missing 'loss', the spec of the loss to wrap")
        options["loss"] = _build(options["loss"], f"{where}.loss", ignore_index)

    _check_argument_types(constructor, options, where)
    try:
        return constructor(**options)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where}: {error}") from error


def _blame(where: str, check, *args) -> None:
    """Run a registry check, with `where` (the place in the spec, if any) in front of its message."""
    try:
        check(*args)
    except ValueError as error:
        raise type(error)(f"{where}: {error}" if where else str(error)) from None


def _check_required(constructor, options: dict, where: str) -> None:
    """ValueError naming the constructor's required arguments that `options` lacks."""
    parameters = inspect.signature(constructor).parameters.values()
    required = [p.name for p in parameters if p.default is inspect.Parameter.empty and p.name != "self"
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
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

