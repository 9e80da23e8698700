"""Inference: whole image, sliding window, test-time augmentation, and the one evaluation function.

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

For whole datasets: `evaluate` accumulates one confusion matrix over a loader. It is the only evaluation
loop in segkit: the Trainer's validation, `segkit evaluate`, the notebooks and the searches all call it, so a
number logged while training is the number `segkit evaluate` prints for the same checkpoint.
`write_submission` writes the zip of predicted masks that the class competition scores (`segkit predict`).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from segkit.data.masks import VOID_INDEX, write_mask
from segkit.metrics import ConfusionMatrix

PAD_MODES = ("constant", "reflect", "replicate")
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


def logits_of(output) -> torch.Tensor:
    """The main logits of a model output: the tensor itself, or `output["out"]` for a dict
    ({"out": logits, "aux": aux_logits}, what a model with an auxiliary head returns while training)."""
    return output["out"] if isinstance(output, dict) else output


def _logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """logits_of(model(images)) (N, C, H, W), checked to be at the images' resolution."""
    output = logits_of(model(images))
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


def choose_device(cuda: bool, mps: bool) -> str:
    """The device to compute on, given what this machine has: "cuda" (an NVIDIA GPU) before "mps" (the GPU
    of an Apple-silicon Mac, through Metal) before "cpu"."""
    return "cuda" if cuda else "mps" if mps else "cpu"


def default_device() -> str:
    """The fastest device torch can use here: choose_device(torch.cuda.is_available(),
    torch.backends.mps.is_available()). What `device: auto` and a notebook's `course.device` mean."""
    return choose_device(torch.cuda.is_available(), torch.backends.mps.is_available())


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def autocast(device: torch.device, amp: str | None):
    """torch.autocast with the dtype of `amp` (None, "bf16", "fp16"), or a no-op when amp is None."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of None, 'bf16', 'fp16', got {amp!r}")
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch.device for a device name, checked against this machine: "auto" (default_device(): CUDA, else
    Apple's MPS, else the CPU), "cpu", "cuda", "cuda:N", "mps". Raises ValueError naming the device and what
    exists."""
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    exists = "this machine has " + (f"{cuda_count} CUDA device(s), cuda:0..cuda:{cuda_count - 1}"
                                    if cuda_count else "no CUDA device")
    if str(name) == "auto":
        return torch.device(default_device())
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {str(name)!r} is not a device name: expected auto, cpu, cuda, cuda:N or "
                         f"mps ({exists})") from None
    if device.type == "cuda":
        if not cuda_count:
            raise ValueError(f"device {str(name)!r}: {exists} (torch.cuda.is_available() is False); use cpu "
                             "or auto")
        if device.index is not None and device.index >= cuda_count:
            raise ValueError(f"device {str(name)!r} does not exist: {exists}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(name)!r}: this machine has no Apple GPU (MPS); use cpu or auto")
    elif device.type != "cpu":
        raise ValueError(f"device {str(name)!r}: segkit runs on auto, cpu, cuda, cuda:N or mps ({exists})")
    return device


def to_device(images: torch.Tensor, masks: torch.Tensor | None, device: torch.device,
              channels_last: bool = False):
    """Plain tensors on `device` (tv_tensors lose their tag); images in channels_last layout if asked."""
    non_blocking = device.type == "cuda"
    images = images.as_subclass(torch.Tensor).to(device, non_blocking=non_blocking)
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    if masks is not None:
        masks = masks.as_subclass(torch.Tensor).to(device, non_blocking=non_blocking)
    return images, masks


def _logits_for(model: nn.Module, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """logits_of(model(inputs)) (N, C, H, W), checked against the masks (N, H, W). The inputs are usually
    images of the masks' size, but may be anything the model maps to logits at the masks' resolution
    (stored features, for a head trained on embeddings)."""
    logits = logits_of(model(inputs))
    if logits.dim() != 4 or logits.shape[0] != masks.shape[0] or logits.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"the model must map its inputs {tuple(inputs.shape)} to logits (N, C, H, W) at the "
                         f"masks' resolution {tuple(masks.shape)}; it returned {tuple(logits.shape)}")
    return logits


@torch.inference_mode()
def evaluate(model: nn.Module, loader, num_classes: int, *, ignore_index: int = VOID_INDEX, loss_fn=None,
             amp: str | None = None, channels_last: bool = False, max_batches: int | None = None,
             reduce_across_processes: bool = True, **options) -> dict:
    """Dataset-level metrics of `model` on `loader` (batches of images (N, 3, H, W), masks (N, H, W) int64).

    The loop every evaluation in segkit goes through (the Trainer, `segkit evaluate`, notebooks, searches).

    Every pixel of every image goes into one segkit.metrics.ConfusionMatrix (the VOC definition: never a
    mean of per-image scores); void pixels (mask == ignore_index) are left out. Predictions are
    `argmax(logits_of(model(images)))`, or, with test-time augmentation or a sliding window (options
    scales other than (1.0,), flip, window, stride, pad_mode), `predict_labels(model, images, **options)`.
    The model runs in eval mode, on the device of its parameters, under autocast when `amp` is "bf16" or
    "fp16"; its previous mode is restored afterwards.

    loss_fn: also the mean loss over the non-void pixels of the dataset,
        loss = sum_batches valid_b * loss_fn(logits_b, masks_b) / sum_batches valid_b,
        (valid_b = non-void pixels of batch b; exact for a loss that is a mean over non-void pixels).
    max_batches: only the first n batches (the Trainer's limit_batches).
    reduce_across_processes: under torch.distributed, sum the counts of every process (each evaluated
        its own shard); False: this process's batches only.

    Returns ConfusionMatrix.compute() plus "loss" (NaN without loss_fn), "num_images" and
    "confusion_matrix" (the ConfusionMatrix itself).
    """
    device = _model_device(model)
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    augmented = bool(options.get("flip")) or options.get("window") is not None or tuple(
        options.get("scales", (1.0,))) != (1.0,)
    # [sum over batches of valid pixels * mean loss, valid pixels, images]
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for number, (images, masks) in enumerate(loader):
            if max_batches is not None and number >= max_batches:
                break
            images, masks = to_device(images, masks, device, channels_last)
            valid = int((masks != ignore_index).sum())
            with autocast(device, amp):
                if augmented:
                    labels, logits = predict_labels(model, images, **options), None
                else:
                    logits = _logits_for(model, images, masks)
                    labels = logits.argmax(1)
                if loss_fn is not None and valid:
                    if logits is None:
                        logits = _logits_for(model, images, masks)
                    totals[0] += loss_fn(logits, masks).double() * valid
            totals[1] += valid
            totals[2] += len(images)
            confusion.update(labels, masks)
    finally:
        model.train(was_training)
    if reduce_across_processes and dist.is_available() and dist.is_initialized():
        confusion.all_reduce()
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    metrics = confusion.compute()
    has_loss = loss_fn is not None and totals[1] > 0
    metrics["loss"] = float(totals[0] / totals[1]) if has_loss else float("nan")
    metrics["num_images"] = int(totals[2])
    metrics["confusion_matrix"] = confusion
    return metrics


def write_submission(model: nn.Module, dataset, out_path, **options) -> int:
    """Predict every image of `dataset` and write a zip of masks in the competition's format.

    dataset: items (image (3, H, W) float normalised, mask or None), with `ids` (image ids) in the same
        order, e.g. a segkit VOCSegmentation of the test split read with masks="none".
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
