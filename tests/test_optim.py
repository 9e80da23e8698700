"""segkit.optim parameter groups and optimizers: exact group membership, weight decay, multipliers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.optim import build_optimizer, build_scheduler, lr_curve, param_groups
from segkit.registry import RegistryError


class TinySegNet(nn.Module):
    """A backbone with BatchNorm, a head with GroupNorm and a named last layer, plus odd cases."""

    last_layer_prefixes = ("classifier.2",)

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1)
        )
        self.classifier = nn.Sequential(nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 3, 1))
        # Norm layers of other types: found by module type, not by name.
        self.norms = nn.ModuleList([nn.SyncBatchNorm(4), nn.LayerNorm(4), nn.InstanceNorm2d(4, affine=True)])
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.tied = nn.Linear(2, 2, bias=False)
        self.tied_again = self.tied  # the same module (and parameter) under two names


# Written by hand from the model above: (role, kind) -> parameter names.
EXPECTED_MEMBERS = {
    "backbone.weight": ["backbone.0.weight", "backbone.3.weight"],
    "backbone.bias": ["backbone.3.bias"],
    "backbone.norm": ["backbone.1.weight", "backbone.1.bias"],
    "head.weight": ["classifier.0.weight", "tied.weight"],
    "head.bias": ["classifier.0.bias"],
    "head.norm": [
        "classifier.1.weight", "classifier.1.bias",
        "norms.0.weight", "norms.0.bias", "norms.1.weight", "norms.1.bias", "norms.2.weight", "norms.2.bias",
    ],
    "last_layer.weight": ["classifier.2.weight"],
    "last_layer.bias": ["classifier.2.bias"],
}


def test_group_membership_and_weight_decay():
    model = TinySegNet()
    groups = param_groups(model, weight_decay=5e-4)
    assert {g["name"]: g["param_names"] for g in groups} == EXPECTED_MEMBERS
    by_name = dict(model.named_parameters())  # named_parameters lists the tied parameter once
    for group in groups:
        assert [id(p) for p in group["params"]] == [id(by_name[n]) for n in group["param_names"]]
        expected_decay = 5e-4 if group["name"].endswith(".weight") else 0.0
        assert group["weight_decay"] == expected_decay, group["name"]
        assert group["lr_mult"] == 1.0

    # Every trainable parameter exactly once; the frozen layer nowhere.
    listed = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(listed) == sorted(trainable) and len(listed) == len(set(listed))
    assert id(model.frozen.weight) not in listed


def test_decay_everywhere_when_asked():
    groups = param_groups(TinySegNet(), weight_decay=1e-4, no_decay_norm_and_bias=False)
    assert all(g["weight_decay"] == 1e-4 for g in groups)


def test_multipliers_deeplab_style():
    # head x10, last layer x5 on top of the head, biases x2 -> last-layer biases x2*5*10.
    groups = param_groups(TinySegNet(), lr=0.01, head_lr_mult=10, last_layer_lr_mult=5, bias_lr_mult=2)
    expected = {
        "backbone.weight": 1, "backbone.bias": 2, "backbone.norm": 1,
        "head.weight": 10, "head.bias": 20, "head.norm": 10,
        "last_layer.weight": 50, "last_layer.bias": 100,
    }
    assert {g["name"]: g["lr_mult"] for g in groups} == expected
    for group in groups:
        assert group["lr"] == pytest.approx(0.01 * expected[group["name"]], rel=1e-15)


def test_empty_groups_are_dropped_and_prefixes_can_be_overridden():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    groups = param_groups(model, last_layer_prefixes=("2",), last_layer_lr_mult=10)
    assert {g["name"]: g["param_names"] for g in groups} == {
        "head.weight": ["0.weight"],
        "head.norm": ["1.weight", "1.bias"],
        "last_layer.weight": ["2.weight"],
        "last_layer.bias": ["2.bias"],
    }
    # "1" must not match "10.weight"-style names: prefixes match whole name components.
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(11)])
    groups = param_groups(model, last_layer_prefixes=("1",))
    last = [g for g in groups if g["name"].startswith("last_layer")]
    assert sorted(n for g in last for n in g["param_names"]) == ["1.bias", "1.weight"]


def test_ddp_style_wrapper_is_looked_through():
    model = TinySegNet()
    wrapped = nn.DataParallel(model)  # on CPU it just holds .module
    names = {g["name"]: g["param_names"] for g in param_groups(wrapped)}
    assert names == EXPECTED_MEMBERS


def test_group_option_errors_are_clear():
    plain = nn.Sequential(nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="head_lr_mult=10.*no trainable parameter name starts with"):
        param_groups(plain, head_lr_mult=10)
    with pytest.raises(ValueError, match="last_layer_prefixes .*'nope'.* match no trainable parameter"):
        param_groups(plain, last_layer_prefixes=("nope",))
    with pytest.raises(ValueError, match="last_layer_lr_mult=10 needs last_layer_prefixes"):
        param_groups(plain, last_layer_lr_mult=10)
    with pytest.raises(ValueError, match="bias_lr_mult must be >= 0"):
        param_groups(plain, bias_lr_mult=-1)


def test_build_optimizer_kinds_and_defaults():
    model = TinySegNet()
    sgd = build_optimizer(model, "sgd", lr=0.1, head_lr_mult=10)
    assert isinstance(sgd, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 and g["nesterov"] is False for g in sgd.param_groups)
    assert {g["name"]: g["lr"] for g in sgd.param_groups}["head.weight"] == pytest.approx(1.0)
    nesterov = build_optimizer(model, "sgd", lr=0.1, momentum=0.8, nesterov=True)
    assert all(g["momentum"] == 0.8 and g["nesterov"] for g in nesterov.param_groups)
    adam = build_optimizer(model, "adam", lr=1e-3, weight_decay=0.0)
    assert isinstance(adam, torch.optim.Adam) and not isinstance(adam, torch.optim.AdamW)
    adamw = build_optimizer(model, "adamw", lr=1e-3, betas=(0.8, 0.9), weight_decay=0.05)
    assert isinstance(adamw, torch.optim.AdamW)
    assert all(g["betas"] == (0.8, 0.9) for g in adamw.param_groups)
    assert {g["name"]: g["weight_decay"] for g in adamw.param_groups}["head.norm"] == 0.0


def test_build_optimizer_errors_are_clear():
    model = TinySegNet()
    with pytest.raises(RegistryError, match="unknown optimizer 'lamb'; known optimizers: adam, adamw, sgd"):
        build_optimizer(model, "lamb")
    with pytest.raises(RegistryError, match=r"optimizer 'sgd' has no option 'head_lr' \(did you mean "
                                            r"'head_lr_mult'\?\); its options: momentum, nesterov, "):
        build_optimizer(model, "sgd", head_lr=10)
    with pytest.raises(RegistryError, match="optimizer 'adam' has no option 'momentum'; its options: betas"):
        build_optimizer(model, "adam", momentum=0.9)
    with pytest.raises(RegistryError, match="optimizer 'sgd' has no option 'betas'; its options: momentum"):
        build_optimizer(model, "sgd", betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="lr must be > 0"):
        build_optimizer(model, "sgd", lr=0)


def test_schedulers_scale_every_group_by_its_multiplier():
    model = TinySegNet()
    optimizer = build_optimizer(model, "sgd", lr=0.02, head_lr_mult=10, bias_lr_mult=2)
    scheduler = build_scheduler(optimizer, "poly", total_steps=20, slow_start_steps=4, slow_start_lr=1e-3)
    curve = lr_curve("poly", 0.02, total_steps=20, slow_start_steps=4, slow_start_lr=1e-3)
    for t in range(20):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(group["lr_mult"] * curve[t], rel=1e-12, abs=1e-18)
        optimizer.step()
        scheduler.step()

    # torch's own LambdaLR multiplies each group's initial_lr (= lr * lr_mult) by the factor: same ratios.
    optimizer = build_optimizer(model, "sgd", lr=0.02, head_lr_mult=10)
    lambda_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.5**t)
    for t in range(3):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(0.02 * group["lr_mult"] * 0.5**t, rel=1e-12)
        optimizer.step()
        lambda_scheduler.step()


def _train(model: nn.Module, optimizer, grad_scale: dict[str, float] | None, steps: int = 4) -> None:
    """A few optimisation steps on a fixed batch; grad_scale multiplies gradients by parameter name."""
    torch.manual_seed(1)
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        for name, param in model.named_parameters():
            if grad_scale:
                param.grad *= grad_scale.get(name, 1.0)
        optimizer.step()


def _two_layer_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_with_sgd_lr_multipliers_equal_gradient_multipliers(momentum):
    """DeepLab multiplies gradients (last layer x10, biases x2); segkit multiplies learning rates. With SGD
    (and weight decay, as in DeepLab, scaled too) both give the same weights."""
    scale = {"0.weight": 1.0, "0.bias": 2.0, "2.weight": 10.0, "2.bias": 20.0}
    ours = _two_layer_net()
    opt = build_optimizer(ours, "sgd", lr=0.05, momentum=momentum, weight_decay=0.0,
                          last_layer_prefixes=("2",), last_layer_lr_mult=10, bias_lr_mult=2)
    _train(ours, opt, grad_scale=None)
    theirs = _two_layer_net()
    _train(theirs, torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=momentum), grad_scale=scale)
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_with_adam_lr_multipliers_differ_from_gradient_multipliers():
    """Adam normalises the gradient by its running RMS, so a gradient multiplier cancels out (up to eps),
    while an lr multiplier scales the step: the documented difference."""
    scale = {"2.weight": 10.0, "2.bias": 10.0}
    plain = _two_layer_net()
    _train(plain, torch.optim.Adam(plain.parameters(), lr=1e-2), grad_scale=None, steps=1)
    grad_scaled = _two_layer_net()
    _train(grad_scaled, torch.optim.Adam(grad_scaled.parameters(), lr=1e-2), grad_scale=scale, steps=1)
    lr_scaled = _two_layer_net()
    opt = build_optimizer(lr_scaled, "adam", lr=1e-2, weight_decay=0.0,
                          last_layer_prefixes=("2",), last_layer_lr_mult=10)
    _train(lr_scaled, opt, grad_scale=None, steps=1)
    start = _two_layer_net()
    step_plain = plain[2].weight - start[2].weight
    torch.testing.assert_close(grad_scaled[2].weight - start[2].weight, step_plain, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(lr_scaled[2].weight - start[2].weight, 10 * step_plain, rtol=1e-4, atol=1e-6)
