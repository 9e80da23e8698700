"""Augmentation presets for segmentation, built only from torchvision.transforms.v2.

A sample is `(image, mask)` with image a `tv_tensors.Image` uint8 (3, H, W) and mask a `tv_tensors.Mask`
int64 (H, W). v2 transforms draw their random parameters once per call and apply them to every tagged
input, so the image and the mask get the same scale, crop window and flip. Resizing uses bilinear
interpolation (with antialiasing) for the image and nearest neighbour for the mask — v2 forces nearest for
`Mask`, so class indices are never blended into meaningless in-between values.

Train preset (DeepLab / torchvision-reference style):

    ScaleJitter      scale s ~ U(scale_range), relative to the image (see base_size)
    ToDtype          uint8 [0, 255] -> float32 [0, 1]; mask stays int64
    RandomCrop       crop_size x crop_size; if the scaled image is smaller it is padded first:
                     image with the mean colour (`mean`, per channel), mask with 255 (void, ignored by
                     losses and metrics)
    RandomHorizontalFlip (p = 0.5), optionally RandomVerticalFlip (p = 0.5)
    Normalize        x -> (x - mean) / std per channel

Why pad with the mean colour, then normalise: a padded pixel becomes (mean - mean) / std = 0 exactly (the
fill and Normalize both round `mean` to the same float32, so the difference is an exact 0), and 0 after
Normalize *is* the mean colour. The padded border looks like an "average" pixel rather than pure black, and
carries no label (255). Padding with 0 instead would insert strongly negative values (-mean / std), an
artificial black frame the network could learn to react to. Normalize acts on every value on its own, so it
commutes with cropping and flipping: the output is bit for bit that of the classic DeepLab / torchvision-
reference order (normalise, pad with 0, crop, flip). Only the work changes: Normalize touches the crop
(513 x 513 for VOC) instead of the whole scaled image (up to 1000 x 750 at s = 2). Below a scale of about
0.8 it costs a little more (the padded crop is larger than the scaled image, and v2 pads with a per-channel
fill by writing the border a second time); bench/loader.py measures the whole chain.

Eval preset: the whole image, only ToDtype + Normalize (no resizing, so predictions are scored at the
original resolution).
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from segkit.data.masks import VOID_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Image -> float32 scaled to [0, 1]; Mask -> int64 (no scaling); anything else passes through.
_TO_FLOAT = {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}


def train_transforms(
    crop_size: int | tuple[int, int] = 128,
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    vflip: bool = False,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    base_size: int | None = None,
    ignore_index: int = VOID_INDEX,
) -> v2.Compose:
    """Training augmentation: random scale -> random crop (padded with the mean) -> flips -> normalise.

    crop_size: output size, an int (square) or (height, width).
    scale_range: (low, high) for the random scale factor s, drawn uniformly.
    base_size: the scale is applied by v2.ScaleJitter, which resizes the image by
        r = s * min(base_size / H, base_size / W), i.e. s times the image after fitting it into a
        base_size x base_size square. Set base_size to the longer side of your images to scale relative to
        the image itself: 500 for VOC-2012 (almost every VOC image is 500 pixels on its longer side),
        the --size of the shapes set. None uses the larger of the crop's height and width.
    hflip, vflip: add a random horizontal / vertical flip, each with probability 0.5.
    mean, std: per-channel statistics for Normalize (defaults: ImageNet, what pretrained backbones expect).
    ignore_index: the void label, given to padded mask pixels (config: data.ignore_index).

    Returns a callable `(image, mask) -> (image float32 (3, h, w), mask int64 (h, w))`, h, w = crop size;
    padded pixels are 0 in the image (= the mean colour) and ignore_index (255) in the mask. The values equal those of
    normalising first and padding with 0, see the module docstring.
    """
    crop_hw = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if base_size is None:
        base_size = max(crop_hw)
    steps = [
        v2.ScaleJitter(target_size=(base_size, base_size), scale_range=(low, high), antialias=True),
        v2.ToDtype(_TO_FLOAT, scale=True),
        # Image padded with the mean colour in [0, 1]: Normalize, last, turns it into exactly 0.
        v2.RandomCrop(crop_hw, pad_if_needed=True, fill={tv_tensors.Image: list(mean), tv_tensors.Mask: ignore_index}),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if vflip:
        steps.append(v2.RandomVerticalFlip(p=0.5))
    steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return v2.Compose(steps)


def eval_transforms(
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> v2.Compose:
    """Evaluation: the whole image as float32, normalised; the mask is unchanged (int64).

    Returns a callable `(image, mask) -> (image float32 (3, H, W), mask int64 (H, W))`; it also accepts
    the image alone (prediction on unlabelled data).
    """
    return v2.Compose([v2.ToDtype(_TO_FLOAT, scale=True), v2.Normalize(mean=list(mean), std=list(std))])


def denormalize(
    image: torch.Tensor,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """Undo Normalize for display: x * std + mean, clamped to [0, 1]. image: (..., 3, H, W) float."""
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std_t + mean_t).clamp(0.0, 1.0)
