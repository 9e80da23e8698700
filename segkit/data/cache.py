"""Decoded samples kept on disk, so later runs skip JPEG/PNG decoding and deterministic pre-processing.

    raw = VOCSegmentation(root, "train")                      # a dataset that reads files, no transforms
    train = CachedDataset(raw, train_transforms(crop_size=320, base_size=500))
    train.stored_steps  -> []          ScaleJitter is random, so nothing after it can be stored
    train.live_steps    -> [ScaleJitter, ToDtype, RandomCrop, RandomHorizontalFlip, Normalize]

    val = CachedDataset(VOCSegmentation(root, "val"), eval_transforms())
    val.stored_steps    -> [ToDtype, Normalize]   stored as float32 (4 times the bytes of uint8)

What is stored. The transform chain is cut before its first step that is not known to be deterministic
(`DETERMINISTIC_STEPS`, checked by exact type): the steps before the cut run once, at build time, and their
output is stored; the rest (all random augmentation) runs at every access, as without a cache. Random
augmentation is never stored: a stored random crop would be the same crop in every epoch.

Where. `<cache root>/datasets/<name>-<hash>/` with cache root = segkit.paths.cache_root() ($SEGKIT_CACHE,
default <repo>/data/cache, git-ignored with the rest of data/). The hash covers what the stored arrays
depend on: the image and mask file of every sample (paths, in order: so root, split and ids), the
description of every stored step (class name and parameters, see describe_step) and the versions of
torch, torchvision, Pillow and numpy. Another stored chain gets another folder.

Files in that folder, all written to `<folder>.partial-<pid>` first and renamed into place when complete:

    image.bin     every sample's image array, one after another (C order, stored dtype)
    mask.bin      the same for masks (uint8: class indices 0..255); absent for a split without masks
    index.json    the key (above, plus each file's size and modification time), the number of samples,
                  and per field: tensor type and dtype, stored dtype, per-sample shapes, CRC-32 of the file
    (and next to the folder, <folder>.lock: the lock file, kept)

One flat file per field, read through a numpy memory map: reading a sample is a copy out of the page cache,
with no file to open and nothing to decode (a JPEG costs a full decode every time). bench/loader.py
measures what this gives a training pipeline.

The consistency check on opening. The cache is used only when index.json exists, its key equals the key
of the dataset now (so a file whose size or modification time changed, a different stored chain, ...
all fail), the sample count matches, every field's .bin file has exactly the bytes its shapes and dtype
add up to, and (verify=True, the default) its CRC-32 matches (a full read of the file). Otherwise the
folder is rebuilt, with the reason printed. File contents are not hashed: an edit that keeps a file's
size and modification time (to the nanosecond) goes unnoticed, as with make.

Several processes (DDP ranks) may open the same cache: a file lock lets one build while the others wait.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from filelock import FileLock
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from segkit import paths
from segkit.data.ops import sources
from segkit.data.samples import LazySample

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
FIELDS = ("image", "mask")
CHECKSUM_CHUNK = 16 * 2**20

# Transforms whose output depends only on their input and parameters (no random draw). Exact types:
# a subclass may add randomness. Add your own deterministic transform classes here to let them be stored.
DETERMINISTIC_STEPS: tuple[type, ...] = (
    v2.ToDtype,
    v2.Normalize,
    v2.Resize,
    v2.CenterCrop,
    v2.Pad,
    v2.Grayscale,
    v2.ToImage,
    v2.Identity,
)


def split_steps(transforms) -> tuple[list, list]:
    """(stored, live): the deterministic prefix of `transforms` and the rest.

    transforms: None, a v2.Compose (its top-level steps), a list of steps or one callable.
    """
    if transforms is None:
        steps = []
    elif isinstance(transforms, v2.Compose):
        steps = list(transforms.transforms)
    elif isinstance(transforms, (list, tuple)):
        steps = list(transforms)
    else:
        steps = [transforms]
    cut = 0
    while cut < len(steps) and type(steps[cut]) in DETERMINISTIC_STEPS:
        cut += 1
    return steps[:cut], steps[cut:]


def describe_step(step) -> str:
    """A stable text for a transform: 'module.Class(name=value, ...)' over its public attributes, sorted."""
    params = {k: v for k, v in sorted(vars(step).items()) if not k.startswith("_") and k != "training"}
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{type(step).__module__}.{type(step).__qualname__}({text})"


def _file_stat(path) -> list | None:
    if path is None:
        return None
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def _check_cacheable(dataset) -> None:
    for source in sources(dataset):
        reads_files = hasattr(source, "image_path") and hasattr(source, "mask_path")
        if not reads_files or getattr(source, "transforms", "none given") is not None:
            raise ValueError(
                f"CachedDataset needs a dataset that reads image and mask files without transforms "
                f"(VOCSegmentation or FolderDataset with transforms=None, or a subset/filter/split/concat/"
                f"repeat of such), got {source!r}. Pass the transforms to CachedDataset(dataset, transforms) "
                "instead; to cache a map_samples result, cache its source and map the cached dataset."
            )
    if len(dataset) == 0:
        raise ValueError(f"CachedDataset: {dataset!r} is empty")


def dataset_key(dataset, stored_steps: list) -> tuple[dict, dict]:
    """(identity, files) of a cache. identity (-> the folder name): the files of every sample, the stored
    steps, library versions. files: [image size, image mtime_ns, mask size, mask mtime_ns] per sample."""
    image_paths = [str(dataset.image_path(i)) for i in range(len(dataset))]
    mask_paths = [dataset.mask_path(i) for i in range(len(dataset))]
    identity = {
        "format": FORMAT_VERSION,
        "images": image_paths,
        "masks": [None if p is None else str(p) for p in mask_paths],
        "stored_steps": [describe_step(step) for step in stored_steps],
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "pillow": PIL.__version__, "numpy": np.__version__},
    }  # fmt: skip
    stats = [[_file_stat(i), _file_stat(m)] for i, m in zip(image_paths, mask_paths, strict=True)]
    return identity, {"stats": stats}


def _crc32_of_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as file:
        while chunk := file.read(CHECKSUM_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


class _StoredItems(torch.utils.data.Dataset):
    """Build-time view: item i = the stored steps applied to the source's sample i (both fields)."""

    def __init__(self, source, stored_steps):
        self.source = source
        self.stored = v2.Compose(stored_steps) if stored_steps else None

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        image, mask = self.source[index]
        if self.stored is None:
            return image, mask
        if mask is None:
            return self.stored(image), None
        return self.stored(image, mask)


