"""Inference: whole image, sliding window, and test-time augmentation (flip and multi-scale).

Every function here takes a batch of normalised images and returns per-pixel class probabilities at the
input resolution:

    images: (N, 3, H, W) float, normalised as in training
    probs:  (N, C, H, W) float, softmax over C (each pixel sums to 1)
    labels: (N, H, W) int64 = probs.argmax(1)

Three ways to turn a model into predictions, which combine freely:

1. Whole image: `softmax(model(images))`. Fast and exact when the image fits in memory.
2. Sliding window (`window=`, `stride=`): the image is cut into overlapping windows of the training crop size;
   every window is predicted on its own, and where windows overlap their probabilities are averaged:

       probs[p] = sum_{windows w covering p} softmax(model(x_w))[p] / #{windows covering p}

   The last window of each row/column is shifted back to end exactly at the image border (as in mmseg's
   `slide_inference`), so every pixel is covered. An image smaller than the window is first padded up to the
   window size, with zeros by default (`pad_mode="constant"`): zero in normalised space is the dataset's
   mean colour, the most neutral value. `pad_mode="reflect"` mirrors the image instead (it needs the
   padding to be smaller than the image). The padding is cropped away at the end.
3. Test-time augmentation (`flip=True`, `scales=[...]`): the image is resized by each scale (bilinear), and
   optionally flipped left-right; each version is predicted (whole or sliding window), its probabilities are
   flipped back and resized back to H x W (bilinear), and all versions are averaged with equal weight:

       probs = mean_{s in scales, f in flips} f^-1( resize_{H,W}( predict( f( resize_s(images) ) ) ) )

   We average probabilities, not logits: a confident version cannot outvote the others by an arbitrarily
   large logit, and a bilinear resize of probabilities still sums to 1 at every pixel.

The model is put in eval mode for the call and its previous mode restored afterwards; gradients are off.

For whole datasets: `evaluate_dataset` accumulates one confusion matrix over a loader (what
`segkit evaluate` prints), and `write_submission` writes the zip of predicted masks that the class
competition scores (what `segkit predict` writes).
"""

from __future__ import annotations

import math
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segkit.data import write_mask
from segkit.metrics import ConfusionMatrix

PAD_MODES = ("constant", "reflect", "replicate")


def _logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """model(images) -> logits (N, C, H, W); a dict output ({"out": ..., "aux": ...}) gives its "out"."""
    output = model(images)
    if isinstance(output, dict):
        output = output["out"]
    if output.dim() != 4 or output.shape[0] != images.shape[0] or output.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"the model must map images (N, 3, H, W) = {tuple(images.shape)} to logits (N, C, H, W) at the "
            f"same resolution; it returned {tuple(output.shape)}"
        )
    return output


