"""Embeddings: the random encoder's features of a whole split, computed once and cached on disk.

A deep prior is never trained, so its features for a given image never change: DP-NAS computes them once
per architecture and trains the linear classifier on the stored copies. Here:

    data = ProbeData(root="data/shapes", image_size=64)          # train/val splits, fixed-size transform
    train = data.embeddings("[C(16,3,1,1,0), P(2,2)]", seed=0, split="train")   # computed or read back
    train.features   # (N, F, h, w) float32      train.masks  # (N, H, W) uint8, 255 = void
    store_embeddings("exports/dp", {"train": train, "val": data.embeddings(arch, 0, "val")})

Cache key (a dict, hashed with SHA-256 into the file name, stored in the file and checked on reading):

    format      this module's file format version
    arch        the canonical architecture string (archstring.py)
    seed        the seed of the encoder weights
    data        split name, number of images, transform (image_size, mean, std) and a SHA-256 over every
                image id with the size and modification time (ns) of its image and mask files

so another architecture, another seed, another image size or a changed, added or removed file gives another
key and the features are computed again; the same key in another run, another epoch or another process reads
the file. Files are written atomically (a temporary file in the same folder, then os.replace): a killed run
leaves either no file or a complete one. Two processes computing the same key at once both write the same
content, and the last rename wins.

Layout of the cache folder (default `<runs>/deep_prior_cache`, see segkit.paths):

    <digest>.pt     {"key": ..., "features": (N, F, h, w) float32, "masks": (N, H, W) uint8, "ids": [...]}
    <digest>.json   the key, for people

Every image of a split must have the same size (features are stacked into one tensor): give `image_size`
to resize images bilinearly and masks by nearest neighbour to image_size x image_size.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from segkit import paths
from segkit.data import IMAGENET_MEAN, IMAGENET_STD, VOCSegmentation
from segkit.inference import default_device
from segkit.models.deep_prior.archstring import canonical_arch
from segkit.models.deep_prior.network import RandomEncoder

FORMAT = 1
_TO_FLOAT = {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}


def atomic_write(path: str | os.PathLike, write, binary: bool = True) -> Path:
    """Call `write(file)` on a temporary file next to `path`, then rename it to `path` (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def probe_transforms(image_size: int | None = 64, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """(image uint8 (3, H, W), mask int64 (H, W)) -> (float32 normalised (3, s, s), int64 (s, s)),
    s = image_size (bilinear with antialiasing for the image, nearest for the mask); None keeps the size."""
    steps = [] if image_size is None else [v2.Resize((image_size, image_size), antialias=True)]
    steps += [v2.ToDtype(_TO_FLOAT, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return v2.Compose(steps)


def files_fingerprint(dataset) -> str:
    """SHA-256 over (id, image size, image mtime_ns, mask size, mask mtime_ns) of every sample, in order.

    dataset: a segkit dataset with `ids`, `image_path(i)` and `mask_path(i)` (VOCSegmentation, FolderDataset).
    """
    for name in ("ids", "image_path", "mask_path"):
        if not hasattr(dataset, name):
            raise TypeError(f"{type(dataset).__name__} has no {name!r}: embeddings are cached for segkit "
                            "datasets (VOCSegmentation, FolderDataset) whose files can be fingerprinted")
    digest = hashlib.sha256()
    for index, sample_id in enumerate(dataset.ids):
        parts = [str(sample_id)]
        for path in (dataset.image_path(index), dataset.mask_path(index)):
            if path is None:
                parts.append("-")
                continue
            stat = os.stat(path)
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        digest.update(("|".join(parts) + "\n").encode())
    return digest.hexdigest()


@dataclass
class Embeddings:
    """The features of one split. features (N, F, h, w) float32; masks (N, H, W) uint8 (255 = void);
    ids: the N image ids in order; key: the cache key; computed: True when the encoder ran for this call."""

    features: torch.Tensor
    masks: torch.Tensor
    ids: list[str]
    key: dict
    path: Path | None = None
    computed: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.masks.shape[-2:])

    def dataset(self) -> torch.utils.data.TensorDataset:
        """(features (F, h, w), mask (H, W) int64) pairs, e.g. for the Trainer with HeadOnFeatures."""
        return torch.utils.data.TensorDataset(self.features, self.masks.long())


def compute_features(encoder: torch.nn.Module, dataset, batch_size: int = 16, device="cpu"):
    """Run `encoder` (in eval mode, without autograd) over `dataset` in order.

    dataset[i] -> (image float (3, H, W), mask int64 (H, W)), all of the same size.
    Returns (features (N, F, h, w) float32 on the CPU, masks (N, H, W) uint8).
    """
    encoder = encoder.to(device).eval()
    features, masks, batch = [], [], []
    first_size = None

    def flush():
        images = torch.stack([image for image, _ in batch]).to(device)
        with torch.no_grad():
            features.append(encoder(images).float().cpu())
        masks.append(torch.stack([mask for _, mask in batch]))
        batch.clear()

    for index in range(len(dataset)):
        image, mask = dataset[index]
        image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        size = tuple(image.shape[-2:])
        first_size = first_size or size
        if size != first_size:
            sample_id = dataset.ids[index] if hasattr(dataset, "ids") else index
            raise ValueError(f"image {sample_id!r} is {size[0]}x{size[1]} but the first image is "
                             f"{first_size[0]}x{first_size[1]}: embeddings need one image size; pass "
                             "image_size=... to resize every image")
        if mask.min() < 0 or mask.max() > 255:
            raise ValueError(f"mask of sample {index} has values outside 0..255")
        batch.append((image, mask.to(torch.uint8)))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not features:
        raise ValueError("the dataset is empty: nothing to embed")
    return torch.cat(features), torch.cat(masks)


def cache_path(cache_dir: str | os.PathLike, key: dict) -> Path:
    """<cache_dir>/<first 24 hex digits of SHA-256(key as sorted JSON)>.pt"""
    text = json.dumps(key, sort_keys=True)
    return Path(cache_dir) / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.pt"


def cached_embeddings(arch: str, seed: int, dataset, data_key: dict, cache_dir: str | os.PathLike,
                      batch_size: int = 16, device="cpu") -> Embeddings:
    """The features of RandomEncoder(arch, seed) over `dataset`, read from the cache or computed and stored.

    data_key: what identifies the data and its transform (ProbeData.data_key builds it); part of the key.
    A cache file that cannot be read or holds another key is replaced.
    """
    key = {"format": FORMAT, "arch": canonical_arch(arch), "seed": int(seed), "data": data_key}
    path = cache_path(cache_dir, key)
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file (disk full, foreign file): compute it again
            state = None
        if isinstance(state, dict) and state.get("key") == key:
            ids = list(state["ids"])
            return Embeddings(state["features"], state["masks"], ids, key, path, computed=False)
    features, masks = compute_features(RandomEncoder(key["arch"], seed), dataset, batch_size, device)
    ids = [str(i) for i in getattr(dataset, "ids", range(len(features)))]
    state = {"key": key, "features": features, "masks": masks, "ids": ids}
    atomic_write(path, lambda f: torch.save(state, f))
    atomic_write(path.with_suffix(".json"), lambda f: json.dump(key, f, indent=2), binary=False)
    return Embeddings(features, masks, ids, key, path, computed=True)


@dataclass
class ProbeData:
    """A train and a val split in the VOC layout at one fixed size, with an embedding cache.

    root: a VOC-layout root (the shapes set or VOC-2012; None = segkit.paths.data_root()).
    image_size: every image resized to image_size x image_size (None: keep, all must be equal).
    cache_dir: the embedding cache (default <runs>/deep_prior_cache).
    """

    root: str | os.PathLike | None = None
    image_size: int | None = 64
    train_split: str = "train"
    val_split: str = "val"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    cache_dir: str | os.PathLike | None = None
    batch_size: int = 16
    device: str = "cpu"
    _datasets: dict = field(default_factory=dict, repr=False, init=False)

    def __post_init__(self):
        if self.cache_dir is None:
            self.cache_dir = paths.runs_root() / "deep_prior_cache"
        self.cache_dir = Path(self.cache_dir)
        if self.device == "auto":
            self.device = default_device()
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 1):
            raise ValueError(f"image_size must be a positive int or None, got {self.image_size!r}")

    def split_name(self, split: str) -> str:
        return {"train": self.train_split, "val": self.val_split}.get(split, split)

    def dataset(self, split: str) -> VOCSegmentation:
        """The split ("train", "val" or any split name) with probe_transforms (cached per split)."""
        name = self.split_name(split)
        if name not in self._datasets:
            transforms = probe_transforms(self.image_size, self.mean, self.std)
            self._datasets[name] = VOCSegmentation(self.root, name, transforms)
        return self._datasets[name]

    @property
    def num_classes(self) -> int:
        return self.dataset("train").num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset("train").classes)

    def data_key(self, split: str) -> dict:
        """The data part of the cache key (see the module docstring)."""
        dataset = self.dataset(split)
        return {"split": dataset.split, "count": len(dataset), "image_size": self.image_size,
                "mean": list(self.mean), "std": list(self.std), "files": files_fingerprint(dataset)}

    def embeddings(self, arch: str, seed: int = 0, split: str = "train") -> Embeddings:
        """The cached features of RandomEncoder(arch, seed) on `split`."""
        return cached_embeddings(arch, seed, self.dataset(split), self.data_key(split), self.cache_dir,
                                 self.batch_size, self.device)

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, 3, H, W) float32 and masks (N, H, W) int64 of a split (for training whole nets)."""
        dataset = self.dataset(split)
        samples = [dataset[i] for i in range(len(dataset))]
        images = torch.stack([image.as_subclass(torch.Tensor) for image, _ in samples])
        return images, torch.stack([mask.as_subclass(torch.Tensor) for _, mask in samples])


def store_embeddings(out_dir: str | os.PathLike, splits: dict[str, Embeddings]) -> Path:
    """Export embeddings for use elsewhere (numpy, other frameworks); returns out_dir.

    Writes, per split: <split>_features.npy (N, F, h, w) float32, <split>_masks.npy (N, H, W) uint8
    (255 = void), <split>_ids.txt (one id per line, in the same order); and embeddings.json with the arch,
    seed and each split's cache key and shapes. Every file is written atomically, embeddings.json last.
    """
    if not splits:
        raise ValueError("store_embeddings needs at least one split")
    out_dir = Path(out_dir)
    keys = {name: emb.key for name, emb in splits.items()}
    archs = {(k["arch"], k["seed"]) for k in keys.values()}
    if len(archs) != 1:
        raise ValueError(f"store_embeddings: the splits come from different encoders {sorted(archs)}")
    arch, seed = archs.pop()
    description = {"format": FORMAT, "arch": arch, "seed": seed, "splits": {}}
    for name, emb in splits.items():
        atomic_write(out_dir / f"{name}_features.npy", lambda f, e=emb: np.save(f, e.features.numpy()))
        atomic_write(out_dir / f"{name}_masks.npy", lambda f, e=emb: np.save(f, e.masks.numpy()))
        atomic_write(out_dir / f"{name}_ids.txt", lambda f, e=emb: f.write("".join(i + "\n" for i in e.ids)),
                     binary=False)
        description["splits"][name] = {"data": emb.key["data"], "features_shape": list(emb.features.shape),
                                       "masks_shape": list(emb.masks.shape)}
    atomic_write(out_dir / "embeddings.json", lambda f: json.dump(description, f, indent=2), binary=False)
    return out_dir


def load_stored_embeddings(out_dir: str | os.PathLike, split: str) -> Embeddings:
    """Read back one split written by store_embeddings."""
    out_dir = Path(out_dir)
    description_path = out_dir / "embeddings.json"
    if not description_path.is_file():
        raise FileNotFoundError(f"{description_path} not found: not a folder written by store_embeddings")
    description = json.loads(description_path.read_text())
    if split not in description["splits"]:
        raise ValueError(f"{description_path}: no split {split!r}; it has {sorted(description['splits'])}")
    key = {"format": description["format"], "arch": description["arch"], "seed": description["seed"],
           "data": description["splits"][split]["data"]}
    features = torch.from_numpy(np.load(out_dir / f"{split}_features.npy"))
    masks = torch.from_numpy(np.load(out_dir / f"{split}_masks.npy"))
    ids = (out_dir / f"{split}_ids.txt").read_text().splitlines()
    return Embeddings(features, masks, ids, key, out_dir)
