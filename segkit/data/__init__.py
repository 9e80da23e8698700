"""Datasets, masks, transforms and statistics for semantic segmentation.

masks.py       VOC_CLASSES, VOC_PALETTE, read_mask / write_mask (palette PNGs), colorize_mask
samples.py     load_image / load_sample: files -> tv_tensors.Image uint8 and tv_tensors.Mask int64;
               LazySample: a sample whose image and mask are decoded only when first read
voc.py         VOCSegmentation: any dataset in the VOC-2012 layout
folder.py      FolderDataset: images/ + masks/, or data/<split>/ + labels/<split>/
transforms.py  train_transforms / eval_transforms, built from torchvision.transforms.v2
shapes.py      make_shapes: the small synthetic dataset, in the VOC layout
stats.py       dataset_stats: class pixel/image counts and image sizes
ops.py         datasets from datasets (on torch.utils.data's Subset and ConcatDataset): subset,
               filter_samples, contains_class, map_samples, concat, random_split, repeat
cache.py       CachedDataset: decoded samples (and deterministic pre-processing) stored on disk

Every name loads with its module when first used (segkit.lazy): `from segkit.data.masks import read_mask`
or `from segkit.data import read_mask` reads masks without importing torchvision.
"""

from segkit.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "CachedDataset": ".cache",
    "FolderDataset": ".folder",
    "VOC_CLASSES": ".masks",
    "VOC_PALETTE": ".masks",
    "VOID_INDEX": ".masks",
    "colorize_mask": ".masks",
    "read_mask": ".masks",
    "voc_colour": ".masks",
    "write_mask": ".masks",
    "Concat": ".ops",
    "Subset": ".ops",
    "concat": ".ops",
    "contains_class": ".ops",
    "filter_samples": ".ops",
    "sources": ".ops",
    "map_samples": ".ops",
    "random_split": ".ops",
    "repeat": ".ops",
    "subset": ".ops",
    "LazySample": ".samples",
    "load_image": ".samples",
    "load_mask": ".samples",
    "load_sample": ".samples",
    "SHAPE_CLASSES": ".shapes",
    "default_shapes_dir": ".shapes",
    "make_shapes": ".shapes",
    "shapes_is_complete": ".shapes",
    "DatasetStats": ".stats",
    "dataset_stats": ".stats",
    "IMAGENET_MEAN": ".transforms",
    "IMAGENET_STD": ".transforms",
    "denormalize": ".transforms",
    "eval_transforms": ".transforms",
    "train_transforms": ".transforms",
    "VOCSegmentation": ".voc",
    "available_splits": ".voc",
    "find_voc_root": ".voc",
})

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
    "Concat",
    "Subset",
    "concat",
    "contains_class",
    "filter_samples",
    "sources",
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
