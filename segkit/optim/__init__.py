"""Optimizers, parameter groups and per-iteration learning-rate schedules.

    optimizer = build_optimizer(model, "sgd", lr=0.01, weight_decay=1e-4, head_lr_mult=10)
    scheduler = build_scheduler(optimizer, "poly", total_steps=30_000)
    Trainer(..., make_scheduler=scheduler_factory("poly", power=0.9))   # built once total_steps is known

optimizers.py builds the parameter groups (no decay on norm layers and biases, lr multipliers) and the
optimizers; schedules.py holds the schedules (DeepLab slow start + poly, warmup + poly, cosine) and
`lr_curve`. The registries OPTIMIZERS and SCHEDULERS (segkit.registry.Registry) name them; their modules,
and torch, load when something is built.
"""

from segkit.lazy import lazy_exports
from segkit.registry import Registry

OPTIMIZERS = Registry("optimizer", {
    "sgd": "segkit.optim.optimizers:sgd",
    "adam": "segkit.optim.optimizers:adam",
    "adamw": "segkit.optim.optimizers:adamw",
})

SCHEDULERS = Registry("schedule", {
    "poly": "segkit.optim.schedules:PolyLR",
    "warmup_poly": "segkit.optim.schedules:WarmupPolyLR",
    "cosine": "segkit.optim.schedules:CosineLR",
})

__getattr__, __dir__ = lazy_exports(__name__, {
    "GROUP_OPTIONS": ".optimizers",
    "NORM_LAYER_TYPES": ".optimizers",
    "build_optimizer": ".optimizers",
    "param_groups": ".optimizers",
    "CosineLR": ".schedules",
    "IterationSchedule": ".schedules",
    "PolyLR": ".schedules",
    "WarmupPolyLR": ".schedules",
    "build_scheduler": ".schedules",
    "lr_curve": ".schedules",
    "scheduler_factory": ".schedules",
})

__all__ = [
    "GROUP_OPTIONS",
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
    "scheduler_factory",
]