def _dtype_name(value: torch.Tensor) -> str:
    return str(value.dtype).removeprefix("torch.")


def _field_array(field: str, value, sample_id: str) -> np.ndarray:
    """The array stored for one field: images as they are, masks as uint8 class indices."""
    array = value.as_subclass(torch.Tensor).contiguous().numpy()
    if field == "mask":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"CachedDataset: mask of sample {sample_id!r} holds values outside 0..255")
        array = array.astype(np.uint8)
    return array


class CachedDataset:
    """`dataset` decoded once and stored on disk, then `transforms` split into stored and live steps.

    dataset: reads files, without transforms (VOCSegmentation / FolderDataset with transforms=None, or a
        subset, filter, split, concat or repeat of them, see segkit.data.ops).
    transforms: the whole chain, as for a dataset: (image, mask) -> (image, mask). Its deterministic
        prefix is stored (stored_steps), the rest runs at each access (live_steps).
    cache_root: default segkit.paths.cache_root() ($SEGKIT_CACHE, else <repo>/data/cache).
    verify: check the CRC-32 of the stored files when opening (sizes and key are always checked).
    num_workers: processes decoding in parallel while building.
    verbose: print a line when building (and why, when an existing cache is rebuilt).

    `ds[i]` -> (image, mask) as `dataset` with `transforms` would give, mask int64 (H, W) or None.
    Attributes: source, folder, stored_steps, live_steps, built (True when this call built the cache),
    rebuild_reason (why an existing cache was not used, else None), ids, classes, palette, has_masks, split.
    """

    def __init__(self, dataset, transforms=None, cache_root=None, verify: bool = True, num_workers: int = 0,
                 verbose: bool = True):  # fmt: skip
        _check_cacheable(dataset)
        self.source = dataset
        self.transforms = transforms
        self.stored_steps, self.live_steps = split_steps(transforms)
        self.live = v2.Compose(self.live_steps) if self.live_steps else None
        self.classes = tuple(dataset.classes)
        self.palette = dataset.palette
        self.split = getattr(dataset, "split", None)
        identity, files = dataset_key(dataset, self.stored_steps)
        self.key = {"identity": identity, "files": files}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        first = sources(dataset)[0]
        name = f"{type(first).__name__}-{self.split}" if self.split else type(first).__name__
        self.folder = paths.cache_root(cache_root) / "datasets" / f"{name}-{digest}"
        self.built = False
        self.rebuild_reason = None
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder) + ".lock"):
            problem = self._problem(verify) if self.folder.exists() else "absent"
            if problem is not None:
                if problem != "absent":
                    self.rebuild_reason = problem
                self._build(num_workers, verbose)
                self.built = True
        self._load_index()

    # ------------------------------------------------------------------------------------ checking

    def _problem(self, verify: bool) -> str | None:
        """Why the cache folder cannot be used as it is, or None when it can."""
        index_path = self.folder / INDEX_NAME
        if not index_path.is_file():
            return f"no {INDEX_NAME} in {self.folder} (an interrupted build?)"
        try:
            index = json.loads(index_path.read_text())
            return self._index_problem(index, verify)
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as err:  # unreadable or damaged
            return f"{index_path} is unreadable or malformed ({type(err).__name__}: {err})"

    def _index_problem(self, index: dict, verify: bool) -> str | None:
        if index["key"]["identity"] != self.key["identity"]:
            return f"{INDEX_NAME} was written for another dataset or transform chain"
        old_stats, new_stats = index["key"]["files"]["stats"], self.key["files"]["stats"]
        if old_stats != new_stats:
            changed = [i for i, (old, new) in enumerate(zip(old_stats, new_stats, strict=True)) if old != new]
            example = f", e.g. sample {self.source.ids[changed[0]]!r}" if changed else ""
            return f"{len(changed)} sample file(s) changed since the cache was built{example}"
        if index["count"] != len(self.source):
            return f"{INDEX_NAME} holds {index['count']} samples, the dataset has {len(self.source)}"
        for field, info in index["fields"].items():
            path = self.folder / f"{field}.bin"
            shapes = info["shapes"]
            if len(shapes) != len(self.source):
                return f"field {field!r} has {len(shapes)} shapes for {len(self.source)} samples"
            expected = sum(math.prod(shape) for shape in shapes) * np.dtype(info["stored_dtype"]).itemsize
            if not path.is_file() or path.stat().st_size != expected:
                size = path.stat().st_size if path.is_file() else "no file"
                return f"{path} has {size} bytes, expected {expected} (truncated or partial)"
            if verify and _crc32_of_file(path) != info["crc32"]:
                return f"{path} is corrupt (its CRC-32 differs from the one in {INDEX_NAME})"
        return None

    # ------------------------------------------------------------------------------------- building

    def _build(self, num_workers: int, verbose: bool) -> None:
        """Write the cache into `<folder>.partial-<pid>`, then rename it to `folder` (all or nothing)."""
        folder = self.folder
        for stale in folder.parent.glob(f"{folder.name}.partial-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        partial.mkdir()
        if verbose:
            why = f" ({self.rebuild_reason})" if self.rebuild_reason else ""
            print(f"caching {len(self.source)} samples of {self.source!r} in {folder}{why}", file=sys.stderr)
        try:
            fields = self._write_fields(partial, num_workers)
            index = {"key": self.key, "count": len(self.source), "fields": fields}
            (partial / INDEX_NAME).write_text(json.dumps(index))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if folder.exists():  # an unusable old cache: move it aside, put the new one in, delete the old
            old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
            folder.rename(old)
            partial.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(folder)

    def _write_fields(self, partial: Path, num_workers: int) -> dict:
        """Append every sample's arrays to <field>.bin; returns the per-field entries of index.json."""
        stored_items = _StoredItems(self.source, self.stored_steps)
        items = DataLoader(stored_items, batch_size=None, num_workers=num_workers)
        fields, files = {}, {}
        try:
            for index, (image, mask) in enumerate(items):
                sample_id = self.source.ids[index]
                for field, value in (("image", image), ("mask", mask)):
                    if index == 0 and value is not None:
                        files[field] = open(partial / f"{field}.bin", "wb")
                        fields[field] = {"kind": type(value).__name__, "dtype": _dtype_name(value),
                                         "stored_dtype": None, "shapes": [], "crc32": 0}  # fmt: skip
                    info = fields.get(field)
                    if (value is None) != (info is None) or (info and _dtype_name(value) != info["dtype"]):
                        first = "absent" if info is None else info["dtype"]
                        found = "absent" if value is None else _dtype_name(value)
                        raise ValueError(f"CachedDataset: field {field!r} of sample {sample_id!r} is "
                                         f"{found}, in the first sample it is {first}")  # fmt: skip
                    if value is None:
                        continue
                    array = _field_array(field, value, sample_id)
                    data = array.tobytes()
                    files[field].write(data)
                    info["stored_dtype"] = str(array.dtype)
                    info["shapes"].append(list(array.shape))
                    info["crc32"] = zlib.crc32(data, info["crc32"])
            for file in files.values():
                file.flush()
                os.fsync(file.fileno())
        finally:
            for file in files.values():
                file.close()
        return fields

    # -------------------------------------------------------------------------------------- reading

    def _load_index(self) -> None:
        index = json.loads((self.folder / INDEX_NAME).read_text())
        self.fields = index["fields"]
        self._starts = {}  # field -> (N,) int64: first element of each sample in the flat file
        for field, info in self.fields.items():
            sizes = np.array([math.prod(shape) for shape in info["shapes"]], dtype=np.int64)
            self._starts[field] = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._maps = None  # memory maps, opened on first use in each process

    def __getstate__(self):  # DataLoader workers (spawn) get the paths, not a copy of the arrays
        state = dict(self.__dict__)
        state["_maps"] = None
        return state

    def stored(self, index: int, field: str):
        """The stored value of `field` ("image" or "mask") of sample `index` (None: no masks).
        image: tv_tensors.Image (3, H, W) of the stored dtype; mask: tv_tensors.Mask int64 (H, W)."""
        if field not in self.fields:
            return None
        if self._maps is None:
            self._maps = {f: np.memmap(self.folder / f"{f}.bin", dtype=info["stored_dtype"], mode="r")
                          for f, info in self.fields.items()}  # fmt: skip
        info = self.fields[field]
        shape = info["shapes"][index]
        start = int(self._starts[field][index])
        array = np.array(self._maps[field][start : start + math.prod(shape)]).reshape(shape)  # a copy
        tensor = torch.from_numpy(array).to(getattr(torch, info["dtype"]))
        return tv_tensors.Mask(tensor) if info["kind"] == "Mask" else tv_tensors.Image(tensor)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_masks(self) -> bool:
        return "mask" in self.fields

    @property
    def ids(self) -> list[str]:
        return list(self.source.ids)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        index = range(len(self))[index]  # negative indices, and an IndexError past the end
        image, mask = self.stored(index, "image"), self.stored(index, "mask")
        if self.live is None:
            return image, mask
        if mask is None:
            return self.live(image), None
        return self.live(image, mask)

    def image(self, index: int):
        """The image alone, live steps applied to it alone; the mask is not read."""
        image = self.stored(range(len(self))[index], "image")
        return image if self.live is None else self.live(image)

    def sample(self, index: int) -> LazySample:
        """A LazySample; without live steps each field is read from its own file when first used."""
        index = range(len(self))[index]
        if self.live is not None:
            return LazySample.from_item(self.source.ids[index], lambda: self[index])
        return LazySample(self.source.ids[index], lambda: self.stored(index, "image"),
                          (lambda: self.stored(index, "mask")) if self.has_masks else None)  # fmt: skip

    def image_path(self, index: int):
        return self.source.image_path(index)

    def mask_path(self, index: int):
        return self.source.mask_path(index)

    def __repr__(self) -> str:
        return f"CachedDataset({self.source!r}, {len(self.stored_steps)} stored steps, in {self.folder})"
