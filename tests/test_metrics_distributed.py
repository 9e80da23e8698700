"""ConfusionMatrix.all_reduce in a real 2-process gloo group (CPU, a few small tensors)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from segkit.metrics import ConfusionMatrix

WORLD_SIZE = 2
NUM_CLASSES = 5


def shard(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of the evaluation data that process `rank` sees (different on each rank)."""
    g = torch.Generator().manual_seed(100 + rank)
    target = torch.randint(0, NUM_CLASSES, (2, 8, 8), generator=g)
    target[torch.rand(2, 8, 8, generator=g) < 0.2] = 255
    pred = torch.randint(0, NUM_CLASSES, (2, 8, 8), generator=g)
    return pred, target


def worker(rank: int, init_file: str, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        cm = ConfusionMatrix(NUM_CLASSES)
        cm.update(*shard(rank))
        cm.all_reduce()
        torch.save(cm.matrix, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_the_matrices_of_all_ranks(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    single = ConfusionMatrix(NUM_CLASSES)
    for rank in range(WORLD_SIZE):
        single.update(*shard(rank))
    for rank in range(WORLD_SIZE):
        reduced = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(reduced, single.matrix), f"rank {rank}"
