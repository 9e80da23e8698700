"""Datasets, masks, transforms and statistics for semantic segmentation.

masks.py       VOC_CLASSES, VOC_PALETTE, read_mask / write_mask (palette PNGs), colorize_mask
samples.py     load_image / load_sample: files -> tv_tensors.Image uint8 and tv_tensors.Mask int64
voc.py         VOCSegmentation: any dataset in the VOC-2012 layout
folder.py      FolderDataset: images/ + masks/, or data/<split>/ + labels/<split>/
transforms.py  train_transforms / eval_transforms, built from torchvision.transforms.v2
shapes.py      make_shapes: the small synthetic dataset, in the VOC layout
stats.py       dataset_stats: class pixel/image counts and image sizes
"""

from segkit.data.folder import FolderDataset
from segkit.data.masks import (
    VOC_CLASSES,
    VOC_PALETTE,
    VOID_INDEX,
    colorize_mask,
    read_mask,
    voc_colour,
    write_mask,
)
from segkit.data.samples import load_image, load_mask, load_sample
from segkit.data.shapes import SHAPE_CLASSES, default_shapes_dir, make_shapes, shapes_is_complete
from segkit.data.stats import DatasetStats, dataset_stats
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, eval_transforms, train_transforms
from segkit.data.voc import VOCSegmentation, available_splits, find_voc_root

__all__ = [
    "FolderDataset",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "VOID_INDEX",
    "colorize_mask",
    "read_mask",
    "voc_colour",
    "write_mask",
    "load_image",
    "load_mask",
    "load_sample",
    "SHAPE_CLASSES",
    "default_shapes_dir",
    "make_shapes",
    "shapes_is_complete",
    "DatasetStats",
    "dataset_stats",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "denormalize",
    "eval_transforms",
    "train_transforms",
    "VOCSegmentation",
    "available_splits",
    "find_voc_root",
]
