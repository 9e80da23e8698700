"""Datasets, masks, transforms and statistics for semantic segmentation.

masks.py       VOC_CLASSES, VOC_PALETTE, read_mask / write_mask (palette PNGs), colorize_mask
samples.py     load_image / load_sample: files -> tv_tensors.Image uint8 and tv_tensors.Mask int64;
               LazySample: a sample whose image and mask are decoded only when first read
voc.py         VOCSegmentation: any dataset in the VOC-2012 layout
folder.py      FolderDataset: images/ + masks/, or data/<split>/ + labels/<split>/
transforms.py  train_transforms / eval_transforms, built from torchvision.transforms.v2
shapes.py      make_shapes: the small synthetic dataset, in the VOC layout
stats.py       dataset_stats: class pixel/image counts and image sizes
ops.py         datasets from datasets: subset, filter_samples, map_samples, concat, random_split, repeat,
               images_only
cache.py       CachedDataset: decoded samples (and deterministic pre-processing) stored on disk
"""

from segkit.data.cache import CachedDataset
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
from segkit.data.ops import (
    SampleList,
    concat,
    contains_class,
    filter_samples,
    images_only,
    map_samples,
    random_split,
    repeat,
    subset,
)
from segkit.data.samples import LazySample, load_image, load_mask, load_sample
from segkit.data.shapes import SHAPE_CLASSES, default_shapes_dir, make_shapes, shapes_is_complete
from segkit.data.stats import DatasetStats, dataset_stats
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, eval_transforms, train_transforms
from segkit.data.voc import VOCSegmentation, available_splits, find_voc_root

__all__ = [
    "CachedDataset",
    "FolderDataset",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "VOID_INDEX",
    "colorize_mask",
    "read_mask",
    "voc_colour",
    "write_mask",
    "SampleList",
    "concat",
    "contains_class",
    "filter_samples",
    "images_only",
    "map_samples",
    "random_split",
    "repeat",
    "subset",
    "LazySample",
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
