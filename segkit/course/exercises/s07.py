"""Session 7 exercises: evaluation, visualisation and debugging.

    error_codes            per-pixel verdict of a prediction: 0 correct, 1 wrong, 2 void (not scored)
    constant_logits_loss   the cross-entropy of a network that outputs the same logits at every pixel
                           (the loss to expect at initialisation: log C for uniform logits)
    flip_tta_probs         test-time augmentation with a left-right flip: the average of two softmaxes
    module_outputs         the outputs of named submodules, caught with your own forward hooks
"""

from __future__ import annotations

import torch
from torch import nn

from segkit.course.exercises.checker import Exercise, register
from segkit.hooks import capture_outputs
from segkit.inference import predict_probs
from segkit.models import UNet, build_model

VOID = 255

# Codes of `error_codes`, in the order segkit.viz.error_map colours them.
CORRECT, WRONG, NOT_SCORED = 0, 1, 2


# ------------------------------------------------------------------------------------------ error codes


def error_codes(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel verdict: 0 where pred == target, 1 where they differ, 2 where target is void (255).

    pred: (..., H, W) int64 predicted classes; target: the same shape, int64, 255 = void.
    Returns int64 of the same shape. Void comes first: a void pixel is neither right nor wrong, whatever
    the prediction there (the metrics leave it out too).
    """
    codes = (pred != target).long()  # 0 correct, 1 wrong
    return torch.where(target == VOID, torch.full_like(codes, NOT_SCORED), codes)


def _labels(rng, shape, num_classes: int, void_share: float = 0.0) -> torch.Tensor:
    labels = torch.as_tensor(rng.integers(0, num_classes, shape), dtype=torch.int64)
    if void_share:
        labels[torch.as_tensor(rng.random(shape) < void_share)] = VOID
    return labels


def _error_code_cases(rng) -> list[tuple[str, tuple]]:
    target = _labels(rng, (12, 16), 4, void_share=0.2)
    noisy = target.clone()
    noisy[noisy == VOID] = 0
    flip = torch.as_tensor(rng.random((12, 16)) < 0.3)
    noisy[flip] = (noisy[flip] + 1) % 4
    perfect_target = _labels(rng, (8, 8), 3, void_share=0.25)
    perfect = perfect_target.clone()
    perfect[perfect == VOID] = 2  # the model must predict a class at void pixels; any class is fine
    batch_target = _labels(rng, (2, 6, 7), 5, void_share=0.3)
    return [
        ("random 12x16 prediction, 4 classes, 20% void", (noisy, target)),
        ("no void pixel at all", (_labels(rng, (10, 10), 3), _labels(rng, (10, 10), 3))),
        ("a perfect prediction outside the void band", (perfect, perfect_target)),
        ("every pixel void", (_labels(rng, (5, 6), 3), torch.full((5, 6), VOID, dtype=torch.int64))),
        ("every pixel wrong", (torch.ones(4, 4, dtype=torch.int64), torch.zeros(4, 4, dtype=torch.int64))),
        ("a batch (2, 6, 7)", (_labels(rng, (2, 6, 7), 5), batch_target)),
    ]


register(Exercise(
    name="error_codes",
    description="per-pixel verdict of a prediction: 0 correct, 1 wrong, 2 void (target == 255)",
    reference=error_codes,
    make_cases=_error_code_cases,
    hint="decide void from the *target* (the prediction never holds 255) and let void win over wrong: "
         "torch.where(target == 255, 2, (pred != target).long())",
))


# ------------------------------------------------------------------------------ loss at initialisation


def constant_logits_loss(bias: torch.Tensor, class_counts: torch.Tensor) -> float:
    """Mean cross-entropy over pixels when the network outputs the logits `bias` at every pixel.

    bias: (C,) float logits (e.g. the bias of the last 1x1 conv when its weights are zero).
    class_counts: (C,) number of non-void pixels of each class in the data.

        loss = - sum_c n_c log softmax(b)_c / sum_c n_c

    With b = 0 (uniform logits) softmax(b)_c = 1/C and the loss is log C, whatever the counts; with
    b_c = log(n_c / N) it is the entropy of the class distribution, the best a constant can do.
    """
    counts = class_counts.double()
    log_probs = torch.log_softmax(bias.double(), dim=0)
    return float(-(counts * log_probs).sum() / counts.sum())


def _loss_cases(rng) -> list[tuple[str, tuple]]:
    skewed = torch.tensor([870, 30, 0, 25, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 20, 15, 0, 0, 0, 0])
    prior = skewed.double() / skewed.sum()
    log_prior = torch.log(prior.clamp_min(1e-6)).float()
    return [
        ("uniform logits, 21 classes (expect log 21 = 3.04)", (torch.zeros(21), skewed)),
        ("uniform logits, 2 classes", (torch.zeros(2), torch.tensor([3, 1]))),
        ("logits = log of the class shares (expect the entropy)", (log_prior, skewed)),
        ("random logits, 5 classes", (torch.as_tensor(rng.normal(0, 2, 5), dtype=torch.float32),
                                       torch.as_tensor(rng.integers(1, 100, 5)))),
        ("a large constant added to every logit (softmax does not change)",
         (torch.full((4,), 50.0) + torch.as_tensor(rng.normal(0, 1, 4), dtype=torch.float32),
          torch.tensor([10, 0, 5, 1]))),
        ("only one class present", (torch.as_tensor(rng.normal(0, 1, 3), dtype=torch.float32),
                                    torch.tensor([0, 7, 0]))),
    ]


register(Exercise(
    name="constant_logits_loss",
    description="cross-entropy per pixel when every pixel gets the same logits (log C for uniform logits)",
    reference=constant_logits_loss,
    make_cases=_loss_cases,
    hint="take log_softmax of the logits (not the raw logits), weight each class's -log p_c by its pixel "
         "count, divide by the total count; natural log (torch.log), not log2",
))


# ---------------------------------------------------------------------------------------- flip TTA


def flip_tta_probs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation: the mean of softmax(model(x)) and flip(softmax(model(flip(x)))).

    images: (N, 3, H, W) float. Returns (N, C, H, W) probabilities. The flip is left-right (the last
    dimension, W); the second prediction is flipped back before averaging; the model runs in eval mode.
    Same as segkit.inference.predict_probs(model, images, flip=True).
    """
    return predict_probs(model, images, flip=True)


def _random_conv(generator: torch.Generator, in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator))
    return conv


