"""Distributed data parallel (DDP) plumbing, driven by the environment variables `torchrun` sets.

`torchrun --nproc_per_node 4 -m segkit train CONFIG` starts 4 processes and gives each of them

    RANK        this process among all processes (0 .. WORLD_SIZE - 1); rank 0 writes files
    WORLD_SIZE  the number of processes
    LOCAL_RANK  this process among those of its machine: the GPU it uses
    MASTER_ADDR, MASTER_PORT  where the processes meet to start talking

Each process trains a copy of the model on its own share of every batch; `DistributedDataParallel`
averages the gradients across processes during `backward()`, so all copies stay identical. The backend is
NCCL between GPUs and Gloo on CPU. Without these variables (a plain `python` run) everything here is a
no-op and the world has one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: `rank` of `world_size` processes, GPU `local_rank` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes checkpoints, logs and configs."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        message = f"environment variable {name}={value!r} must be an integer (torchrun sets it)"
        raise ValueError(message) from None


def dist_info_from_env() -> DistInfo:
    """Read RANK, WORLD_SIZE and LOCAL_RANK (defaults 0, 1, 0 when not launched by torchrun)."""
    info = DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if not 0 <= info.rank < info.world_size:
        raise ValueError(f"RANK={info.rank} must be in [0, WORLD_SIZE={info.world_size})")
    return info


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (idempotent); returns this process's `DistInfo`.

    `device_type` "cuda" uses the NCCL backend and pins this process to GPU LOCAL_RANK; anything else uses
    Gloo. The rendezvous reads MASTER_ADDR and MASTER_PORT from the environment (`init_method="env://"`).
    """
    info = dist_info_from_env()
    if not info.is_distributed:
        return info
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise RuntimeError(f"WORLD_SIZE={info.world_size} but {name} is not set: launch with torchrun")
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", init_method="env://")
    return info


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all processes in place (a no-op without DDP); returns it."""
    if is_active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj) -> list:
    """`[obj of rank 0, obj of rank 1, ...]` on every rank (`[obj]` without DDP)."""
    if not is_active():
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj):
    """Rank 0's `obj`, on every rank."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running mean and variance, ...) into `module` on every rank."""
    if is_active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    """Wait until every process reaches this line (a no-op without DDP)."""
    if is_active():
        dist.barrier()
