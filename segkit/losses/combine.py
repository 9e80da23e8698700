"""Putting losses together: weighted sums, auxiliary heads (deep supervision), lower-resolution outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F


def forward_step(module: nn.Module, step: int) -> None:
    """Call `module.set_step(step)` if the module has one (e.g. TopKCrossEntropyLoss)."""
    if hasattr(module, "set_step"):
        module.set_step(step)


class WeightedSum(nn.Module):
    """loss = sum_j w_j * loss_j(logits, target).

    `set_step` is passed on to every term that has one, so a top-k term inside a sum still anneals.

    Args:
        terms: list of (loss module, weight) pairs, e.g. [(CrossEntropyLoss(), 1.0), (DiceLoss(), 0.5)].

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, terms: Sequence[tuple[nn.Module, float]]):
        super().__init__()
        if len(terms) == 0:
            raise ValueError("WeightedSum: terms must hold at least one (loss, weight) pair")
        for index, term in enumerate(terms):
            if not (isinstance(term, tuple | list) and len(term) == 2 and isinstance(term[0], nn.Module)
                    and isinstance(term[1], int | float) and not isinstance(term[1], bool)):
                raise TypeError(f"WeightedSum: terms[{index}] must be a (loss module, weight) pair, "
                                f"got {term!r}")
        self.losses = nn.ModuleList(loss for loss, _ in terms)
        self.weights = [float(weight) for _, weight in terms]

    def set_step(self, step: int) -> None:
        for loss in self.losses:
            forward_step(loss, step)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pairs = zip(self.losses, self.weights, strict=True)
        return sum(weight * loss(logits, target) for loss, weight in pairs)


class AuxLoss(nn.Module):
    """Deep supervision with an auxiliary head (PSPNet, torchvision's DeepLabV3/FCN aux classifier).

        output a tensor:                   loss = L(output, target)
        output {"out": o}:                 loss = L(o, target)
        output {"out": o, "aux": a}:       loss = L(o, target) + aux_weight * L(a, target)

    Models return the dict only in training mode with their aux head on, and a plain tensor in eval,
    so the same loss object serves both. The aux logits must have the target's size (segkit models
    upsample them); for a lower-resolution head wrap L in `MultiScaleLoss`. torchvision's reference
    training uses aux_weight = 0.5, PSPNet 0.4. `set_step` is passed on to L.

    Shapes: output (N, C, H, W) float or {"out": ..., "aux": ...}; target (N, H, W) int64 -> scalar.
    """

    def __init__(self, loss: nn.Module, aux_weight: float = 0.4):
        super().__init__()
        if aux_weight < 0:
            raise ValueError(f"AuxLoss: aux_weight must be >= 0, got {aux_weight}")
        self.loss, self.aux_weight = loss, float(aux_weight)

    def set_step(self, step: int) -> None:
        forward_step(self.loss, step)

    def forward(self, output: torch.Tensor | dict, target: torch.Tensor) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            return self.loss(output, target)
        if not isinstance(output, dict) or "out" not in output or not set(output) <= {"out", "aux"}:
            keys = sorted(output) if isinstance(output, dict) else type(output).__name__
            raise ValueError(f"AuxLoss: output must be a tensor or a dict with key 'out' and optional 'aux', "
                             f"got {keys}")
        loss = self.loss(output["out"], target)
        if "aux" in output:
            loss = loss + self.aux_weight * self.loss(output["aux"], target)
        return loss


def resize_labels_nearest(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a label map by nearest neighbour, sampling at pixel centres: (N, H, W) int -> (N, h, w).

        out[n, y, x] = target[n, floor((y + 0.5) * H / h), floor((x + 0.5) * W / w)]

    (what `F.interpolate(mode="nearest-exact")` does). Labels are only copied, never averaged, so no
    new class appears and void (255) stays void.
    """
    height, width = target.shape[-2:]
    out_height, out_width = size
    rows = ((torch.arange(out_height, device=target.device) + 0.5) * height / out_height).floor().long()
    cols = ((torch.arange(out_width, device=target.device) + 0.5) * width / out_width).floor().long()
    rows, cols = rows.clamp(max=height - 1), cols.clamp(max=width - 1)
    return target[:, rows][:, :, cols]


class MultiScaleLoss(nn.Module):
    """A loss applied to logits whose resolution differs from the labels', or to several of them.

        output a tensor:    loss = L(match(output, target))
        output a list:      loss = sum_j w_j * L(match(output_j, target))     (deep supervision)

    match() makes the sizes agree in one of two ways (`resize`):
      "labels" (default): the labels are downsampled to the logits' size by nearest neighbour
                          (`resize_labels_nearest`; void stays 255) — cheap, the usual choice for
                          low-resolution side outputs (DeepLab's upsample_logits=False).
      "logits":           the logits are upsampled to the labels' size, bilinear, align_corners=False
                          — DeepLab's default (upsample_logits=True) and torchvision's models.
    Logits already at the labels' size are used as they are. `weights` default to 1 for every output.
    `set_step` is passed on to L.

    Shapes: output (N, C, h, w) float or a list of them; target (N, H, W) int64 -> scalar.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None,
                 resize: Literal["labels", "logits"] = "labels"):
        super().__init__()
        if resize not in ("labels", "logits"):
            raise ValueError(f"MultiScaleLoss: resize must be 'labels' or 'logits', got {resize!r}")
        self.loss, self.resize = loss, resize
        self.weights = None if weights is None else [float(w) for w in weights]

    def set_step(self, step: int) -> None:
        forward_step(self.loss, step)

    def loss_at_any_size(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or target.dim() != 3:
            raise ValueError("MultiScaleLoss: expected logits (N, C, h, w) and target (N, H, W)")
        if logits.shape[-2:] == target.shape[-2:]:
            return self.loss(logits, target)
        if self.resize == "labels":
            return self.loss(logits, resize_labels_nearest(target, tuple(logits.shape[-2:])))
        upsampled = F.interpolate(logits, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
        return self.loss(upsampled, target)

    def forward(self, output: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            return self.loss_at_any_size(output, target)
        outputs = list(output)
        weights = [1.0] * len(outputs) if self.weights is None else self.weights
        if len(weights) != len(outputs) or not outputs:
            raise ValueError(f"MultiScaleLoss: got {len(outputs)} outputs but {len(weights)} weights")
        return sum(w * self.loss_at_any_size(o, target) for o, w in zip(outputs, weights, strict=True))
