"""Optimizers, parameter groups and per-iteration learning-rate schedules.

    optimizer = build_optimizer(model, "sgd", lr=0.01, weight_decay=1e-4, head_lr_mult=10)
    scheduler = build_scheduler(optimizer, "poly", total_steps=30_000)

optimizers.py builds the parameter groups (no decay on norm layers and biases, lr multipliers);
schedules.py holds the schedules (DeepLab slow start + poly, warmup + poly, cosine) and `lr_curve`.
"""

from segkit.optim.optimizers import NORM_LAYER_TYPES, OPTIMIZERS, build_optimizer, param_groups
from segkit.optim.schedules import (
    SCHEDULERS,
    CosineLR,
    IterationSchedule,
    PolyLR,
    WarmupPolyLR,
    build_scheduler,
    lr_curve,
)

__all__ = [
    "NORM_LAYER_TYPES",
    "OPTIMIZERS",
    "SCHEDULERS",
    "CosineLR",
    "IterationSchedule",
    "PolyLR",
    "WarmupPolyLR",
    "build_optimizer",
    "build_scheduler",
    "lr_curve",
    "param_groups",
]
