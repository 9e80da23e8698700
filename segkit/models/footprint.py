"""How much memory training a model takes, estimated before anything is allocated.

    footprint = training_footprint(lambda: build_model("unet", 21), (8, 3, 256, 256), optimizer_slots=1)
    footprint.parameters, footprint.state_bytes, footprint.activation_bytes, footprint.total_bytes

The model is built on PyTorch's "meta" device, where tensors have shapes and dtypes but no storage, so
even a model of 40 GB is built in a moment and takes no memory. Then

    parameters P          exact: the sum of the parameters' sizes
    state_bytes           4 P (2 + slots): float32 weights, their gradients and the optimizer's per-weight
                          state (slots: SGD with momentum 1, Adam and AdamW 2)
    activation_bytes      4 x the sum of the output sizes of every leaf module in one forward pass of a
                          batch of the given shape (meta tensors again): what backward keeps, roughly
    total_bytes           state_bytes + activation_bytes

It is an estimate: in-place ops share memory (overestimate), some layers keep more than their output
(underestimate), and the allocator and the framework add their own. It is meant to tell "fits" from
"several times too big" before a config takes a machine down. When a model cannot run a forward pass on
the meta device, the activations are left out (activation_bytes None).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class Footprint:
    parameters: int
    state_bytes: int
    activation_bytes: int | None

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + (self.activation_bytes or 0)


def training_footprint(build, input_shape: tuple[int, ...], optimizer_slots: int = 1) -> Footprint:
    """The Footprint of training `build()` (a function returning the model) on batches of `input_shape`
    (N, 3, H, W); see the module docstring."""
    with torch.device("meta"):
        model = build()
    parameters = sum(p.numel() for p in model.parameters())
    state_bytes = BYTES_PER_VALUE * parameters * (2 + optimizer_slots)
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        for tensor in output.values() if isinstance(output, dict) else (
                output if isinstance(output, list | tuple) else [output]):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        model.train()
        model(torch.empty(input_shape, device="meta"))
        activation_bytes = BYTES_PER_VALUE * total
    except Exception:  # an op without a meta implementation, a shape the model refuses, ...
        activation_bytes = None
    finally:
        for handle in handles:
            handle.remove()
    return Footprint(parameters, state_bytes, activation_bytes)


def available_memory(device: torch.device) -> int | None:
    """Bytes a training can use on `device`: a GPU's total memory, or the machine's available RAM
    (MemAvailable in /proc/meminfo, else the free physical pages); None when unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None

