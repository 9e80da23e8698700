"""Optimizers with parameter groups: weight decay only where it belongs, and learning-rate multipliers.

Three ideas from the segmentation literature, all expressed as parameter groups:

1. No weight decay on normalisation layers and biases. Decaying a BatchNorm scale or a bias towards 0 does
   not regularise the function the way decaying a conv weight does; most recipes (timm, mmseg's
   `norm_decay_mult=0`, `bias_decay_mult=0`) turn it off.
2. A learning-rate multiplier for the head: the backbone (`backbone.` / `encoder.` parameters, usually
   pretrained) runs at the base rate, the freshly initialised head at `head_lr_mult` times it
   (torchvision's reference gives its aux head x10; PSPNet trains new layers x10).
3. DeepLab's gradient multipliers when fine-tuning from classification: biases x2 (`bias_lr_mult=2`),
   the last layers (the logits conv) x m (`last_layer_lr_mult=m`), so last-layer biases get x2m.

Multipliers are implemented as per-group learning-rate factors: group lr = lr * group["lr_mult"]. With
SGD, multiplying a gradient by m is the same as multiplying the learning rate by m, with or without
momentum: the momentum buffer is a sum of past gradients, buf = momentum * buf + grad, and the step is
lr * buf, so a constant factor on every grad comes out as a factor on the step. The weight-decay term is
scaled by m as well, as in DeepLab (TF-slim added the decay to the loss before multiplying gradients).
With Adam/AdamW it is NOT the same: Adam divides the gradient by its own running RMS, so a gradient
multiplier cancels out, while an lr multiplier really scales the step. segkit always means "lr multiplier".

Every multiplier is stored in its group as group["lr_mult"], so the schedulers in segkit.optim.schedules
(and torch's own, which multiply each group's `initial_lr`) scale all groups by the same curve.
"""

from __future__ import annotations

import torch
from torch import nn

# BatchNorm*, SyncBatchNorm and InstanceNorm* derive from _NormBase; the others stand alone.
NORM_LAYER_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)

ROLES = ("backbone", "head", "last_layer")
KINDS = ("weight", "bias", "norm")


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    """True when the parameter `name` lies under one of `prefixes` ("classifier.4" matches
    "classifier.4.weight" but not "classifier.40.weight")."""
    return any(name == p or name.startswith(p if p.endswith(".") else p + ".") for p in prefixes)


def _as_tuple(prefixes, option: str) -> tuple[str, ...]:
    if isinstance(prefixes, str):
        return (prefixes,)
    prefixes = tuple(prefixes)
    if not all(isinstance(p, str) and p for p in prefixes):
        raise TypeError(f"{option} must be a tuple of non-empty strings, got {prefixes!r}")
    return prefixes


