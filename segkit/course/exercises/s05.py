"""Session 5 exercises: training.

    poly_lr            DeepLab's learning rate at one iteration: slow start, then poly decay to 0
    sgd_momentum_step  one update of torch.optim.SGD with momentum and weight decay, written by hand
"""

from __future__ import annotations

import torch

from segkit.course.exercises.checker import Exercise, allclose, register
from segkit.optim import lr_curve

# ---------------------------------------------------------------------------------------- poly schedule


def poly_lr(step: int, base_lr: float, total_steps: int, slow_start_steps: int = 0,
            slow_start_lr: float = 0.0, slow_start: str = "constant", power: float = 0.9) -> float:
    """The learning rate at iteration `step` (0, 1, 2, ...) of DeepLab's schedule.

    With S = slow_start_steps, T = total_steps:
        step < S:   slow_start_lr                                            (slow_start="constant")
                    slow_start_lr + (base_lr - slow_start_lr) * step / S     (slow_start="linear")
        step >= S:  base_lr * (1 - t' / T')^power,  t' = min(step - S, T'),  T' = T - S
    so the poly clock starts at 0 when the slow start ends, the rate never exceeds base_lr, and it stays
    at 0 from step T on. Same as segkit.optim.lr_curve("poly", ...)[step].
    """
    options = {"power": power}
    if slow_start_steps:
        options.update(slow_start_steps=slow_start_steps, slow_start_lr=slow_start_lr, slow_start=slow_start)
    return lr_curve("poly", base_lr, total_steps, num_steps=step + 1, **options)[step]


def _poly_cases(rng) -> list[tuple[str, tuple]]:
    base = float(rng.choice([0.01, 0.007, 0.1]))
    return [
        ("step 0, no slow start: the base rate", (0, base, 100)),
        ("step 40 of 100, no slow start", (40, base, 100)),
        ("the last step (99 of 100)", (99, base, 100)),
        ("step 100 of 100: training is over, the rate is 0", (100, base, 100)),
        ("step 130 of 100: stays 0 (not negative, not complex)", (130, base, 100)),
        ("power 1: a straight line", (25, base, 100, 0, 0.0, "constant", 1.0)),
        ("constant slow start, step 5 of 20", (5, base, 100, 20, 1e-4)),
        ("first step after the slow start (t' = 0): the full base rate", (20, base, 100, 20, 1e-4)),
        ("step 60 with a slow start of 20: t' = 40 of T' = 80", (60, base, 100, 20, 1e-4)),
        ("linear slow start, halfway through it", (10, base, 100, 20, 0.1 * base, "linear")),
        ("linear slow start, step 50: poly after the ramp, never above base",
         (50, base, 100, 20, 0.1 * base, "linear")),
        ("linear slow start, step 21", (21, base, 100, 20, 0.0, "linear")),
        ("with a slow start, step 100: 0", (100, base, 100, 20, 1e-4)),
        ("a random step of 1000, slow start 50", (int(rng.integers(0, 1000)), base, 1000, 50, 1e-4)),
    ]


register(Exercise(
    name="poly_lr",
    description="DeepLab's rate at one step: slow start (constant or linear), then base * (1 - t'/T')^power",
    reference=poly_lr,
    make_cases=_poly_cases,
    compare=lambda got, expected: allclose(got, expected, rtol=1e-6, atol=1e-12),
    hint="after the slow start use t' = step - S and T' = T - S (not step and T); clamp t' to at most T' so "
         "the rate stays 0 after the end; the linear ramp only runs while step < S and goes from "
         "slow_start_lr to base_lr",
))


# ------------------------------------------------------------------------------------------ SGD step


def sgd_momentum_step(param: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor, lr: float,
                      momentum: float = 0.9, weight_decay: float = 0.0):
    """One step of torch.optim.SGD(lr, momentum, weight_decay) (no dampening, no Nesterov).

        g     = grad + weight_decay * param         (L2 decay is added to the gradient first)
        buf'  = momentum * buf + g                  (buf = zeros before the first step)
        param' = param - lr * buf'
    Returns (param', buf'). The reference runs torch.optim.SGD itself.
    """
    p = param.detach().clone().requires_grad_(True)
    p.grad = grad.detach().clone()
    optimizer = torch.optim.SGD([p], lr=lr, momentum=momentum, weight_decay=weight_decay)
    if momentum:
        optimizer.state[p]["momentum_buffer"] = buf.detach().clone()
    optimizer.step()
    new_buf = optimizer.state[p]["momentum_buffer"] if momentum else grad + weight_decay * param
    return p.detach(), new_buf.detach()


def _sgd_cases(rng) -> list[tuple[str, tuple]]:
    def tensor(*shape):
        return torch.tensor(rng.normal(0, 1, shape), dtype=torch.float32)

    return [
        ("first step (buffer of zeros), momentum 0.9", (tensor(5), tensor(5), torch.zeros(5), 0.1)),
        ("a later step: buffer not zero", (tensor(4, 3), tensor(4, 3), tensor(4, 3), 0.05)),
        ("weight decay 1e-2", (tensor(6), tensor(6), tensor(6), 0.1, 0.9, 1e-2)),
        ("large weight decay 0.5, small gradient", (tensor(3), 0.01 * tensor(3), tensor(3), 0.2, 0.9, 0.5)),
        ("momentum 0.5", (tensor(2, 2), tensor(2, 2), tensor(2, 2), 1.0, 0.5)),
        ("momentum 0: plain SGD, the new buffer is the (decayed) gradient",
         (tensor(4), tensor(4), torch.zeros(4), 0.3, 0.0, 0.1)),
    ]


register(Exercise(
    name="sgd_momentum_step",
    description="one torch.optim.SGD update: g = grad + wd * param; buf = m * buf + g; param -= lr * buf",
    reference=sgd_momentum_step,
    make_cases=_sgd_cases,
    hint="add weight_decay * param to the gradient BEFORE the momentum; the buffer is momentum * buf + g "
         "(no (1 - momentum) factor, no lr inside it); the step is param - lr * new_buf; return both",
))