def _tta_cases(rng) -> list[tuple[str, tuple]]:
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))

    def images(*shape):
        return torch.randn(shape, generator=generator)

    plain = _random_conv(generator, 3, 4)  # a 3x3 kernel is not mirror-symmetric: flipping back matters
    with_norm = nn.Sequential(_random_conv(generator, 3, 6), nn.BatchNorm2d(6), nn.ReLU(),
                              _random_conv(generator, 6, 3))
    with torch.no_grad():  # running statistics far from a batch's own: train mode would give other numbers
        with_norm[1].running_mean.copy_(torch.randn(6, generator=generator))
        with_norm[1].running_var.copy_(torch.rand(6, generator=generator) * 4 + 0.5)
    return [
        ("one 8x8 image, a 3x3 conv with 4 classes", (plain, images(1, 3, 8, 8))),
        ("two images of 6x10 (not square)", (plain, images(2, 3, 6, 10))),
        ("a model with BatchNorm (eval mode matters)", (with_norm, images(2, 3, 9, 7))),
    ]


register(Exercise(
    name="flip_tta_probs",
    description="flip TTA: mean of softmax(model(x)) and the flipped-back softmax(model(flip(x)))",
    reference=flip_tta_probs,
    make_cases=_tta_cases,
    hint="model.eval(); flip the width (dims=[-1] / .flip(-1)), softmax over dim 1, flip the second "
         "prediction back, then average the probabilities (not the logits)",
))


# ------------------------------------------------------------------------------------ forward hooks


def module_outputs(model: nn.Module, images: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Run `model` once on `images` (no gradients, in the mode it is in) and return {name: the output of
    the submodule `name`}, caught with forward hooks.

    names: submodule names as in `model.named_modules()` ("stem", "aspp.atrous.0"); each module runs once.
    Each value is a detached copy: a later in-place operation of the model (a ReLU(inplace=True) after a
    BatchNorm) must not change it. The hooks are removed afterwards. Same as segkit.hooks.capture_outputs.
    """
    with torch.no_grad(), capture_outputs(model, names) as outputs:
        model(images)
    return dict(outputs)


def _with_running_statistics(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """`model` in eval mode with BatchNorm running statistics far from 0 and 1 (so every BatchNorm acts)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def _hook_cases(rng) -> list[tuple[str, tuple]]:
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    torch.manual_seed(int(rng.integers(2**31)))  # the initial weights of the models below
    stack = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Conv2d(4, 2, 1))
    unet = UNet(num_classes=3, base_channels=4, depth=2)
    deeplab = build_model("deeplabv3", num_classes=3, backbone="resnet18", output_stride=16)
    with torch.no_grad():
        models = [_with_running_statistics(model, generator) for model in (stack, unet, deeplab)]

    def images(*shape):
        return torch.randn(shape, generator=generator)

    return [
        ("a BatchNorm whose output the ReLU(inplace=True) after it overwrites",
         (models[0], images(2, 3, 8, 8), ["1"])),
        ("every layer of the same stack", (models[0], images(1, 3, 6, 5), ["0", "1", "2", "3"])),
        ("the encoder and decoder stages of a small UNet",
         (models[1], images(1, 3, 16, 16), ["stem", "downs.0", "downs.1", "ups.0", "ups.1"])),
        ("DeepLabV3: layer4, two ASPP branches and a BatchNorm inside a ResNet block",
         (models[2], images(1, 3, 64, 64),
          ["backbone.layer4", "aspp.atrous.0", "aspp.image_pooling", "backbone.layer1.0.bn1"])),
    ]  # fmt: skip


register(Exercise(
    name="module_outputs",
    description="{name: output of the submodule name} for one forward pass, caught with forward hooks",
    reference=module_outputs,
    make_cases=_hook_cases,
    hint="for each name: model.get_submodule(name).register_forward_hook(hook); the hook gets "
         "(module, inputs, output): store output.detach().clone() under *its own* name (a function defined "
         "in a loop sees the loop variable's last value unless you bind it: def hook(m, i, o, name=name)); "
         "run model(images) under torch.no_grad(), then handle.remove() every hook",
))