def param_groups(
    model: nn.Module,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    no_decay_norm_and_bias: bool = True,
    backbone_prefixes: tuple[str, ...] = ("backbone.", "encoder."),
    head_lr_mult: float = 1.0,
    last_layer_prefixes: tuple[str, ...] | None = None,
    last_layer_lr_mult: float = 1.0,
    bias_lr_mult: float = 1.0,
) -> list[dict]:
    """Split the trainable parameters of `model` into optimizer parameter groups.

    Each parameter gets a role, which sets its multiplier, and a kind, which sets its weight decay:
      role "backbone"    name under one of `backbone_prefixes`      lr_mult 1
           "last_layer"  name under one of `last_layer_prefixes`    lr_mult head_lr_mult * last_layer_lr_mult
           "head"        everything else                            lr_mult head_lr_mult
      kind "weight"      weight of a conv/linear/... layer          decay weight_decay
           "bias"        parameter "bias" of a non-norm layer       decay 0*, lr_mult times bias_lr_mult
           "norm"        parameter of a normalisation layer (BatchNorm, SyncBatchNorm, GroupNorm,
                         LayerNorm, InstanceNorm, RMSNorm; found by module type)   decay 0*
      (* weight_decay instead when no_decay_norm_and_bias=False)
    So with DeepLab's settings (bias_lr_mult=2, last_layer_lr_mult=m) last-layer biases get 2m.
    One group per (role, kind) that has parameters, in that order; each group is a dict with keys
    "name" (e.g. "head.bias"), "params", "param_names", "weight_decay", "lr_mult", and "lr" = lr * lr_mult
    when `lr` is given. Pass the result to a torch optimizer as is; without `lr` the optimizer's default
    lr is used for every group and the multipliers are NOT applied (build_optimizer applies them).

    Parameters with requires_grad=False (frozen) are left out; every trainable parameter is in exactly one
    group (a parameter shared by two modules counts once). `last_layer_prefixes=None` takes the model's
    `last_layer_prefixes` attribute when it has one. A DataParallel/DistributedDataParallel wrapper is
    looked through, so names have no "module." prefix.
    """
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    if not isinstance(model, nn.Module):
        raise TypeError(f"param_groups needs an nn.Module, got {type(model).__name__}")
    backbone_prefixes = _as_tuple(backbone_prefixes, "backbone_prefixes")
    if last_layer_prefixes is None:
        last_layer_prefixes = getattr(model, "last_layer_prefixes", ())
    last_layer_prefixes = _as_tuple(last_layer_prefixes, "last_layer_prefixes")
    for option, value in [("head_lr_mult", head_lr_mult), ("last_layer_lr_mult", last_layer_lr_mult),
                          ("bias_lr_mult", bias_lr_mult), ("weight_decay", weight_decay)]:
        if value < 0:
            raise ValueError(f"{option} must be >= 0, got {value!r}")

    role_mult = {"backbone": 1.0, "head": head_lr_mult, "last_layer": head_lr_mult * last_layer_lr_mult}
    no_decay = 0.0 if no_decay_norm_and_bias else weight_decay
    kind_decay = {"weight": weight_decay, "bias": no_decay, "norm": no_decay}
    kind_mult = {"weight": 1.0, "bias": bias_lr_mult, "norm": 1.0}
    members: dict[tuple[str, str], list[tuple[str, nn.Parameter]]] = {
        (role, kind): [] for role in ROLES for kind in KINDS
    }

    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for local_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{module_name}.{local_name}" if module_name else local_name
            if _matches(name, last_layer_prefixes):
                role = "last_layer"
            elif _matches(name, backbone_prefixes):
                role = "backbone"
            else:
                role = "head"
            if isinstance(module, NORM_LAYER_TYPES):
                kind = "norm"
            elif local_name == "bias":
                kind = "bias"
            else:
                kind = "weight"
            members[(role, kind)].append((name, param))

    def count(role: str) -> int:
        return sum(len(members[(role, kind)]) for kind in KINDS)

    if head_lr_mult != 1.0 and count("backbone") == 0:
        raise ValueError(
            f"head_lr_mult={head_lr_mult} but no trainable parameter name starts with {backbone_prefixes}: "
            "the model has no backbone to tell apart from its head (set backbone_prefixes)"
        )
    if last_layer_prefixes and count("last_layer") == 0:
        raise ValueError(f"last_layer_prefixes {last_layer_prefixes} match no trainable parameter")
    if last_layer_lr_mult != 1.0 and not last_layer_prefixes:
        raise ValueError(
            f"last_layer_lr_mult={last_layer_lr_mult} needs last_layer_prefixes (the model has no "
            "`last_layer_prefixes` attribute)"
        )

    groups = []
    for (role, kind), named in members.items():
        if not named:
            continue
        group = {
            "name": f"{role}.{kind}",
            "params": [param for _, param in named],
            "param_names": [name for name, _ in named],
            "weight_decay": kind_decay[kind],
            "lr_mult": role_mult[role] * kind_mult[kind],
        }
        if lr is not None:
            group["lr"] = lr * group["lr_mult"]
        groups.append(group)
    if not groups:
        raise ValueError("the model has no trainable parameter (all have requires_grad=False)")
    return groups


GROUP_OPTIONS = (
    "no_decay_norm_and_bias",
    "backbone_prefixes",
    "head_lr_mult",
    "last_layer_prefixes",
    "last_layer_lr_mult",
    "bias_lr_mult",
)


def sgd(params, lr: float, weight_decay: float, momentum: float = 0.9,
        nesterov: bool = False) -> torch.optim.SGD:
    """torch.optim.SGD with momentum; DeepLab's and torchvision's defaults (momentum 0.9)."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)


def adam(params, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8) -> torch.optim.Adam:
    """torch.optim.Adam; its weight_decay is an L2 term added to the gradient."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps)


def adamw(params, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8) -> torch.optim.AdamW:
    """torch.optim.AdamW; its weight decay is decoupled: p -= lr * weight_decay * p."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps)


def build_optimizer(
    model: nn.Module, name: str = "sgd", lr: float = 0.01, weight_decay: float = 1e-4, **options
) -> torch.optim.Optimizer:
    """An optimizer over `param_groups(model, lr=lr, weight_decay=weight_decay, **group_options)`.

    name: a key of segkit.optim.OPTIMIZERS: "sgd" (momentum, default 0.9; nesterov, default False), "adam"
    or "adamw" (betas, default (0.9, 0.999); eps, default 1e-8). Defaults follow DeepLab/torchvision: SGD,
    momentum 0.9, wd 1e-4.
    options: the optimizer's own (above), and the parameter-group options no_decay_norm_and_bias,
    backbone_prefixes, head_lr_mult, last_layer_prefixes, last_layer_lr_mult, bias_lr_mult (see
    param_groups). Each group's lr is lr * group["lr_mult"]. An unknown option, or one of another
    optimizer (betas for sgd), raises segkit.registry.RegistryError listing the options of `name`.
    """
    from segkit.optim import OPTIMIZERS

    OPTIMIZERS.check_name(name)
    group_options = {key: options.pop(key) for key in list(options) if key in GROUP_OPTIONS}
    OPTIMIZERS.check_options(name, options, skip=("params", "lr", "weight_decay"), also=GROUP_OPTIONS)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    groups = param_groups(model, lr=lr, weight_decay=weight_decay, **group_options)
    return OPTIMIZERS.get(name)(groups, lr=lr, weight_decay=weight_decay, **options)
