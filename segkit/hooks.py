"""A look inside a network: the outputs of named submodules, caught with forward hooks.

    from segkit.hooks import capture_outputs, module_names

    model = build_model("deeplabv3", backbone="resnet18", output_stride=16).eval()
    module_names(model, depth=2)            # ['backbone', 'backbone.conv1', ..., 'aspp', 'aspp.atrous', ...]
    with capture_outputs(model, ["backbone.layer4", "aspp.atrous.0"]) as outputs:
        logits = model(images)
    outputs["backbone.layer4"]              # (N, 512, H/16, W/16) float, detached copy
    outputs["aspp.atrous.0"]                # (N, 256, H/16, W/16): the ASPP branch with the smallest rate

A *forward hook* is a function PyTorch calls after a module's `forward`, with the module, its inputs and
its output (`module.register_forward_hook`). `capture_outputs` registers one hook per name that stores the
output, and removes every hook when the `with` block ends, also when it ends with an exception. The hooks
return None, so the model computes exactly what it computes without them (bitwise the same logits);
nothing in the model is replaced or wrapped.

Names are those of `model.named_modules()`: attribute names joined by dots, list indices as numbers
("aspp.atrous.0", "downs.1.1", "backbone.layer1.0.conv1"). `module_names` lists them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def module_names(model: nn.Module, depth: int | None = None) -> list[str]:
    """Names of the submodules of `model`, in the order `named_modules()` visits them (parents first).

    depth: only names with at most this many dot-separated parts (depth=1: the direct children,
        depth=2: their children too); None: all. The model itself (name "") is left out.
    """
    if depth is not None and (not isinstance(depth, int) or depth < 1):
        raise ValueError(f"module_names: depth must be an integer >= 1 or None, got {depth!r}")
    names = [name for name, _ in model.named_modules() if name]
    return [name for name in names if depth is None or name.count(".") < depth]


def find_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """name -> submodule for each of `names`; a ValueError for an unknown name, with close matches."""
    modules = dict(model.named_modules())
    found = {}
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else \
                f"its top-level modules are {', '.join(map(repr, module_names(model, depth=1)))}"
            raise ValueError(f"{type(model).__name__} has no submodule named {name!r}; {hint} "
                             "(segkit.hooks.module_names(model) lists every name)")
        found[name] = modules[name]
    return found


def detached_copy(value):
    """A copy of a module output (a tensor, or tuples / lists / dicts of them) cut off from autograd.

    The copy matters: a later in-place operation of the model (`nn.ReLU(inplace=True)` after a
    BatchNorm, `out += identity` in a ResNet block) would otherwise change the stored tensor.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple | list):
        return type(value)(detached_copy(v) for v in value)
    if isinstance(value, dict):
        return {key: detached_copy(v) for key, v in value.items()}
    return value


@contextmanager
def capture_outputs(model: nn.Module, names: str | Iterable[str], keep_grad: bool = False) -> Iterator[dict]:
    """Within the `with` block, record the outputs of the submodules `names` of `model`.

    Yields a dict that fills in as the model runs: name -> the module's output (usually a tensor
    (N, C, h, w) float; a tuple or dict for modules that return one, e.g. "backbone" of DeepLabV3).
    - A module called once gives its output; a module called several times (a ReLU module reused inside a
      ResNet block, or two forward passes in one `with` block) gives a list of its outputs in call order.
    - A module that did not run (e.g. "aux_classifier" in eval mode) has no entry.
    - keep_grad=False (default): detached copies, safe to keep (no graph, not changed by later in-place
      operations). keep_grad=True: the output tensors themselves, still in the autograd graph, so that
      `torch.autograd.grad(loss, outputs[name])` works. The model's later in-place operations then
      change them: a BatchNorm followed by ReLU(inplace=True) gives the ReLU's output (values and
      gradient), so capture the ReLU (or a module whose output is not changed in place) instead.
    Every hook is removed when the block ends, also on an exception. Unknown names raise a ValueError
    naming close matches before any hook is registered.
    """
    if isinstance(names, str):
        names = [names]
    modules = find_modules(model, dict.fromkeys(names))  # dict.fromkeys: drop repeated names, keep order
    outputs: dict = {}
    calls = dict.fromkeys(modules, 0)  # name -> how many times the module has run

    def hook_for(name: str):
        def store(module, inputs, output):
            value = output if keep_grad else detached_copy(output)
            calls[name] += 1
            if calls[name] == 1:
                outputs[name] = value
            elif calls[name] == 2:
                outputs[name] = [outputs[name], value]
            else:
                outputs[name].append(value)

        return store

    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()