def whole_image_probs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """softmax(model(images)) over classes: (N, 3, H, W) -> (N, C, H, W) float32."""
    return _logits(model, images).float().softmax(dim=1)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair (height, width) of them, "
                         f"got {value!r}")
    return pair


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis of `length` pixels (length >= window).

    Windows start at 0, stride, 2*stride, ...; there are ceil((length - window) / stride) + 1 of them and the
    last one starts at length - window, so that it ends exactly at the border.
    Example: length 7, window 4, stride 2 -> [0, 2, 3].
    """
    count = math.ceil((length - window) / stride) + 1
    return [min(i * stride, length - window) for i in range(count)]


def sliding_window_probs(
    model: nn.Module,
    images: torch.Tensor,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    pad_mode: str = "constant",
) -> torch.Tensor:
    """Probabilities averaged over overlapping windows: (N, 3, H, W) -> (N, C, H, W) float32.

    window: size of each window, an int or (height, width) - usually the training crop size.
    stride: step between windows (default: two thirds of the window, i.e. a third of overlap). Must not
        exceed the window, or pixels between windows would get no prediction.
    pad_mode: how an image smaller than the window is padded up to it: "constant" (zeros, i.e. the mean
        colour of normalised images), "reflect" or "replicate" (see torch.nn.functional.pad).
    """
    win_h, win_w = _pair(window, "window")
    if stride is None:
        stride = (max(1, win_h * 2 // 3), max(1, win_w * 2 // 3))
    stride_h, stride_w = _pair(stride, "stride")
    if stride_h > win_h or stride_w > win_w:
        raise ValueError(f"stride {(stride_h, stride_w)} is larger than window {(win_h, win_w)}: "
                         "pixels between windows would get no prediction")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")

    height, width = images.shape[-2:]
    pad_h, pad_w = max(win_h - height, 0), max(win_w - width, 0)
    if pad_h or pad_w:
        if pad_mode == "reflect" and (pad_h >= height or pad_w >= width):
            raise ValueError(f"pad_mode='reflect' cannot pad an image of {height}x{width} up to the window "
                             f"{win_h}x{win_w} (padding must be smaller than the image); use 'constant'")
        # F.pad takes (left, right, top, bottom) for the last two dimensions; we pad right and bottom only.
        images = F.pad(images, (0, pad_w, 0, pad_h), mode=pad_mode)

    padded_h, padded_w = images.shape[-2:]
    prob_sum = None
    count = torch.zeros(1, 1, padded_h, padded_w, device=images.device)
    for top in window_starts(padded_h, win_h, stride_h):
        for left in window_starts(padded_w, win_w, stride_w):
            crop = images[:, :, top : top + win_h, left : left + win_w]
            probs = whole_image_probs(model, crop)
            if prob_sum is None:
                prob_sum = probs.new_zeros(images.shape[0], probs.shape[1], padded_h, padded_w)
            prob_sum[:, :, top : top + win_h, left : left + win_w] += probs
            count[:, :, top : top + win_h, left : left + win_w] += 1
    return (prob_sum / count)[:, :, :height, :width]


def _resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    pad_mode: str = "constant",
) -> torch.Tensor:
    """Class probabilities for a batch, with optional sliding window and test-time augmentation.

    images: (N, 3, H, W) float, normalised. Returns (N, C, H, W) float32 probabilities at H x W.
    scales: resize factors for multi-scale TTA, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) as in DeepLab; the
        size at scale s is round(s * H) x round(s * W) (at least 1 pixel).
    flip: also predict the left-right mirrored image and mirror its probabilities back.
    window, stride, pad_mode: sliding-window inference (see `sliding_window_probs`); None = whole image.
    The average is taken over len(scales) * (2 if flip else 1) versions, all with equal weight.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be a batch (N, 3, H, W), got shape {tuple(images.shape)}")
    scales = list(scales)
    if not scales or not all(isinstance(s, int | float) and s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales!r}")
    height, width = images.shape[-2:]

    def predict_one(batch: torch.Tensor) -> torch.Tensor:
        if window is None:
            return whole_image_probs(model, batch)
        return sliding_window_probs(model, batch, window, stride, pad_mode)

    was_training = model.training
    model.eval()
    try:
        total = None
        for scale in scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = _resize(images, size)
            versions = [predict_one(scaled)]
            if flip:
                versions.append(predict_one(scaled.flip(-1)).flip(-1))
            for probs in versions:
                probs = _resize(probs, (height, width))
                total = probs if total is None else total + probs
    finally:
        model.train(was_training)
    return total / (len(scales) * (2 if flip else 1))


def predict_labels(model: nn.Module, images: torch.Tensor, **options) -> torch.Tensor:
    """The most probable class per pixel: (N, 3, H, W) -> (N, H, W) int64. Options as for `predict_probs`."""
    return predict_probs(model, images, **options).argmax(dim=1)


# ---------------------------------------------------------------------------------------------------------
# Whole datasets: evaluation against masks, and a submission zip of predicted masks
# ---------------------------------------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def evaluate_dataset(model: nn.Module, loader, num_classes: int, ignore_index: int = 255, **options) -> dict:
    """Dataset-level metrics of `model` on `loader` (batches of images (N, 3, H, W), masks (N, H, W)).

    Predictions come from `predict_labels(model, images, **options)` (whole image, sliding window, TTA)
    and go into one segkit.metrics.ConfusionMatrix over the whole dataset (the VOC definition: never a
    mean of per-image scores). Returns `ConfusionMatrix.compute()` plus "num_images".
    """
    device = _model_device(model)
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    num_images = 0
    for images, masks in loader:
        images = images.as_subclass(torch.Tensor).to(device)
        masks = masks.as_subclass(torch.Tensor).to(device)
        confusion.update(predict_labels(model, images, **options), masks)
        num_images += len(images)
    metrics = confusion.compute()
    metrics["num_images"] = num_images
    return metrics


def write_submission(model: nn.Module, dataset, out_path, **options) -> int:
    """Predict every image of `dataset` and write a zip of masks in the competition's format.

    dataset: items (image (3, H, W) float normalised, mask or None), with `ids` (image ids) in the same
        order, e.g. a segkit VOCSegmentation of the test split built with require_masks=False.
    The zip is flat: one palette PNG per image, named `<image_id>.png`, holding the predicted class index
    of every pixel at the image's own size, written by segkit.data.write_mask. Images are predicted one
    at a time (test images may differ in size). Returns the number of masks written.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    device = _model_device(model)
    partial = out_path.with_name(out_path.name + ".partial")
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for index, image_id in enumerate(dataset.ids):
            image = dataset[index][0]
            image = image.as_subclass(torch.Tensor).unsqueeze(0).to(device)
            labels = predict_labels(model, image, **options)[0]
            png = Path(folder) / f"{image_id}.png"
            write_mask(png, labels.to(torch.uint8).cpu())
            zf.write(png, arcname=png.name)
    partial.replace(out_path)  # the zip appears complete or not at all
    return len(dataset.ids)
