"""Learning-rate schedules stepped once per training iteration (not per epoch).

Every schedule here is a closed-form function of the iteration number t = 0, 1, 2, ...: the rate of
parameter group g at iteration t is computed from t and the group's initial rate alone, never from the
previous rate. That makes them easy to plot (`lr_curve`), exact to compare with a formula, and safe to
resume: the state is just the iteration counter.

All of them are `torch.optim.lr_scheduler.LRScheduler` subclasses and are used the torch way:

    scheduler = build_scheduler(optimizer, "poly", total_steps=30_000)
    for images, masks in loader:           # one iteration
        loss.backward()
        optimizer.step()
        scheduler.step()                   # after optimizer.step(), once per iteration

How the rate of each parameter group is found: the scheduler remembers each group's rate at construction
(`group["initial_lr"]`, which `build_optimizer` set to `lr * group["lr_mult"]`) and multiplies the curve
into it, so a group with multiplier m always runs at m times the rate of a group with multiplier 1.
Absolute rates in the options (`min_lr`, `slow_start_lr`) are given for multiplier 1 and are scaled by
the group's `lr_mult` too (a group without "lr_mult" counts as 1), so every group follows the same curve
shape. (mmsegmentation applies its eta_min unscaled to every group; the two agree for lr_mult 1.)

Resuming: save `scheduler.state_dict()` (plain numbers, loads with `torch.load(weights_only=True)`) with
`optimizer.state_dict()`. To resume, build the optimizer and the scheduler with the same options as at the
start, then call `optimizer.load_state_dict(saved_optimizer)` and `scheduler.load_state_dict(saved_scheduler)`
(torch's order; here the other order works too, because loading the scheduler writes the rate of the
restored iteration into the groups). Training then continues on the same curve.

Schedules (the registry `segkit.optim.SCHEDULERS`):

- "poly" (`PolyLR`): DeepLab's slow start followed by poly decay (tensorflow/models research/deeplab,
  `get_model_learning_rate`). With S = slow_start_steps and T = total_steps:
      t <  S:  slow_start_lr                                     (slow_start="constant")
               slow_start_lr + (base - slow_start_lr) * t / S    (slow_start="linear" burn-in)
      t >= S:  min_lr + (base - min_lr) * (1 - t' / T')^power,   t' = min(t - S, T'),  T' = T - S
  With S = 0 and min_lr = 0 this is `torch.optim.lr_scheduler.PolynomialLR(total_iters=T, power=power)`.
- "warmup_poly" (`WarmupPolyLR`): the torchvision / mmsegmentation recipe: a linear warmup of the factor
  from `start_factor` to 1 over W = warmup_steps iterations, then the same poly decay over the T - W
  remaining iterations. It is exactly
      SequentialLR([LinearLR(start_factor, total_iters=W), PolynomialLR(total_iters=T - W, power)],
                   milestones=[W])
  (torchvision's reference), i.e. the warmup never multiplies the poly curve: the poly clock starts at 0
  when the warmup ends, and iteration W runs at the full base rate. It is also DeepLab's linear slow start
  with slow_start_lr = start_factor * base. mmsegmentation 1.x (mmengine's LinearLR(begin=0, end=W) then
  PolyLR(begin=W, end=T)) is the same up to one iteration: mmengine's schedulers last end - begin - 1
  steps, so its warmup reaches the base rate at t = W - 1 and its poly reaches eta_min at t = T - 1.
  mmcv 1.x (mmsegmentation 0.x) instead multiplied a warmup factor into a poly curve that started at
  t = 0 over all T iterations: a different, slightly lower curve.
- "cosine" (`CosineLR`): optional linear warmup as above, then
      min_lr + (base - min_lr) * (1 + cos(pi * t' / T')) / 2,   t' = min(t - W, T'),  T' = T - W
  With W = 0 it equals `torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T, eta_min=min_lr)` for
  t <= T. (After T_max torch's cosine rises again; ours stays at min_lr.)

After the last iteration (t >= T) every schedule stays at its end value (min_lr, 0 by default); it never
rises again. (The original course's slow-start scheduler raised the rate again when called after its
slow-start phase.)
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


def poly_decay(base_lr: float, end_lr: float, t: int, decay_steps: int, power: float) -> float:
    """end_lr + (base_lr - end_lr) * (1 - t / decay_steps)^power, with t clamped to [0, decay_steps]."""
    t = min(max(t, 0), decay_steps)
    factor = (1.0 - t / decay_steps) ** power
    return factor * base_lr + (1.0 - factor) * end_lr  # this order gives exactly base_lr at t = 0


def cosine_decay(base_lr: float, end_lr: float, t: int, decay_steps: int) -> float:
    """end_lr + (base_lr - end_lr) * (1 + cos(pi * t / decay_steps)) / 2, t clamped to [0, decay_steps]."""
    t = min(max(t, 0), decay_steps)
    factor = (1.0 + math.cos(math.pi * t / decay_steps)) / 2.0
    return factor * base_lr + (1.0 - factor) * end_lr


def linear_ramp(start_lr: float, base_lr: float, t: int, ramp_steps: int) -> float:
    """start_lr + (base_lr - start_lr) * t / ramp_steps: start_lr at t = 0, base_lr at t = ramp_steps."""
    return start_lr + (base_lr - start_lr) * t / ramp_steps


class IterationSchedule(LRScheduler):
    """Base class: `rate(t, base_lr, lr_mult)` gives the rate of one parameter group at iteration t.

    Subclasses only write `rate`; this class feeds it the iteration counter (`self.last_epoch`, which
    counts iterations here despite its torch name), each group's initial rate and its "lr_mult".
    `state_dict()` holds plain numbers and strings only, so it can be saved with `torch.save` and loaded
    with `torch.load(weights_only=True)`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, last_epoch: int = -1) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int (iterations), got {total_steps!r}")
        self.total_steps = total_steps
        super().__init__(optimizer, last_epoch)

    def rate(self, t: int, base_lr: float, lr_mult: float) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        return [
            self.rate(t, base_lr, group.get("lr_mult", 1.0))
            for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True)
        ]

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the iteration counter, then write the rate of that iteration into the groups, so the
        curve continues whether the optimizer state was loaded before or after this call."""
        super().load_state_dict(state_dict)
        self._write_rates()

    def set_total_steps(self, total_steps: int) -> None:
        """Stretch (or shrink) the curve to end at `total_steps`, keeping the iteration counter t.

        Used when a run is resumed with more epochs: the rate at t becomes the new curve's rate at t (for
        "poly": base * (1 - t/T_new)^power instead of base * (1 - t/T_old)^power).
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int (iterations), got {total_steps!r}")
        self.total_steps = total_steps
        self._write_rates()

    def _write_rates(self) -> None:
        """Put the rate of the current iteration into every parameter group."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def _check_below_base(optimizer: torch.optim.Optimizer, option: str, value: float) -> None:
    """Raise when `value` (a rate for lr_mult 1) scaled by a group's lr_mult exceeds that group's rate."""
    for index, group in enumerate(optimizer.param_groups):
        base_lr = group.get("initial_lr", group["lr"])
        lr_mult = group.get("lr_mult", 1.0)
        if value < 0 or value * lr_mult > base_lr:
            raise ValueError(
                f"{option}={value} is outside [0, base learning rate] for parameter group {index} "
                f"(lr {base_lr} with lr_mult {lr_mult}); expected 0 <= {option} * lr_mult <= lr"
            )


def _check_steps(name: str, steps: int, total_steps: int) -> None:
    """total_steps must be a positive int and the start phase (slow start / warmup) shorter than it."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int (iterations), got {total_steps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < total_steps:
        raise ValueError(f"{name} must be an int in [0, total_steps={total_steps}), got {steps!r}")


