"""Registries: a table from names to constructors, with one lookup, one "did you mean" and one options check.

    MODELS = Registry("model", {"unet": "segkit.models.unet:UNet", ...})
    MODELS.check_name("unte")            # RegistryError: unknown model 'unte' (did you mean 'unet'?); ...
    MODELS.check_options("unet", {"depht": 3})   # RegistryError: model 'unet' has no option 'depht' ...
    model = MODELS.build("unet", num_classes=21, depth=3)

Models, losses, optimizers and schedules each keep one Registry (segkit.models.MODELS, segkit.losses.LOSSES,
segkit.optim.OPTIMIZERS, segkit.optim.SCHEDULERS); every unknown name or option in any of them is reported
by this module, as a RegistryError, in the same words.

An entry is a constructor or a "module:attribute" string. A string is imported the first time the entry is
used, so that looking up names (checking a config, `segkit --help`) never imports torch or the libraries
behind a model. Add your own entry with `MODELS.register("my_net", MyNet)`.

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping


class RegistryError(ValueError):
    """An unknown name or option of a registry, or an option of the wrong type; the message names it and
    says what exists or what was expected. `option` (the option's name) and `detail` ('expected ..., got
    ...') are set for an option of the wrong type (RegistryTypeError)."""

    def __init__(self, message: str, option: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.option = option
        self.detail = detail


class RegistryTypeError(RegistryError, TypeError):
    """An option whose value does not match the constructor's annotation (a TypeError and a ValueError)."""


# Annotations whose values are checked before the constructor runs: what they accept, in words.
SIMPLE_TYPES = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "bool (true or false)"),
    "str": (lambda v: isinstance(v, str), "a string"),
}


def type_problem(annotation, value) -> str | None:
    """What is wrong with `value` for a parameter annotated `annotation`, or None.

    Understood: int, float (an int is a number too), bool, str, each optionally `| None`, and
    tuple[X, Y, ...] of those (a list or a tuple of that length). Other annotations are not checked here
    (the constructor checks its values itself). Annotations may be strings (`from __future__ import
    annotations`) or types.
    """
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = [part.strip() for part in text.split("|")]
    nullable = "None" in parts
    parts = [part for part in parts if part != "None"]
    if len(parts) != 1 or (value is None and nullable):
        return None
    part = parts[0]
    if part in SIMPLE_TYPES:
        accepts, words = SIMPLE_TYPES[part]
        ok = accepts(value)
    elif part.startswith("tuple[") and part.endswith("]"):
        items = [item.strip() for item in part[len("tuple["):-1].split(",")]
        if not all(item in SIMPLE_TYPES for item in items):
            return None
        words = f"a list of {len(items)} ({', '.join(SIMPLE_TYPES[item][1] for item in items)})"
        ok = isinstance(value, list | tuple) and len(value) == len(items) and all(
            SIMPLE_TYPES[item][0](v) for item, v in zip(items, value, strict=True))
    else:
        return None
    if ok:
        return None
    return f"expected {words}{' or null' if nullable else ''}, got {value!r} ({type(value).__name__})"


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `candidates` (difflib ratio >= 0.6), else ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_attribute(target: str):
    """The object named by "package.module:attribute" (imported now)."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class Registry:
    """Names -> constructors of one kind of part ("model", "loss", "optimizer", "schedule").

    entries: {name: constructor or "module:attribute"}; strings are imported on first use.
    plural: the kind in the plural, for messages (default kind + "s").
    """

    def __init__(self, kind: str, entries: Mapping[str, Callable | str], plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, Callable | str] = dict(entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def register(self, name: str, constructor: Callable | str) -> None:
        """Add (or replace) the entry `name`."""
        self._entries[name] = constructor

    def check_name(self, name) -> None:
        """RegistryError unless `name` is registered: 'unknown model 'unte' (did you mean 'unet'?); known
        models: ...'."""
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
                                f"known {self.plural}: {', '.join(self.names())}")

    def get(self, name: str) -> Callable:
        """The constructor registered as `name` (imported now when the entry is a string)."""
        self.check_name(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = load_attribute(entry)
        return entry

    def options(self, name: str, skip: Iterable[str] = ()) -> list[str]:
        """The keyword options the constructor of `name` takes, in signature order, without `skip`."""
        parameters = inspect.signature(self.get(name)).parameters.values()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in parameters if p.kind in kinds and p.name not in set(skip) | {"self"}]

    def takes_any_option(self, name: str) -> bool:
        """Whether the constructor of `name` has **kwargs (it then checks its extra options itself)."""
        parameters = inspect.signature(self.get(name)).parameters.values()
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)

    def check_options(self, name: str, options: Mapping, skip: Iterable[str] = (),
                      also: Iterable[str] = ()) -> None:
        """RegistryError for the first option of `options` that the constructor of `name` does not take, or
        whose value does not match its annotation (see `type_problem`).

        skip: parameters the caller fills itself (num_classes, optimizer, ...): never options.
        also: options accepted besides the constructor's own (e.g. the optimizer's parameter-group options).
        A constructor with **kwargs accepts anything beyond its named options (it checks them itself).
        """
        accepted = self.options(name, skip) + list(also)
        parameters = inspect.signature(self.get(name)).parameters
        for key, value in options.items():
            if key in parameters and key not in also:
                problem = type_problem(parameters[key].annotation, value)
                if problem is not None:
                    message = f"argument {key!r} should be {problem.removeprefix('expected ')}"
                    raise RegistryTypeError(message, key, problem)
        if self.takes_any_option(name):
            return
        for key in options:
            if key not in accepted:
                raise RegistryError(f"{self.kind} {name!r} has no option {key!r}"
                                    f"{did_you_mean(key, accepted)}; its options: "
                                    f"{', '.join(accepted) or '(none)'}")

    def build(self, name: str, *args, skip: Iterable[str] = (), **options):
        """constructor(*args, **options), after checking the options that are not in `skip` (those the
        caller fills itself, such as num_classes)."""
        skip = tuple(skip)
        self.check_options(name, {k: v for k, v in options.items() if k not in skip}, skip)
        return self.get(name)(*args, **options)
