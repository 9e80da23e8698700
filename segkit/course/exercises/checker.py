"""Exercises that check themselves: run a student's function against the reference and say what differs.

An exercise is registered once, by the session module that defines it (segkit/course/exercises/s01.py, ...):

    register(Exercise(
        name="iou_from_confusion",
        description="per-class IoU from a (C, C) confusion matrix",
        reference=iou_from_confusion,
        make_cases=lambda rng: [("a random 3-class matrix", (random_matrix(rng, 3),)), ...],
        hint="IoU_c = TP_c / (TP_c + FP_c + FN_c): row sum + column sum - diagonal",
    ))

In the notebook the student writes the function and calls

    check("iou_from_confusion", my_iou)      # prints a verdict, returns True / False

For every case (a description and the argument tuple) `check` calls the reference and the student's
function, each on its own copy of the arguments and after re-seeding `random`, NumPy and torch with the same
seed (so a function that draws random numbers the same way as the reference draws the same numbers), and
compares the results with the exercise's `compare(got, expected) -> None | message`.
"""

from __future__ import annotations

import copy
import difflib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

CASE_SEED = 1234
"""random / NumPy / torch are seeded with CASE_SEED + case number before each call."""

MAX_SHOWN_CHARS = 160


def _as_array(value) -> np.ndarray | None:
    """A NumPy view of a tensor, array or number; None for anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | np.generic | bool | int | float):
        return np.asarray(value)
    return None


def short_repr(value) -> str:
    """A one-line description of a value for a message: small arrays in full, large ones by shape."""
    array = _as_array(value)
    if array is not None and array.size > 12:
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        return f"{kind} of shape {tuple(array.shape)}, dtype {array.dtype}"
    if array is not None and array.ndim > 0:
        text = np.array2string(array, precision=4, separator=", ").replace("\n", "")
    elif array is not None:
        text = repr(array.item())
    else:
        text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def allclose(got, expected, rtol: float = 1e-4, atol: float = 1e-5) -> str | None:
    """None when `got` agrees with `expected`, else a message saying what differs.

    Numbers, NumPy arrays and tensors agree when they have the same shape and
    |got - expected| <= atol + rtol * |expected| everywhere (NaN agrees with NaN; dtypes may differ).
    Tuples and lists agree item by item, dicts key by key; anything else must be ==.
    """
    expected_array = _as_array(expected)
    if expected_array is not None:
        got_array = _as_array(got)
        if got_array is None:
            return f"expected a number or an array/tensor, got {type(got).__name__}: {short_repr(got)}"
        if got_array.shape != expected_array.shape:
            return (
                f"expected shape {tuple(expected_array.shape)}, got shape {tuple(got_array.shape)}"
                f" (expected {short_repr(expected)}, got {short_repr(got)})"
            )
        if expected_array.dtype == bool or got_array.dtype == bool:
            expected_array, got_array = expected_array.astype(np.int64), got_array.astype(np.int64)
        try:
            agree = np.isclose(got_array, expected_array, rtol=rtol, atol=atol, equal_nan=True)
        except TypeError:
            return f"expected numbers, got values of dtype {got_array.dtype}: {short_repr(got)}"
        if agree.all():
            return None
        if expected_array.ndim == 0:
            return f"expected {short_repr(expected)}, got {short_repr(got)}"
        wrong = np.argwhere(~agree)
        first = tuple(int(i) for i in wrong[0])
        return (
            f"{len(wrong)} of {agree.size} values differ; first at index {first}: "
            f"expected {expected_array[first].item()!r}, got {got_array[first].item()!r}"
        )
    if isinstance(expected, tuple | list):
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            return f"expected a {type(expected).__name__} of {len(expected)} items, got {short_repr(got)}"
        for i, (got_item, expected_item) in enumerate(zip(got, expected, strict=True)):
            message = allclose(got_item, expected_item, rtol=rtol, atol=atol)
            if message is not None:
                return f"item {i}: {message}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            return f"expected a dict with keys {sorted(expected)}, got {keys}"
        for key in expected:
            message = allclose(got[key], expected[key], rtol=rtol, atol=atol)
            if message is not None:
                return f"key {key!r}: {message}"
        return None
    return None if got == expected else f"expected {short_repr(expected)}, got {short_repr(got)}"


@dataclass
class Exercise:
    """One exercise: the reference solution and the inputs to try it on.

    name: what the student passes to `check` (e.g. "iou_from_confusion").
    description: one line saying what the function computes.
    reference: the correct function.
    make_cases: `make_cases(rng: np.random.Generator) -> list[(case_description, args_tuple)]`: random cases
        and edge cases (an absent class, all pixels void, a batch of one, ...). The description appears in
        the verdict, so write it for the student ("an absent class").
    hint: shown when the student's answer is wrong.
    compare: `compare(got, expected) -> None` when they agree, else a message (default: `allclose`).
    """

    name: str
    description: str
    reference: Callable
    make_cases: Callable[[np.random.Generator], list[tuple[str, tuple]]]
    hint: str
    compare: Callable[[Any, Any], str | None] = allclose


EXERCISES: dict[str, Exercise] = {}
"""All registered exercises by name (filled when segkit.course.exercises imports the session modules)."""


def register(exercise: Exercise) -> Exercise:
    """Add `exercise` to EXERCISES. A second exercise with the same name is an error (re-importing the same
    module, e.g. with importlib.reload, just replaces it)."""
    old = EXERCISES.get(exercise.name)
    if old is not None:
        same_source = (old.reference.__module__, old.reference.__qualname__) == (
            exercise.reference.__module__,
            exercise.reference.__qualname__,
        )
        if not same_source:
            raise ValueError(
                f"exercise name {exercise.name!r} is already registered by {old.reference.__module__}; "
                "choose another name"
            )
    EXERCISES[exercise.name] = exercise
    return exercise


def get_exercise(name: str) -> Exercise:
    """The registered exercise `name`; ValueError listing the known names (and a close match) otherwise."""
    if name in EXERCISES:
        return EXERCISES[name]
    close = difflib.get_close_matches(name, EXERCISES, n=1)
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    known = ", ".join(sorted(EXERCISES)) or "none"
    raise ValueError(f"unknown exercise {name!r}.{suggestion} Known exercises: {known}")


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _call(fn: Callable, args: tuple, seed: int):
    _seed(seed)
    return fn(*copy.deepcopy(args))


def check(name: str, fn: Callable, seed: int = 0) -> bool:
    """Run the student's `fn` against the reference of exercise `name` on all its cases.

    Prints one verdict line (with a hint when something is wrong) and returns True when every case agrees.
    A wrong answer, an exception raised by `fn`, or an exercise not written yet (`NotImplementedError`) is
    reported, never raised; only an unknown exercise name raises (ValueError).
    seed: seeds the generator handed to make_cases (the same seed gives the same cases).
    """
    exercise = get_exercise(name)
    if not callable(fn):
        print(f"❌ {name}: expected a function, got {type(fn).__name__}; pass the function itself, e.g. "
              f"check({name!r}, my_function)")  # fmt: skip
        return False
    cases = exercise.make_cases(np.random.default_rng(seed))
    failures = []
    for number, (description, args) in enumerate(cases, start=1):
        if not isinstance(args, tuple):
            raise TypeError(f"exercise {name!r}: case {number} ({description}) must give its arguments as a "
                            f"tuple, got {type(args).__name__}")  # fmt: skip
        expected = _call(exercise.reference, args, CASE_SEED + number)
        try:
            got = _call(fn, args, CASE_SEED + number)
        except NotImplementedError:
            print(f"✏️  {name}: not written yet — write the function, run its cell, then run this check again")
            return False
        except Exception as error:  # the student's bug: report it, do not raise
            failures.append((number, description, f"your function raised {type(error).__name__}: {error}"))
            continue
        message = exercise.compare(got, expected)
        if message is not None:
            failures.append((number, description, message))
    if not failures:
        print(f"✅ {name}: {len(cases)}/{len(cases)} cases agree")
        return True
    number, description, message = failures[0]
    agreed = len(cases) - len(failures)
    print(f"❌ {name}: {agreed}/{len(cases)} cases agree. First failure, case {number} ({description}): "
          f"{message}\n   hint: {exercise.hint}")  # fmt: skip
    return False