class PolyLR(IterationSchedule):
    """DeepLab's learning rate: optional slow start, then poly decay (formula in the module docstring).

    Args:
        total_steps: T, the number of training iterations; the rate reaches min_lr at t = T and stays.
        power: exponent of the poly curve (DeepLab: 0.9).
        min_lr: end rate (DeepLab's end_learning_rate, mmseg's eta_min), for lr_mult 1.
        slow_start_steps: S, iterations of slow start before the poly decay begins (0 = none).
        slow_start_lr: rate during slow start (required when S > 0), for lr_mult 1 (DeepLab used 1e-4).
        slow_start: "constant" keeps slow_start_lr for S iterations; "linear" ramps from slow_start_lr to
            the base rate (DeepLab's slow_start_burnin_type="linear").
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        power: float = 0.9,
        min_lr: float = 0.0,
        slow_start_steps: int = 0,
        slow_start_lr: float | None = None,
        slow_start: str = "constant",
        last_epoch: int = -1,
    ) -> None:
        if power <= 0:
            raise ValueError(f"power must be > 0, got {power!r}")
        _check_steps("slow_start_steps", slow_start_steps, total_steps)
        if slow_start not in ("constant", "linear"):
            raise ValueError(f"slow_start must be 'constant' or 'linear', got {slow_start!r}")
        if slow_start_steps > 0 and slow_start_lr is None:
            raise ValueError(f"slow_start_steps={slow_start_steps} needs slow_start_lr (DeepLab used 1e-4)")
        self.power = power
        self.min_lr = min_lr
        self.slow_start_steps = slow_start_steps
        self.slow_start_lr = 0.0 if slow_start_lr is None else slow_start_lr
        self.slow_start = slow_start
        _check_below_base(optimizer, "min_lr", min_lr)
        _check_below_base(optimizer, "slow_start_lr", self.slow_start_lr)
        super().__init__(optimizer, total_steps, last_epoch)

    def rate(self, t: int, base_lr: float, lr_mult: float) -> float:
        start = self.slow_start_steps
        if t < start:
            if self.slow_start == "constant":
                return lr_mult * self.slow_start_lr
            return linear_ramp(lr_mult * self.slow_start_lr, base_lr, t, start)
        return poly_decay(base_lr, lr_mult * self.min_lr, t - start, self.total_steps - start, self.power)


class WarmupPolyLR(IterationSchedule):
    """Linear warmup of the factor from `start_factor` to 1 over `warmup_steps`, then poly decay over the
    remaining iterations (torchvision / mmsegmentation; exact compose semantics in the module docstring).

    mmsegmentation's configs use start_factor=1e-6 over 1500 iterations and min_lr=1e-4; torchvision's
    reference uses start_factor 0.01 (`--lr-warmup-decay`).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int,
        start_factor: float = 1e-6,
        power: float = 0.9,
        min_lr: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        _check_steps("warmup_steps", warmup_steps, total_steps)
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        if power <= 0:
            raise ValueError(f"power must be > 0, got {power!r}")
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor
        self.power = power
        self.min_lr = min_lr
        _check_below_base(optimizer, "min_lr", min_lr)
        super().__init__(optimizer, total_steps, last_epoch)

    def rate(self, t: int, base_lr: float, lr_mult: float) -> float:
        warmup = self.warmup_steps
        if t < warmup:
            return linear_ramp(self.start_factor * base_lr, base_lr, t, warmup)
        return poly_decay(base_lr, lr_mult * self.min_lr, t - warmup, self.total_steps - warmup, self.power)


