"""Scoring a deep prior: train the linear head on cached embeddings, report val mIoU (the search's reward).

    data = ProbeData(root="data/shapes", image_size=64)
    result = score_architecture(data, "[C(16,3,1,1,0), P(2,2)]", seed=0, epochs=10)
    result.reward, result.val_miou, result.status    # final val mIoU, one per epoch, "trained"

`fit` is a small training loop for any model whose output is logits at the mask's size; it trains the
parameters with requires_grad=True with Adam (as DP-NAS) and pixel-wise cross-entropy over non-void pixels,

    loss = mean over pixels with target != 255 of  -log softmax(logits)[target],

visiting the samples of epoch e in the order `torch.randperm(N, generator=torch.Generator().manual_seed(seed
+ e))`, batches of `batch_size` in that order (the last one may be smaller): the same order as segkit's
Trainer with shuffle=True and the same seed, so a head trained here on cached embeddings and a DeepPriorModel
trained by the Trainer on the images take the same steps. Validation after every epoch: one confusion
matrix over the whole split (segkit.metrics), mIoU = nanmean of the per-class IoU.

Early stop (DP-NAS): with early_stop=(epoch, threshold), a net whose val mIoU after `epoch` epochs (1-based)
is below `threshold` stops there (status "early_stopped"); its reward is that mIoU. An infeasible
architecture (archstring.infeasibility) or one whose embedding per image is larger than max_embedding_size
values is not run at all: status "infeasible", reward 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from segkit.data.masks import VOID_INDEX
from segkit.inference import evaluate as evaluate_loader
from segkit.models.deep_prior.archstring import (
    canonical_arch,
    infeasibility,
    out_channels,
    output_stride,
    parse_arch,
    spatial_sizes,
)
from segkit.models.deep_prior.network import HeadOnFeatures, LinearHead

from .embeddings import ProbeData


@dataclass
class FitResult:
    """What `fit` did: val mIoU and mean train loss per epoch, optimizer steps, whether it stopped early."""

    val_miou: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False

    @property
    def final_miou(self) -> float:
        return self.val_miou[-1] if self.val_miou else float("nan")


def evaluate(model: nn.Module, inputs: torch.Tensor, masks: torch.Tensor, num_classes: int,
             batch_size: int = 16) -> dict:
    """Metrics of `model` on inputs (N, ...), masks (N, H, W): segkit.inference.evaluate over batches of
    `batch_size` (moved batch by batch to the device of the model)."""
    loader = DataLoader(TensorDataset(inputs, masks.long()), batch_size=batch_size)
    return evaluate_loader(model, loader, num_classes)


def fit(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor] | None = None, *, num_classes: int, epochs: int = 3,
        batch_size: int = 8, lr: float = 0.01, weight_decay: float = 0.0, seed: int = 0,
        early_stop: tuple[int, float] | None = None, device="cpu",
        optimizer: torch.optim.Optimizer | None = None) -> FitResult:
    """Train `model` (its requires_grad parameters, Adam) on train = (inputs (N, ...), masks (N, H, W)).

    model(inputs batch) must return logits (B, num_classes, H, W) at the masks' size. Masks may be uint8 or
    int64, 255 = void. See the module docstring for the data order and early stopping. `optimizer` replaces
    the default Adam(lr, weight_decay) over the trainable parameters. Returns a FitResult.
    """
    inputs, masks = train
    if len(inputs) != len(masks) or len(inputs) == 0:
        raise ValueError(f"fit needs as many inputs as masks (and at least one): {len(inputs)} inputs, "
                         f"{len(masks)} masks")
    if early_stop is not None and val is None:
        raise ValueError("early_stop needs val data")
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("fit: the model has no trainable parameter")
    model.to(device).train()
    if optimizer is None:
        optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    result = FitResult()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed + epoch))
        losses = []
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            target = masks[index].long().to(device)
            if not (target != VOID_INDEX).any():
                continue  # nothing labelled in this batch: no loss, no step
            loss = F.cross_entropy(model(inputs[index].to(device)), target, ignore_index=VOID_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().item())
            result.steps += 1
        result.train_loss.append(sum(losses) / len(losses) if losses else float("nan"))
        if val is not None:
            result.val_miou.append(evaluate(model, *val, num_classes)["miou"])
            if early_stop is not None and epoch + 1 == early_stop[0] and result.val_miou[-1] < early_stop[1]:
                result.stopped_early = True
                break
    model.eval()
    return result


@dataclass
class ProbeResult:
    """The score of one (architecture, seed): reward = final val mIoU (0 when infeasible)."""

    arch: str
    seed: int
    status: str  # "trained", "early_stopped" or "infeasible"
    reward: float
    val_miou: list[float]
    out_channels: int
    output_stride: int
    feature_shape: tuple[int, ...] | None
    seconds: float
    reason: str = ""
    head: LinearHead | None = field(default=None, repr=False)

    def row(self) -> dict:
        """A plain dict for a table or a CSV."""
        return {"arch": self.arch, "seed": self.seed, "status": self.status, "reward": self.reward,
                "out_channels": self.out_channels, "output_stride": self.output_stride,
                "feature_shape": "x".join(map(str, self.feature_shape)) if self.feature_shape else "",
                "seconds": round(self.seconds, 3), "reason": self.reason}


def score_architecture(data: ProbeData, arch: str, seed: int = 0, *, epochs: int = 10, batch_size: int = 4,
                       lr: float = 0.05, weight_decay: float = 0.0, head_seed: int = 0,
                       early_stop: tuple[int, float] | None = None,
                       max_embedding_size: int | None = None) -> ProbeResult:
    """Deep-prior score of RandomEncoder(arch, seed) on `data`: head trained on cached train embeddings,
    reward = val mIoU after the last epoch (see the module docstring). head_seed sets the data order."""
    start = time.perf_counter()
    layers = parse_arch(arch)
    arch = canonical_arch(layers)
    if data.image_size is not None:
        image_size = (data.image_size, data.image_size)
    else:
        image_size = tuple(data.dataset("train")[0][1].shape[-2:])
    common = dict(arch=arch, seed=seed, out_channels=out_channels(layers),
                  output_stride=output_stride(layers))
    reason = infeasibility(layers, image_size)
    if reason is None and max_embedding_size is not None:
        h, w = spatial_sizes(layers, image_size)[-1] if layers else image_size
        size = common["out_channels"] * h * w
        if size > max_embedding_size:
            reason = (f"the embedding of one image has {common['out_channels']}x{h}x{w} = {size} values, "
                      f"more than max_embedding_size={max_embedding_size}")
    if reason is not None:
        return ProbeResult(status="infeasible", reward=0.0, val_miou=[], feature_shape=None,
                           seconds=time.perf_counter() - start, reason=reason, **common)
    train, val = data.embeddings(arch, seed, "train"), data.embeddings(arch, seed, "val")
    head = LinearHead(common["out_channels"], data.num_classes)
    fitted = fit(HeadOnFeatures(head, train.image_size), (train.features, train.masks),
                 (val.features, val.masks), num_classes=data.num_classes, epochs=epochs,
                 batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=head_seed,
                 early_stop=early_stop, device=data.device)
    reward = fitted.final_miou
    if math.isnan(reward):
        reward = 0.0
    return ProbeResult(status="early_stopped" if fitted.stopped_early else "trained", reward=reward,
                       val_miou=fitted.val_miou, feature_shape=tuple(train.features.shape[1:]),
                       seconds=time.perf_counter() - start, head=head.cpu(), **common)
