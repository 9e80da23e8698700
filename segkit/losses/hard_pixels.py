"""Hard-pixel mining: cross-entropy over the pixels the model gets most wrong.

Two published recipes:
- DeepLab's top-k (tensorflow/models, research/deeplab/utils/train_utils.py): keep a fixed fraction of
  the pixels with the largest loss, annealed from all pixels to that fraction over training.
- mmsegmentation's OHEM (mmseg OHEMPixelSampler, after Shrivastava et al., "Training Region-based Object
  Detectors with Online Hard Example Mining", CVPR 2016): keep the pixels whose true-class probability is
  below a threshold, and at least a minimum number of pixels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.data.masks import VOID_INDEX

from .common import check_inputs, divide_or_zero


class TopKCrossEntropyLoss(nn.Module):
    """DeepLab hard-example mining: cross-entropy over the top k pixel losses of the batch.

    l_i = CE of pixel i (0 for void pixels). With N = N_img * H * W, ALL pixels of the batch, void included,
    p = `top_k_percent_pixels` and s = the current training step (`set_step`):
        p == 1:  loss = sum_i l_i / (number of labelled pixels)
        else:    ratio = min(1, s / hard_example_mining_step)   (ratio = 1 when that step is 0)
                 k     = int((ratio * p + (1 - ratio)) * N)
                 loss  = (sum of the k largest l_i) / (number of non-zero values among those k)
    So the kept fraction falls linearly from 100% at step 0 to p at `hard_example_mining_step`.
    Because N counts void pixels, k is a fraction of the whole batch; void pixels (l_i = 0) only end up
    among the k when fewer than k pixels have a positive loss, and they are not counted in the
    denominator. A result with no non-zero loss (e.g. an all-void batch, or k = 0) is 0.
    Only the kept pixels get a gradient; void pixels always get exactly 0.

    Args:
        top_k_percent_pixels: p in (0, 1], the fraction of pixels kept once annealing is over
            (a fraction despite the name, as in DeepLab; e.g. 0.25).
        hard_example_mining_step: number of steps over which the fraction anneals from 1 to p
            (0 = use p from the start).
        ignore_index: label of void pixels.

    The Trainer calls `set_step(step)` before each iteration; the loss starts at step 0.

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, top_k_percent_pixels: float = 1.0, hard_example_mining_step: int = 0,
                 ignore_index: int = VOID_INDEX):
        super().__init__()
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ValueError(f"TopKCrossEntropyLoss: top_k_percent_pixels must be in (0, 1], "
                             f"got {top_k_percent_pixels}")
        if hard_example_mining_step < 0:
            raise ValueError(f"TopKCrossEntropyLoss: hard_example_mining_step must be >= 0, "
                             f"got {hard_example_mining_step}")
        self.top_k_percent_pixels = float(top_k_percent_pixels)
        self.hard_example_mining_step = int(hard_example_mining_step)
        self.ignore_index = ignore_index
        self.step = 0

    def set_step(self, step: int) -> None:
        """Tell the loss the current training step (0-based), which sets the kept fraction."""
        if step < 0:
            raise ValueError(f"TopKCrossEntropyLoss.set_step: step must be >= 0, got {step}")
        self.step = int(step)

    def kept_pixels(self, num_pixels: int) -> int:
        """k for a batch of `num_pixels` pixels (void included) at the current step."""
        p = self.top_k_percent_pixels
        if self.hard_example_mining_step == 0:
            ratio = 1.0
        else:
            ratio = min(1.0, self.step / self.hard_example_mining_step)
        return int((ratio * p + (1.0 - ratio)) * num_pixels)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "TopKCrossEntropyLoss")
        pixel_losses = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        pixel_losses = pixel_losses.flatten()  # (N*H*W,), 0 at void pixels
        if self.top_k_percent_pixels == 1.0:
            num_labelled = (target != self.ignore_index).sum().to(pixel_losses.dtype)
            return divide_or_zero(pixel_losses.sum(), num_labelled)
        k = self.kept_pixels(pixel_losses.numel())
        top_losses = torch.topk(pixel_losses, k).values
        num_nonzero = (top_losses != 0).sum().to(top_losses.dtype)
        return divide_or_zero(top_losses.sum(), num_nonzero)


class OHEMCrossEntropyLoss(nn.Module):
    """Online hard example mining as mmsegmentation's OHEMPixelSampler, then the mean CE of kept pixels.

    Pixels are pooled over the whole batch; K = min_kept * N_img (min_kept is per image, as in mmseg),
    n = number of labelled pixels in the batch.
      with thresh:  q_i = softmax probability of the true class of labelled pixel i, sorted increasingly
                    q_(0) <= ... <= q_(n-1);
                    threshold = max(q_(min(K, n - 1)), thresh);  keep pixels with q_i < threshold
                    (so at least the K least confident pixels, when their probabilities are distinct;
                    if K >= n the threshold is the largest q and only pixels below it are kept)
      without:      keep the K labelled pixels with the largest CE (all of them when K >= n)
      loss = sum over kept pixels of CE_i / (number of kept pixels)
    The selection runs without gradient. Void pixels are never kept (exactly zero gradient); nothing kept
    (e.g. an all-void batch) gives 0.

    Difference from mmseg: mmseg turns the selection into a 0/1 pixel weight and, by default
    (avg_non_ignore=False), divides the weighted CE sum by ALL pixels of the batch; here the sum is
    divided by the number of kept pixels, i.e. a true mean over the hard pixels, so the scale stays
    comparable with plain cross-entropy.

    Args:
        thresh: probability threshold in (0, 1], or None to keep the min_kept largest losses
            (mmseg configs use 0.7).
        min_kept: minimum number of pixels kept per image (mmseg's default is 100000).
        ignore_index: label of void pixels.

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, thresh: float | None = 0.7, min_kept: int = 100000, ignore_index: int = VOID_INDEX):
        super().__init__()
        if thresh is not None and not 0.0 < thresh <= 1.0:
            raise ValueError(f"OHEMCrossEntropyLoss: thresh must be in (0, 1] or None, got {thresh}")
        if min_kept < 1:
            raise ValueError(f"OHEMCrossEntropyLoss: min_kept must be >= 1, got {min_kept}")
        self.thresh, self.min_kept, self.ignore_index = thresh, int(min_kept), ignore_index

    @torch.no_grad()
    def hard_pixel_mask(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, H, W) bool: the pixels the loss is averaged over."""
        valid = target != self.ignore_index
        batch_kept = self.min_kept * target.shape[0]
        keep = torch.zeros_like(valid)
        if self.thresh is not None:
            probs = logits.softmax(dim=1).gather(1, target.masked_fill(~valid, 0)[:, None]).squeeze(1)
            valid_probs = probs[valid]
            if valid_probs.numel() == 0:
                return keep
            sorted_probs = torch.sort(valid_probs).values
            threshold = max(sorted_probs[min(batch_kept, valid_probs.numel() - 1)].item(), self.thresh)
            keep[valid] = valid_probs < threshold
        else:
            losses = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
            valid_losses = losses[valid]
            hardest = torch.argsort(valid_losses, descending=True)[:batch_kept]
            kept_valid = torch.zeros_like(valid_losses, dtype=torch.bool)
            kept_valid[hardest] = True
            keep[valid] = kept_valid
        return keep

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "OHEMCrossEntropyLoss")
        keep = self.hard_pixel_mask(logits, target)
        selected_target = target.masked_fill(~keep, self.ignore_index)
        total = F.cross_entropy(logits, selected_target, ignore_index=self.ignore_index, reduction="sum")
        return divide_or_zero(total, keep.sum().to(total.dtype))
