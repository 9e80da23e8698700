"""segkit.optim schedules against torch's schedulers and DeepLab's formula, and their state dicts."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, PolynomialLR, SequentialLR

from segkit.optim import SCHEDULERS, build_scheduler, lr_curve
from segkit.registry import RegistryError

BASE_LR = 0.01


def _optimizer(lrs=(BASE_LR,), lr_mults=None) -> torch.optim.SGD:
    """SGD over dummy parameters, one group per lr (and lr_mult when given)."""
    groups = []
    for index, lr in enumerate(lrs):
        group = {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
        if lr_mults is not None:
            group["lr_mult"] = lr_mults[index]
        groups.append(group)
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def _rates(optimizer, scheduler, steps: int) -> list[list[float]]:
    """The rates of every group at iterations 0 .. steps-1, stepping the scheduler once per iteration."""
    rates = []
    for _ in range(steps):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return rates


def _assert_close_lists(ours, reference, rel=1e-12, abs_tol=0.0):
    assert len(ours) == len(reference)
    for t, (a, b) in enumerate(zip(ours, reference, strict=True)):
        for x, y in zip(a, b, strict=True):
            assert math.isclose(x, y, rel_tol=rel, abs_tol=abs_tol), f"iteration {t}: {x} != {y}"


def test_poly_matches_torch_polynomial_lr_step_for_step():
    total = 60
    ours_opt = _optimizer((0.01, 0.1))
    ours = build_scheduler(ours_opt, "poly", total_steps=total)
    torch_opt = _optimizer((0.01, 0.1))
    reference = PolynomialLR(torch_opt, total_iters=total, power=0.9)
    # All steps, and 10 past the end (both stay at 0).
    _assert_close_lists(_rates(ours_opt, ours, total + 10), _rates(torch_opt, reference, total + 10))


def deeplab_lr(step, base_lr, total, power, slow_start_steps, slow_start_lr, burnin, end_lr=0.0):
    """tensorflow/models research/deeplab get_model_learning_rate, 'poly' policy, written out."""
    adjusted_step = max(step - slow_start_steps, 0)
    decay_steps = total - slow_start_steps
    p = min(adjusted_step, decay_steps) / decay_steps  # tf polynomial_decay clamps the step
    poly = (base_lr - end_lr) * (1 - p) ** power + end_lr
    if burnin == "linear":
        slow = slow_start_lr + (base_lr - slow_start_lr) * step / slow_start_steps
    else:
        slow = slow_start_lr
    return slow if step < slow_start_steps else poly


@pytest.mark.parametrize("burnin", ["constant", "linear"])
def test_slow_start_matches_deeplab_formula(burnin):
    total, start, slow_lr = 50, 8, 1e-4
    opt = _optimizer()
    scheduler = build_scheduler(opt, "poly", total_steps=total, slow_start_steps=start, slow_start_lr=slow_lr,
                                slow_start=burnin, min_lr=1e-5)
    ours = [r[0] for r in _rates(opt, scheduler, total + 20)]
    expected = [deeplab_lr(t, BASE_LR, total, 0.9, start, slow_lr, burnin, end_lr=1e-5)
                for t in range(total + 20)]
    for t, (a, b) in enumerate(zip(ours, expected, strict=True)):
        assert math.isclose(a, b, rel_tol=1e-12), f"iteration {t}: {a} != {b}"
    # After slow start: never above base, never rising, and at the end value from total_steps on.
    after = ours[start:]
    assert after[0] == BASE_LR and max(after) <= BASE_LR
    assert all(later <= earlier for earlier, later in zip(after, after[1:], strict=False))
    assert ours[total:] == [1e-5] * 20


def test_warmup_poly_matches_torch_sequential_lr_and_hand_formula():
    total, warmup, start_factor = 40, 6, 0.1
    ours_opt = _optimizer((0.01, 0.05))
    ours = build_scheduler(ours_opt, "warmup_poly", total_steps=total, warmup_steps=warmup,
                           start_factor=start_factor)
    torch_opt = _optimizer((0.01, 0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR passes the deprecated `epoch` to PolynomialLR
        reference = SequentialLR(
            torch_opt,
            [LinearLR(torch_opt, start_factor=start_factor, total_iters=warmup),
             PolynomialLR(torch_opt, total_iters=total - warmup, power=0.9)],
            milestones=[warmup],
        )
        torch_rates = _rates(torch_opt, reference, total)
    ours_rates = _rates(ours_opt, ours, total)
    _assert_close_lists(ours_rates, torch_rates, rel=1e-12)

    def by_hand(t, base):
        if t < warmup:
            return base * (start_factor + (1 - start_factor) * t / warmup)
        return base * (1 - (t - warmup) / (total - warmup)) ** 0.9

    _assert_close_lists(ours_rates, [[by_hand(t, 0.01), by_hand(t, 0.05)] for t in range(total)])


def test_warmup_poly_equals_deeplab_linear_slow_start():
    options = {"total_steps": 30, "num_steps": 35}
    warmup = lr_curve("warmup_poly", 0.02, warmup_steps=5, start_factor=0.05, min_lr=1e-4, **options)
    slow_start = lr_curve("poly", 0.02, slow_start_steps=5, slow_start_lr=0.05 * 0.02, slow_start="linear",
                          min_lr=1e-4, **options)
    for a, b in zip(warmup, slow_start, strict=True):
        assert math.isclose(a, b, rel_tol=1e-12)


def test_min_lr_follows_mmseg_poly_formula():
    total, eta_min = 25, 1e-4
    rates = lr_curve("poly", BASE_LR, total, num_steps=total + 3, min_lr=eta_min)
    for t, rate in enumerate(rates):
        expected = (BASE_LR - eta_min) * (1 - min(t, total) / total) ** 0.9 + eta_min
        assert math.isclose(rate, expected, rel_tol=1e-12)


@pytest.mark.parametrize("eta_min", [0.0, 1e-4])
def test_cosine_matches_torch_cosine_annealing(eta_min):
    total = 50
    ours_opt = _optimizer((0.01, 0.1))
    ours = build_scheduler(ours_opt, "cosine", total_steps=total, min_lr=eta_min)
    torch_opt = _optimizer((0.01, 0.1))
    reference = CosineAnnealingLR(torch_opt, T_max=total, eta_min=eta_min)
    ours_rates = _rates(ours_opt, ours, total + 10)
    # torch's cosine is computed recursively (round-off ~1e-17 near the bottom) and rises again after T_max.
    _assert_close_lists(ours_rates[: total + 1], _rates(torch_opt, reference, total + 1), abs_tol=1e-15)
    assert all(rates == [eta_min, eta_min] for rates in ours_rates[total:])


def test_cosine_with_warmup_by_hand():
    total, warmup = 20, 4
    rates = lr_curve("cosine", BASE_LR, total, warmup_steps=warmup, start_factor=0.25)
    for t, rate in enumerate(rates):
        if t < warmup:
            expected = BASE_LR * (0.25 + 0.75 * t / warmup)
        else:
            expected = BASE_LR * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2
        assert math.isclose(rate, expected, rel_tol=1e-12, abs_tol=1e-18)


SCHEDULE_OPTIONS = {
    "poly": {"slow_start_steps": 7, "slow_start_lr": 1e-3, "slow_start": "linear", "min_lr": 1e-4},
    "warmup_poly": {"warmup_steps": 7, "start_factor": 0.1},
    "cosine": {"warmup_steps": 7, "min_lr": 1e-4},
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_state_dict_round_trip_continues_the_same_curve(name):
    total, stop = 40, 13
    options = SCHEDULE_OPTIONS[name]
    opt = _optimizer((0.01, 0.03), lr_mults=(1.0, 3.0))
    uninterrupted = _rates(opt, build_scheduler(opt, name, total, **options), total + 5)

    opt = _optimizer((0.01, 0.03), lr_mults=(1.0, 3.0))
    scheduler = build_scheduler(opt, name, total, **options)
    first_part = _rates(opt, scheduler, stop)
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain types only: loads without unpickling code

    # Resume the torch way: new optimizer and scheduler, then load optimizer state, then scheduler state.
    resumed_opt = _optimizer((0.01, 0.03), lr_mults=(1.0, 3.0))
    resumed = build_scheduler(resumed_opt, name, total, **options)
    resumed_opt.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])
    assert resumed.last_epoch == stop
    second_part = _rates(resumed_opt, resumed, total + 5 - stop)
    assert first_part + second_part == uninterrupted

    # The other order (optimizer loaded first, scheduler built on it) continues the same curve too.
    other_opt = _optimizer((0.01, 0.03), lr_mults=(1.0, 3.0))
    other_opt.load_state_dict(saved["optimizer"])
    other = build_scheduler(other_opt, name, total, **options)
    other.load_state_dict(saved["scheduler"])
    assert first_part + _rates(other_opt, other, total + 5 - stop) == uninterrupted


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_lr_curve_matches_the_stepped_scheduler(name):
    options = SCHEDULE_OPTIONS[name]
    opt = _optimizer((0.02,))
    stepped = [r[0] for r in _rates(opt, build_scheduler(opt, name, 30, **options), 36)]
    assert lr_curve(name, 0.02, 30, num_steps=36, **options) == stepped
    assert lr_curve(name, 0.02, 30, **options) == stepped[:30]


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_rate_never_rises_after_the_start_phase_and_stays_at_the_end(name):
    options = SCHEDULE_OPTIONS[name]
    start, total = 7, 30
    rates = lr_curve(name, BASE_LR, total, num_steps=total + 100, **options)
    assert max(rates) <= BASE_LR
    after = rates[start:]
    assert all(later <= earlier for earlier, later in zip(after, after[1:], strict=False))
    end_value = options.get("min_lr", 0.0)
    assert rates[total:] == [end_value] * 100


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_no_attribute_shadows_step(name):
    opt = _optimizer()
    scheduler = build_scheduler(opt, name, 10, **SCHEDULE_OPTIONS[name])
    assert "step" not in vars(scheduler) and "step" not in scheduler.state_dict()
    assert scheduler.step.__func__ is type(scheduler).step
    for _ in range(15):  # calling step() after the start phase still works (and keeps working)
        opt.step()
        scheduler.step()
    assert scheduler.last_epoch == 15


def test_build_scheduler_errors_are_clear():
    opt = _optimizer()
    with pytest.raises(RegistryError, match="unknown schedule 'step'; known schedules: cosine, poly, warmup"):
        build_scheduler(opt, "step", 10)
    with pytest.raises(ValueError, match="needs total_steps"):
        build_scheduler(opt, "poly")
    with pytest.raises(RegistryError, match=r"schedule 'poly' has no option 'warmup_steps' \(did you mean "
                                            r"'slow_start_steps'\?\); its options: power"):
        build_scheduler(opt, "poly", 10, warmup_steps=3)
    with pytest.raises(ValueError, match="slow_start_steps=3 needs slow_start_lr"):
        build_scheduler(opt, "poly", 10, slow_start_steps=3)
    with pytest.raises(ValueError, match="slow_start must be 'constant' or 'linear'"):
        build_scheduler(opt, "poly", 10, slow_start_steps=3, slow_start_lr=1e-4, slow_start="cosine")
    with pytest.raises(ValueError, match=r"warmup_steps must be an int in \[0, total_steps=10\)"):
        build_scheduler(opt, "warmup_poly", 10, warmup_steps=10)
    with pytest.raises(ValueError, match="total_steps must be a positive int"):
        build_scheduler(opt, "cosine", 0)
    with pytest.raises(ValueError, match="min_lr=0.5 is outside"):
        build_scheduler(opt, "poly", 10, min_lr=0.5)
