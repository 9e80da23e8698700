"""The order in which training samples are seen, made reproducible, resumable and shardable.

Why the Trainer re-creates your DataLoader
------------------------------------------
A run killed at any moment must resume to *bitwise* the same weights as a run that was never interrupted.
That needs three things from the data pipeline, which a stock `DataLoader(shuffle=True)` does not give:

1. The order of epoch `e` is a pure function of `(seed, e)`: `EpochSampler` draws it with its own
   `torch.Generator` seeded with `seed + e` (as `DistributedSampler` does), never from the global RNG.
2. Resuming in the middle of an epoch skips the batches already seen *without loading them*
   (`EpochSampler.skip`), so no augmentation randomness is consumed for them.
3. The random augmentation of a sample does not depend on which worker process loads it nor on what was
   loaded before: `SeededSamples` seeds torch, `random` and numpy with a seed derived from
   `(seed, epoch, index)` just before loading the sample. Results are therefore also the same for any
   `num_workers`. In the main process (`num_workers=0`) torch's generator is put back afterwards, so
   loading data does not change the random numbers of the training step (dropout, ...). Python's and
   numpy's global generators are left as the sample left them: nothing in a training step draws from
   them, and saving and restoring numpy's state would cost more than loading a small sample.

For distributed training every rank takes every `world_size`-th sample of the same permutation. Training
pads the permutation with its first samples so all ranks run the same number of steps (as
`DistributedSampler` does). Evaluation must not pad: a repeated sample would be counted twice in the
confusion matrix, so `ShardSampler` gives rank r the indices r, r + W, r + 2W, ... and nothing more.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, Subset


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for sample `index` in epoch `epoch` (numpy SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class EpochSampler(Sampler):
    """Yields `(index, sample_seed)` pairs: a seeded permutation per epoch, sharded by rank, resumable.

    Args:
        dataset_size: number of samples in the dataset.
        shuffle: permute the samples (seeded by `seed + epoch`) or keep 0, 1, 2, ...
        seed: base seed of the run.
        rank, world_size: this process and the number of processes (1 without DDP).
    Call `set_epoch(epoch)` before each epoch and set `skip` to the number of this rank's samples already
    consumed in that epoch when resuming mid-epoch (the Trainer does both).
    """

    def __init__(self, dataset_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        if dataset_size < 1:
            raise ValueError(f"EpochSampler needs a non-empty dataset, got dataset_size={dataset_size}")
        self.dataset_size = dataset_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0
        self.num_samples = -(-dataset_size // world_size)  # per rank, after padding (ceil division)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> list[int]:
        """This rank's dataset indices for the current epoch, before skipping."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        padded_size = self.num_samples * self.world_size
        while len(order) < padded_size:  # repeat from the start so every rank gets num_samples
            order += order[: padded_size - len(order)]
        return order[self.rank :: self.world_size]

    def __iter__(self):
        for index in self.epoch_indices()[self.skip :]:
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.num_samples - self.skip


class SeededSamples(Dataset):
    """Wraps a map-style dataset: `ds[(index, seed)]` is `dataset[index]` loaded with RNGs seeded by seed."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        in_main_process = torch.utils.data.get_worker_info() is None
        if in_main_process:
            saved = torch.get_rng_state()
        torch.random.default_generator.manual_seed(seed)  # CPU generator only; CUDA RNGs are untouched
        random.seed(seed)
        np.random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            if in_main_process:
                torch.set_rng_state(saved)


class ShardSampler(Sampler):
    """Indices rank, rank + W, rank + 2W, ...: every sample on exactly one rank, no padding (evaluation)."""

    def __init__(self, dataset_size: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, dataset_size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _loader_options(loader: DataLoader, what: str) -> dict:
    """The options of `loader` that the rebuilt loader keeps (batch size, workers, collate, ...)."""
    if isinstance(loader.dataset, torch.utils.data.IterableDataset):
        raise ValueError(f"{what}: the Trainer needs a map-style dataset (with __getitem__), "
                         "not an IterableDataset")
    if loader.batch_size is None:
        raise ValueError(
            f"{what}: the Trainer needs a DataLoader built with batch_size=..., not a custom batch_sampler"
        )
    options = dict(
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
        options["multiprocessing_context"] = loader.multiprocessing_context
    return options


def _base_dataset(loader: DataLoader) -> Dataset:
    dataset = loader.dataset
    return dataset.dataset if isinstance(dataset, SeededSamples) else dataset


def _loader_shuffles(loader: DataLoader, what: str) -> bool:
    sampler = loader.sampler
    if isinstance(sampler, EpochSampler):
        return sampler.shuffle
    if isinstance(sampler, RandomSampler):
        return True
    if isinstance(sampler, SequentialSampler | ShardSampler):
        return False
    raise ValueError(
        f"{what}: the Trainer controls the data order itself (seeded, resumable, sharded) and accepts "
        "DataLoaders made with shuffle=True or shuffle=False, "
        f"not a custom sampler ({type(sampler).__name__})"
    )


def seeded_train_loader(
    loader: DataLoader, seed: int, rank: int = 0, world_size: int = 1, first_samples: int | None = None
) -> DataLoader:
    """`loader` re-created with an `EpochSampler` and `SeededSamples` (see the module docstring).

    `first_samples=n` keeps only the first n samples in a fixed order (the `overfit_batches` debug mode).
    """
    options = _loader_options(loader, "train_loader")
    shuffle = _loader_shuffles(loader, "train_loader")
    dataset = _base_dataset(loader)
    if first_samples is not None:
        dataset = Subset(dataset, range(min(first_samples, len(dataset))))
        shuffle = False
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    # A private generator: creating an iterator draws a seed from it instead of from the global RNG.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(SeededSamples(dataset), sampler=sampler, generator=generator, **options)


def sharded_eval_loader(
    loader: DataLoader, rank: int = 0, world_size: int = 1, first_samples: int | None = None
) -> DataLoader:
    """`loader` re-created in a fixed order with this rank's `ShardSampler` shard (no padding)."""
    options = _loader_options(loader, "val_loader")
    _loader_shuffles(loader, "val_loader")
    dataset = _base_dataset(loader)
    if first_samples is not None:
        dataset = Subset(dataset, range(min(first_samples, len(dataset))))
    sampler = ShardSampler(len(dataset), rank=rank, world_size=world_size)
    options["drop_last"] = False  # evaluation sees every sample
    return DataLoader(dataset, sampler=sampler, generator=torch.Generator().manual_seed(0), **options)


def batch_sample_indices(loader: DataLoader, position: int) -> list[int]:
    """The dataset indices in batch `position` (0-based, of the epoch set on its EpochSampler) of a loader
    made by `seeded_train_loader`."""
    size = loader.batch_size
    return loader.sampler.epoch_indices()[position * size : (position + 1) * size]


def describe_sample(dataset: Dataset, index: int) -> str:
    """Where sample `index` of `dataset` comes from: 'mask file <path>' when a reader below the wrappers
    (SeededSamples, Subset, a cache's `source`) has `mask_path`, else 'sample <index>'."""
    while True:
        if isinstance(dataset, Subset):
            dataset, index = dataset.dataset, dataset.indices[index]
        elif hasattr(dataset, "mask_path") and dataset.mask_path(index) is not None:
            return f"mask file {dataset.mask_path(index)}"
        elif (inner := getattr(dataset, "dataset", None) or getattr(dataset, "source", None)) is not None:
            dataset = inner
        else:
            return f"sample {index}"

