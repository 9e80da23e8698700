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
compares the results with the exercise's `compare(got, expected) -> None | message`. Where the reference
raises (a bad input the function must refuse), the student's function must raise the same kind of error.
An exercise may also check the function as a whole (`whole_check`), for what no single case shows: that a
random crop is random.

`run_checks` does the same without printing and returns a Verdict: the grader (segkit grade) uses it with a
seed that the notebooks do not contain, so the cases it draws differ from the ones a student has seen.
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
    whole_check: `whole_check(fn) -> None | message`, run after the cases with the student's function
        itself (it may call it many times, after seeding with `seed_all`); None = no such check.
    """

    name: str
    description: str
    reference: Callable
    make_cases: Callable[[np.random.Generator], list[tuple[str, tuple]]]
    hint: str
    compare: Callable[[Any, Any], str | None] = allclose
    whole_check: Callable[[Callable], str | None] | None = None


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


def seed_all(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch with `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _call(fn: Callable, args: tuple, seed: int):
    seed_all(seed)
    return fn(*copy.deepcopy(args))


@dataclass
class Verdict:
    """The outcome of checking one function against one exercise.

    status: "passed", "wrong" (a case disagrees, or the function raised), "not written"
        (NotImplementedError: the student copy's stub) or "not a function".
    agreed / total: cases that agree / cases tried (the whole-function check counts as one more case).
    message: the line `check` prints (with the hint when something is wrong).
    """

    name: str
    status: str
    agreed: int
    total: int
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _expected_outcome(exercise: Exercise, args: tuple, seed: int) -> tuple[Any, BaseException | None]:
    """(the reference's result, None), or (None, the error it raised: the case is a bad input)."""
    try:
        return _call(exercise.reference, args, seed), None
    except Exception as error:
        return None, error


def _compare_case(exercise: Exercise, fn: Callable, args: tuple, seed: int) -> str | None:
    """None when `fn` agrees with the reference on one case, else what differs. NotImplementedError from
    `fn` propagates (the exercise is not written yet)."""
    expected, expected_error = _expected_outcome(exercise, args, seed)
    try:
        got = _call(fn, args, seed)
    except NotImplementedError:
        raise
    except Exception as error:  # the student's bug (or the right refusal of a bad input)
        if expected_error is not None and isinstance(error, type(expected_error)):
            return None
        wanted = f", expected {type(expected_error).__name__}" if expected_error is not None else ""
        return f"your function raised {type(error).__name__}: {error}{wanted}"
    if expected_error is not None:
        return (
            f"this input must be refused with {type(expected_error).__name__} ({expected_error}), but your "
            f"function returned {short_repr(got)}"
        )
    return exercise.compare(got, expected)


def case_seed(seed: int, number: int) -> int:
    """The seed of random / NumPy / torch before case `number` (from 1) of a check with `seed`."""
    return CASE_SEED + 1000 * seed + number


def run_checks(name: str, fn: Callable, seed: int = 0) -> Verdict:
    """Check `fn` against exercise `name` on all its cases (drawn with `seed`) and return the Verdict.

    Nothing is printed or raised except for an unknown exercise name (ValueError).
    """
    exercise = get_exercise(name)
    if not callable(fn):
        message = (f"❌ {name}: expected a function, got {type(fn).__name__}; pass the function itself, "
                   f"e.g. check({name!r}, my_function)")  # fmt: skip
        return Verdict(name, "not a function", 0, 0, message)
    cases = exercise.make_cases(np.random.default_rng(seed))
    failures = []
    for number, (description, args) in enumerate(cases, start=1):
        if not isinstance(args, tuple):
            raise TypeError(f"exercise {name!r}: case {number} ({description}) must give its arguments as a "
                            f"tuple, got {type(args).__name__}")  # fmt: skip
        try:
            message = _compare_case(exercise, fn, args, case_seed(seed, number))
        except NotImplementedError:
            message = f"✏️  {name}: not written yet — write the function, run its cell, then run this check again"  # noqa: E501
            return Verdict(name, "not written", 0, len(cases), message)
        if message is not None:
            failures.append((number, description, message))
    total = len(cases)
    if exercise.whole_check is not None:
        total += 1
        try:
            message = exercise.whole_check(fn)
        except NotImplementedError:
            message = "your function raised NotImplementedError"
        except Exception as error:
            message = f"your function raised {type(error).__name__}: {error}"
        if message is not None:
            failures.append((total, "the function as a whole", message))
    if not failures:
        return Verdict(name, "passed", total, total, f"✅ {name}: {total}/{total} cases agree")
    number, description, message = failures[0]
    also = "; ".join(f"case {n} ({d})" for n, d, _ in failures[1:4])
    also += "; ..." if len(failures) > 4 else ""
    text = (f"❌ {name}: {total - len(failures)}/{total} cases agree. First failure, case {number} "
            f"({description}): {message}" + (f"\n   also wrong: {also}" if also else "")
            + f"\n   hint: {exercise.hint}")  # fmt: skip
    return Verdict(name, "wrong", total - len(failures), total, text)


def check(name: str, fn: Callable, seed: int = 0) -> bool:
    """Run the student's `fn` against the reference of exercise `name` on all its cases.

    Prints one verdict (with a hint when something is wrong) and returns True when every case agrees.
    A wrong answer, an exception raised by `fn`, or an exercise not written yet (`NotImplementedError`) is
    reported, never raised; only an unknown exercise name raises (ValueError).
    seed: seeds the generator handed to make_cases (the same seed gives the same cases).
    """
    verdict = run_checks(name, fn, seed)
    print(verdict.message)
    return verdict.passed