class CosineLR(IterationSchedule):
    """Optional linear warmup (as in WarmupPolyLR), then half a cosine from the base rate down to min_lr."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        min_lr: float = 0.0,
        warmup_steps: int = 0,
        start_factor: float = 1e-6,
        last_epoch: int = -1,
    ) -> None:
        _check_steps("warmup_steps", warmup_steps, total_steps)
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        self.min_lr = min_lr
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor
        _check_below_base(optimizer, "min_lr", min_lr)
        super().__init__(optimizer, total_steps, last_epoch)

    def rate(self, t: int, base_lr: float, lr_mult: float) -> float:
        warmup = self.warmup_steps
        if t < warmup:
            return linear_ramp(self.start_factor * base_lr, base_lr, t, warmup)
        return cosine_decay(base_lr, lr_mult * self.min_lr, t - warmup, self.total_steps - warmup)


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str = "poly", total_steps: int | None = None, **options
) -> IterationSchedule:
    """Build the schedule `name` (in segkit.optim.SCHEDULERS) for `optimizer`, stepped once per iteration.

    Call it before `optimizer.load_state_dict(...)` when resuming (torch's rule: a new scheduler writes the
    groups' rates), then `scheduler.load_state_dict(saved)`; the curve continues where it stopped.
    """
    from segkit.optim import SCHEDULERS

    SCHEDULERS.check_name(name)
    SCHEDULERS.check_options(name, options, skip=("optimizer", "total_steps"))
    if total_steps is None:
        raise ValueError(f"schedule {name!r} needs total_steps (the number of training iterations)")
    return SCHEDULERS.get(name)(optimizer, total_steps=total_steps, **options)


def scheduler_factory(name: str = "poly", **options):
    """`make_scheduler(optimizer, total_steps)` for the Trainer: build_scheduler(optimizer, name,
    total_steps, **options), made when the Trainer knows its number of steps. The name and options are
    checked now, so a mistake shows before any training."""
    from segkit.optim import SCHEDULERS

    SCHEDULERS.check_name(name)
    SCHEDULERS.check_options(name, options, skip=("optimizer", "total_steps"))

    def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int) -> IterationSchedule:
        return build_scheduler(optimizer, name, total_steps=total_steps, **options)

    return make_scheduler


def lr_curve(
    name: str, base_lr: float, total_steps: int, num_steps: int | None = None, **options
) -> list[float]:
    """The rate used at iterations 0 .. num_steps-1 (default total_steps) by schedule `name`, for plotting.

    No model is needed: a single dummy parameter stands in for one, with lr_mult 1. The values are exactly
    what `build_scheduler(optimizer, name, total_steps, **options)` gives when stepped once per iteration.
    """
    dummy = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dummy], lr=base_lr)
    scheduler = build_scheduler(optimizer, name, total_steps, **options)
    rates = []
    for _ in range(total_steps if num_steps is None else num_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradient: a no-op that keeps torch's order check (optimizer, then scheduler)
        scheduler.step()
    return rates
