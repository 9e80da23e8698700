"""Bi-level, first-order architecture search for Auto-DeepLab.

The training images are split at random into two disjoint halves. The weights w and the architecture
a = (alpha, beta) are optimised alternately, each on its own half (Auto-DeepLab section 4, after DARTS):

    warm-up epochs:   for each batch of trainA:  w <- SGD step on  loss(w, a; trainA batch)
    later epochs:     for each batch of trainA:  w <- SGD step on  loss(w, a; trainA batch)
                                                 a <- Adam step on loss(w, a; next trainB batch)

"First order": the architecture gradient is taken at the current weights, ignoring how the weights would
react to a change of the architecture (DARTS' second-order term). The warm-up lets the weights learn
something before the architecture is judged by them (otherwise the parameter-free operators, which look
good on an untrained network, win early). The two optimizers hold disjoint parameters:

    weights (every parameter but alpha, beta): SGD, momentum 0.9, weight decay 3e-4, learning rate
        cosine-annealed per step from 0.025 to 0.001
    architecture (alpha, beta):                Adam, learning rate 3e-3, weight decay 1e-3

Those are the paper's settings (it searched 40 epochs with 20 of warm-up, batch size 2, 321 x 321 crops).
A weight step's backward also fills alpha/beta's .grad, and an architecture step's fills the weights';
both gradients are cleared before every backward, and each optimizer only steps its own parameters.
BatchNorm running statistics (buffers, not parameters) are updated by the forward passes of both steps.

    network = AutoDeepLabSearch(num_classes=21, num_layers=4, num_blocks=3, filter_multiplier=4)
    history = search(network, train_dataset, epochs=4, warmup_epochs=2, batch_size=4)
    print(format_genotype(history.genotypes[-1])); print(draw_path(history.paths[-1]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from segkit.data.masks import VOID_INDEX
from segkit.inference import evaluate

from .decode import decode_cell, decode_path
from .network import AutoDeepLabSearch


def split_train(dataset: Dataset, seed: int = 0, fraction_a: float = 0.5) -> tuple[Subset, Subset]:
    """Split ``dataset`` at random (seeded) into disjoint trainA (``fraction_a`` of it) and trainB."""
    if not 0 < fraction_a < 1:
        raise ValueError(f"fraction_a must be between 0 and 1 (exclusive), got {fraction_a!r}")
    size = len(dataset)
    size_a = round(fraction_a * size)
    if size_a == 0 or size_a == size:
        raise ValueError(f"cannot split a dataset of {size} samples into two non-empty halves")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(order[:size_a])), Subset(dataset, sorted(order[size_a:]))


@dataclass
class SearchHistory:
    """What a search did: losses per step, and the architecture after every epoch.

    weight_losses / arch_losses: the loss of every weight step (on trainA) / architecture step (trainB).
    alphas, betas: after epoch e, CPU copies of the alpha ``(E, 8)`` and beta ``(L, 4, 3)`` logits.
    genotypes, paths: the cell and path decoded from them (decode_cell, decode_path).
    val_miou: validation mean IoU after every epoch (when a validation set was given).
    """

    weight_losses: list[float] = field(default_factory=list)
    arch_losses: list[float] = field(default_factory=list)
    alphas: list[torch.Tensor] = field(default_factory=list)
    betas: list[torch.Tensor] = field(default_factory=list)
    genotypes: list = field(default_factory=list)
    paths: list[list[int]] = field(default_factory=list)
    val_miou: list[float] = field(default_factory=list)


class BilevelSearch:
    """Alternating first-order optimisation of weights (trainA) and architecture (trainB).

    Args:
        network: an AutoDeepLabSearch (or any module with ``arch_parameters()``, ``weight_parameters()``,
            ``alpha``, ``beta``, ``num_classes``).
        train_a, train_b: datasets of ``(image (3, H, W) float, mask (H, W) int64, 255 = void)``.
        val_dataset: optional; evaluated (mean IoU) after every epoch.
        epochs, warmup_epochs: total epochs, and the first ones with weight steps only.
        batch_size: images per step (>= 2: BatchNorm on the 1 x 1 stride-32 level of small inputs).
        weight_lr, weight_lr_min, momentum, weight_decay: SGD, cosine from weight_lr to weight_lr_min.
        arch_lr, arch_weight_decay: Adam on alpha and beta.
        clip_grad_norm: clip the weights' gradient norm (None: no clipping).
        limit_batches: at most this many trainA batches per epoch (quick runs).
        loss_fn: ``loss_fn(logits, target) -> scalar``; default cross-entropy, ignore_index=VOID_INDEX (255).
        device: "cpu", "cuda", ... ; seed: shuffling of both halves.

    ``weight_optimizer`` and ``arch_optimizer`` are created here, so callers can inspect or hook them.
    ``run()`` trains and returns a SearchHistory.
    """

    def __init__(self, network: nn.Module, train_a: Dataset, train_b: Dataset, *, val_dataset=None,
                 epochs: int = 2, warmup_epochs: int = 1, batch_size: int = 2, weight_lr: float = 0.025,
                 weight_lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
                 arch_lr: float = 3e-3, arch_weight_decay: float = 1e-3, clip_grad_norm: float | None = 5.0,
                 limit_batches: int | None = None, loss_fn=None, device: str | torch.device = "cpu",
                 seed: int = 0):
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        if not isinstance(warmup_epochs, int) or not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs must be an integer in [0, epochs={epochs}), got "
                             f"{warmup_epochs!r} (otherwise no architecture step would ever run)")
        if limit_batches is not None and (not isinstance(limit_batches, int) or limit_batches < 1):
            raise ValueError(f"limit_batches must be None or an integer >= 1, got {limit_batches!r}")
        for name, dataset in [("train_a", train_a), ("train_b", train_b)]:
            if len(dataset) < batch_size:
                raise ValueError(f"{name} has {len(dataset)} samples, fewer than batch_size={batch_size} "
                                 "(incomplete batches are dropped)")
        self.device = torch.device(device)
        self.network = network.to(self.device)
        self.epochs, self.warmup_epochs, self.limit_batches = epochs, warmup_epochs, limit_batches
        self.clip_grad_norm = clip_grad_norm
        self.loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss(ignore_index=VOID_INDEX)

        def loader(dataset, offset):
            generator = torch.Generator().manual_seed(seed + offset)
            return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                              generator=generator)

        self.loader_a, self.loader_b = loader(train_a, 0), loader(train_b, 1)
        self.val_loader = DataLoader(val_dataset, batch_size=batch_size) if val_dataset is not None else None

        weights, arch = network.weight_parameters(), network.arch_parameters()
        if {id(p) for p in weights} & {id(p) for p in arch}:
            raise ValueError("the network's weight_parameters() and arch_parameters() overlap")
        self.weight_optimizer = torch.optim.SGD(weights, lr=weight_lr, momentum=momentum,
                                                weight_decay=weight_decay)
        self.arch_optimizer = torch.optim.Adam(arch, lr=arch_lr, weight_decay=arch_weight_decay)
        self.steps_per_epoch = len(self.loader_a)
        if limit_batches is not None:
            self.steps_per_epoch = min(limit_batches, self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.weight_optimizer, T_max=epochs * self.steps_per_epoch, eta_min=weight_lr_min)
        self.history = SearchHistory()

    def loss(self, images: torch.Tensor, masks: torch.Tensor, step: str) -> torch.Tensor:
        """The loss of the network on one batch; FloatingPointError naming the step when not finite."""
        images = images.as_subclass(torch.Tensor).to(self.device)
        masks = masks.as_subclass(torch.Tensor).to(self.device)
        loss = self.loss_fn(self.network(images), masks)
        if not torch.isfinite(loss):
            weight_steps, arch_steps = len(self.history.weight_losses), len(self.history.arch_losses)
            raise FloatingPointError(f"the search loss became {loss.item()} in a {step} step (after "
                                     f"{weight_steps} weight and {arch_steps} architecture steps); "
                                     "lower weight_lr or arch_lr")
        return loss

    def weight_step(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        """One SGD step of the weights on a trainA batch (alpha and beta are not touched)."""
        self.weight_optimizer.zero_grad(set_to_none=True)
        self.arch_optimizer.zero_grad(set_to_none=True)
        loss = self.loss(images, masks, "weight")
        loss.backward()
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.network.weight_parameters(), self.clip_grad_norm)
        self.weight_optimizer.step()
        self.scheduler.step()
        self.history.weight_losses.append(loss.item())
        return self.history.weight_losses[-1]

    def arch_step(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        """One Adam step of alpha and beta on a trainB batch (the weights are not touched)."""
        self.weight_optimizer.zero_grad(set_to_none=True)
        self.arch_optimizer.zero_grad(set_to_none=True)
        loss = self.loss(images, masks, "architecture")
        loss.backward()
        self.arch_optimizer.step()
        self.history.arch_losses.append(loss.item())
        return self.history.arch_losses[-1]

    def run(self, verbose: bool = False) -> SearchHistory:
        """Search for ``epochs`` epochs; returns (and keeps in ``self.history``) the SearchHistory."""
        for epoch in range(self.epochs):
            self.network.train()
            search_arch = epoch >= self.warmup_epochs
            batches_b = iter(self.loader_b)
            for index, (images, masks) in enumerate(self.loader_a):
                if self.limit_batches is not None and index >= self.limit_batches:
                    break
                self.weight_step(images, masks)
                if search_arch:
                    batch_b = next(batches_b, None)
                    if batch_b is None:  # trainB is smaller than trainA: start it over
                        batches_b = iter(self.loader_b)
                        batch_b = next(batches_b)
                    self.arch_step(*batch_b)
            self.record_epoch()
            if verbose:
                print(self.epoch_summary(epoch, search_arch))
        return self.history

    def record_epoch(self) -> None:
        history = self.history
        history.alphas.append(self.network.alpha.detach().cpu().clone())
        history.betas.append(self.network.beta.detach().cpu().clone())
        history.genotypes.append(decode_cell(history.alphas[-1]))
        history.paths.append(decode_path(history.betas[-1]))
        if self.val_loader is not None:
            history.val_miou.append(self.evaluate())

    def evaluate(self) -> float:
        """Mean IoU of the relaxed network on the validation set (segkit.inference.evaluate, eval mode)."""
        return evaluate(self.network, self.val_loader, self.network.num_classes)["miou"]

    def epoch_summary(self, epoch: int, search_arch: bool) -> str:
        history = self.history
        steps = self.steps_per_epoch
        weight_loss = sum(history.weight_losses[-steps:]) / steps
        text = f"epoch {epoch + 1}/{self.epochs}  weight loss {weight_loss:.4f}"
        if search_arch:
            text += f"  arch loss {sum(history.arch_losses[-steps:]) / steps:.4f}"
        else:
            text += "  (warm-up: weights only)"
        if history.val_miou:
            text += f"  val mIoU {history.val_miou[-1]:.3f}"
        return text + f"  path {history.paths[-1]}"


def search(network: AutoDeepLabSearch, train_dataset: Dataset, *, val_dataset=None, seed: int = 0,
           verbose: bool = False, **options) -> SearchHistory:
    """Split ``train_dataset`` into trainA / trainB (split_train) and run a BilevelSearch on ``network``.

    ``options`` are BilevelSearch's (epochs, warmup_epochs, batch_size, weight_lr, arch_lr, limit_batches,
    device, ...). Returns the SearchHistory; the network keeps its searched alpha, beta and weights.
    """
    train_a, train_b = split_train(train_dataset, seed=seed)
    runner = BilevelSearch(network, train_a, train_b, val_dataset=val_dataset, seed=seed, **options)
    return runner.run(verbose=verbose)


def search_space_size(num_blocks: int = 5, num_layers: int = 12) -> dict[str, int]:
    """How many discrete cells and paths the relaxed network covers.

    cells: per block i, choose 2 of its 2 + i states and one of 7 operators for each: prod_i C(2+i, 2) 7^2.
    paths: sequences of strides starting next to stride 4 and moving at most one level per layer.
    """
    cells = 1
    for block in range(num_blocks):
        cells *= math.comb(2 + block, 2) * 7**2
    counts = {0: 1}
    for _ in range(num_layers):
        counts = {level: sum(counts.get(source, 0) for source in (level - 1, level, level + 1))
                  for level in range(4)}
    return {"cells": cells, "paths": sum(counts.values()), "total": cells * sum(counts.values())}
