"""Package attributes that are imported the first time they are used (PEP 562 module `__getattr__`).

    # in segkit/models/__init__.py
    __getattr__, __dir__ = lazy_exports(__name__, {"UNet": ".unet", "DeepLabV3": ".deeplabv3"})

`from segkit.models import UNet` then imports segkit/models/unet.py at that moment, and `import segkit.models`
alone imports neither it nor torch. The packages whose modules need heavy libraries (torch, torchvision, smp,
scipy) export their names this way, so that a command's help, a config check or the competition scorer
starts without loading what it does not use. Each package lists its names in one dict, in its __init__.
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """(__getattr__, __dir__) for `package`, whose attribute `name` is `name` of module `exports[name]`
    (relative to the package, e.g. ".unet"). A loaded attribute is stored in the package, so it is looked
    up once."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
