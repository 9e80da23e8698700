"""Search spaces over EncDec architectures (segkit.models.encdec), with EncDecMeta's sampling rules.

A search space is an EncDec configuration in which values may be left open:

    Python                   YAML                          meaning
    ["H", "V", "C", "O"]     [H, V, C, O]                  choose one item (categorical)
    range(1, 8)              {range: [1, 8]}               choose an integer, like Python's range: 1..7
    range(8, 65, 8)          {range: [8, 65, 8]}           with a step: 8, 16, ..., 64
    (0.0, 0.3)               {uniform: [0.0, 0.3]}         a float drawn uniformly from [low, high]

YAML has no range or tuple, hence the one-key mappings. Blocks and layers are structure, not choices: a part
(D_blocks, B_blocks, U_blocks) is a list of blocks, a block a list of layers, a layer a pair (op, dilation)
and only the op and the dilation inside a layer may be open. Example (the U-Net shape of EncDecMeta's
``unet_searched`` configuration, 11 searched layers):

    layer = (["H", "V", "C", "O"], range(1, 8))
    space = {"D_blocks": [[layer], [layer], [layer], [layer], []], "B_blocks": [[layer]],
             "U_blocks": [[layer], [layer], [layer], [layer], [layer, layer]], "base_channels": 16}

    validate_space(space, input_sizes={"data.crop_size": 256})  # ConfigError listing every problem
    options = sample(space, seed)         # a fixed configuration: build_model("encdec", **options)
    options = suggest(space, trial)       # the same, with the choices made by an Optuna trial
    search_space_size(space)              # 22**11: (3 ops x 7 dilations + "O") per layer

`sample` and `suggest` walk the space in one shared traversal; the Optuna parameter names are the key paths
("D_blocks.0.0.op", "D_blocks.0.0.dilation", "base_channels"). An "O" layer (1x1) ignores its dilation: it
gets dilation 1 and no dilation parameter, so two samples that differ only there are the same network.
Layers come out as lists ``[op, dilation]`` and all values as plain Python types, ready for YAML.

Validation names the key path of every problem: unequal numbers of down and up blocks, no or an empty
bottleneck block, unknown ops, dilations < 1, input sizes not divisible by 2^depth, empty/reversed/
non-integer ranges, tuples that are not (low <= high) numbers, empty or repeating choice lists. (EncDecMeta's
validator meant to check tuples but never reached that code; the check here runs, and is tested.)
"""

from __future__ import annotations

import difflib
import math
import random
from dataclasses import dataclass

from segkit.config import ConfigError
from segkit.models.encdec import BLOCK_KEYS, OPS, architecture_problems

SPACE_KEYS = (*BLOCK_KEYS, "base_channels", "dropout")  # the options of EncDec besides num_classes
SCALARS = (str, int, float, bool, type(None))


# ------------------------------------------------------------------------------------------ dimensions


@dataclass(frozen=True)
class Choice:
    """One of `options` (a list in the space), each equally likely."""

    options: tuple

    def count(self) -> int:
        return len(self.options)

    def values(self):
        return self.options

    def sample(self, rng: random.Random):
        return rng.choice(self.options)

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, list(self.options))


@dataclass(frozen=True)
class IntRange:
    """An integer of `range(start, stop, step)`, each equally likely."""

    start: int
    stop: int
    step: int = 1

    def count(self) -> int:
        return len(self.values())

    def values(self) -> range:
        return range(self.start, self.stop, self.step)

    def sample(self, rng: random.Random) -> int:
        return rng.choice(self.values())

    def suggest(self, trial, name: str) -> int:
        values = self.values()
        return trial.suggest_int(name, values[0], values[-1], step=self.step)


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high]: a continuous dimension, not counted by search_space_size."""

    low: float
    high: float

    def count(self) -> None:
        return None

    def values(self) -> tuple:
        return (self.low, self.high)  # the bounds, for checks

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_dimension(path: str, spec, problems: list[str]):
    """The dimension a value spec opens (Choice, IntRange, Uniform), or None for a fixed value.

    A problem with the spec is appended to `problems` (as 'path: ...') and None returned.
    """
    if isinstance(spec, list):
        if not spec:
            problems.append(f"{path}: an empty choice list; give at least one value")
        elif not all(isinstance(item, SCALARS) for item in spec):
            problems.append(f"{path}: choice lists hold plain values (strings, numbers), got {spec!r}")
        elif len(set(spec)) != len(spec):
            repeated = sorted({repr(v) for v in spec if spec.count(v) > 1})
            problems.append(f"{path}: the choices repeat {', '.join(repeated)} (give each value once), "
                            f"got {spec!r}")
        else:
            return Choice(tuple(spec))
        return None
    if isinstance(spec, range):
        return _int_range(path, spec.start, spec.stop, spec.step, problems)
    if isinstance(spec, tuple):
        return _uniform(path, spec, problems)
    if isinstance(spec, dict):
        if len(spec) == 1 and "range" in spec:
            bounds = spec["range"]
            if not (isinstance(bounds, list | tuple) and len(bounds) in (2, 3) and all(map(_is_int, bounds))):
                problems.append(f"{path}: expected {{range: [start, stop]}} or {{range: [start, stop, step]}}"
                                f" with integers, got {spec!r}")
                return None
            step = bounds[2] if len(bounds) == 3 else 1
            return _int_range(path, bounds[0], bounds[1], step, problems)
        if len(spec) == 1 and "uniform" in spec:
            bounds = spec["uniform"]
            return _uniform(path, tuple(bounds) if isinstance(bounds, list) else bounds, problems)
        problems.append(f"{path}: expected a value, a list of choices, {{range: [start, stop]}} or "
                        f"{{uniform: [low, high]}}, got {spec!r}")
        return None
    return None


def _int_range(path: str, start, stop, step, problems: list[str]):
    if step <= 0:
        problems.append(f"{path}: a range must count upwards (step > 0), got range({start}, {stop}, {step})")
    elif start >= stop:
        problems.append(f"{path}: range({start}, {stop}) is empty (it stops before {stop}; need start < "
                        "stop)")
    else:
        return IntRange(start, stop, step)
    return None


def _uniform(path: str, bounds, problems: list[str]):
    if not isinstance(bounds, tuple) or len(bounds) != 2 or not all(map(_is_number, bounds)):
        problems.append(f"{path}: expected a (low, high) pair of numbers for a uniform draw, got {bounds!r}")
    elif bounds[0] > bounds[1]:
        problems.append(f"{path}: uniform bounds must have low <= high, got {bounds!r}")
    else:
        return Uniform(float(bounds[0]), float(bounds[1]))
    return None


def candidates(spec) -> tuple:
    """The values a valid spec can take (the bounds of a uniform one)."""
    dimension = parse_dimension("", spec, [])
    return (spec,) if dimension is None else tuple(dimension.values())


# ------------------------------------------------------------------------------------------ validation


def _op_problem(value) -> str | None:
    return None if value in OPS else f"unknown op {value!r}; ops are {', '.join(OPS)}"


def _dilation_problem(value) -> str | None:
    return None if _is_int(value) and value >= 1 else f"a dilation must be an integer >= 1, got {value!r}"


def _channels_problem(value) -> str | None:
    return None if _is_int(value) and value >= 1 else f"base_channels must be an integer >= 1, got {value!r}"


def _dropout_problem(value) -> str | None:
    ok = _is_number(value) and 0 <= value < 1
    return None if ok else f"dropout must be a number in [0, 1), got {value!r}"


def value_problems(path: str, spec, check=None) -> list[str]:
    """Problems of one value spec; `check(value) -> message or None` is applied to every candidate."""
    problems = []
    dimension = parse_dimension(path, spec, problems)
    if problems or check is None:
        return problems
    values = (spec,) if dimension is None else dimension.values()
    if isinstance(dimension, IntRange):
        values = (values[0], values[-1])  # a range is checked by its ends
    messages = dict.fromkeys(m for m in map(check, values) if m is not None)
    return [f"{path}: {message}" for message in messages]


def _layer_problems(path: str, layer) -> list[str]:
    if not isinstance(layer, list | tuple) or len(layer) != 2:
        return [f"{path}: expected a layer (op, dilation), e.g. ('C', 1) or (['H', 'V'], range(1, 4)), "
                f"got {layer!r}"]
    return (value_problems(f"{path}.op", layer[0], _op_problem)
            + value_problems(f"{path}.dilation", layer[1], _dilation_problem))


def space_problems(space) -> list[str]:
    """Every problem of an EncDec search space, as 'key.path: what is wrong' (see validate_space)."""
    if not isinstance(space, dict):
        return [f"expected a mapping of EncDec options ({', '.join(SPACE_KEYS)}), got {space!r}"]
    problems = []
    for key in space:
        if key not in SPACE_KEYS:
            close = difflib.get_close_matches(str(key), SPACE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{key}: unknown option{hint}; the options are {', '.join(SPACE_KEYS)}")
    shapes = {}  # part -> blocks with every layer replaced by ("C", 1): what the structure checks need
    for key in BLOCK_KEYS:
        blocks = space.get(key)
        if blocks is None:
            problems.append(f"{key}: missing; give a list of blocks, each a list of layers (op, dilation)")
        elif not isinstance(blocks, list | tuple) or not all(isinstance(b, list | tuple) for b in blocks):
            problems.append(f"{key}: expected a list of blocks, each a list of layers (blocks are structure, "
                            f"not choices), got {blocks!r}")
        else:
            for i, block in enumerate(blocks):
                for j, layer in enumerate(block):
                    problems += _layer_problems(f"{key}.{i}.{j}", layer)
            shapes[key] = [[("C", 1)] * len(block) for block in blocks]
    if len(shapes) == len(BLOCK_KEYS):  # the model's own rules on numbers of blocks and layers
        problems += architecture_problems(shapes["D_blocks"], shapes["B_blocks"], shapes["U_blocks"])
    problems += value_problems("base_channels", space.get("base_channels", 16), _channels_problem)
    problems += value_problems("dropout", space.get("dropout", 0.0), _dropout_problem)
    return problems


def size_problems(space: dict, input_sizes: dict) -> list[str]:
    """Input sizes ({where: pixels}) that 2^len(D_blocks) does not divide, as 'where: ...' problems."""
    depth = len(space["D_blocks"])
    return [f"{where}: {size} is not divisible by 2^{depth} = {2**depth} ({depth} downsampling blocks each "
            "halve the size)" for where, size in input_sizes.items() if size % 2**depth]


def validate_space(space, input_sizes: dict | None = None, source: str = "search space",
                   prefix: str = "") -> None:
    """Raise ConfigError listing every problem of `space`, each with its key path (after `prefix`).

    input_sizes: {where: size in pixels}, e.g. {"data.crop_size": 256}: each must be divisible by
    2^len(D_blocks) so that the network needs no padding.
    """
    problems = [prefix + problem for problem in space_problems(space)]
    if not problems and input_sizes:
        problems = size_problems(space, input_sizes)
    if problems:
        raise ConfigError(source, problems)


# ------------------------------------------------------------------------------ sampling, one traversal


def _resolve_value(name: str, spec, pick):
    dimension = parse_dimension(name, spec, [])
    return spec if dimension is None else pick(name, dimension)


def _resolve(space: dict, pick) -> dict:
    """The fixed configuration of `space`, each open value decided by `pick(name, dimension)`, in order."""
    resolved = {}
    for key, spec in space.items():
        if key not in BLOCK_KEYS:
            resolved[key] = _resolve_value(key, spec, pick)
            continue
        blocks = []
        for i, block in enumerate(spec):
            layers = []
            for j, (op_spec, dilation_spec) in enumerate(block):
                op = _resolve_value(f"{key}.{i}.{j}.op", op_spec, pick)
                dilation = 1 if op == "O" else _resolve_value(f"{key}.{i}.{j}.dilation", dilation_spec, pick)
                layers.append([op, dilation])
            blocks.append(layers)
        resolved[key] = blocks
    return resolved


def sample(space: dict, rng: random.Random | int) -> dict:
    """A fixed EncDec configuration drawn from `space` (validated first) with `rng` or a seed.

    The same seed gives the same configuration. Choices and ranges: each value equally likely; a uniform
    tuple: random.uniform(low, high).
    """
    validate_space(space)
    return sample_values(space, rng)


def suggest(space: dict, trial) -> dict:
    """A fixed EncDec configuration chosen by an Optuna trial (trial.suggest_categorical / suggest_int /
    suggest_float), with the key paths as parameter names. ``optuna.trial.FixedTrial(params)`` rebuilds
    the configuration of a finished trial from its ``params``."""
    validate_space(space)
    return suggest_values(space, trial)


def sample_values(specs: dict, rng: random.Random | int) -> dict:
    """Like `sample` for any mapping of name -> value spec (no EncDec checks): {"optimizer.lr": [...]}."""
    rng = random.Random(rng) if _is_int(rng) else rng
    return _resolve(specs, lambda name, dimension: dimension.sample(rng))


def suggest_values(specs: dict, trial) -> dict:
    """Like `suggest` for any mapping of name -> value spec (no EncDec checks)."""
    return _resolve(specs, lambda name, dimension: dimension.suggest(trial, name))


# ------------------------------------------------------------------------------------------------ size


def search_space_size(space: dict) -> int:
    """Number of distinct discrete configurations of `space` (continuous dimensions are not counted; see
    continuous_parameters).

    A layer with op choices `ops` and d dilation choices counts sum over ops of (1 if op is "O" else d):
    (["H", "V", "C", "O"], range(1, 8)) gives 3·7 + 1 = 22. Other open values count their choices; the
    total is the product over all of them.
    """
    total = 1
    for key, spec in space.items():
        if key not in BLOCK_KEYS:
            dimension = parse_dimension(key, spec, [])
            if dimension is not None and dimension.count() is not None:
                total *= dimension.count()
            continue
        for block in spec:
            for op_spec, dilation_spec in block:
                dilations = len(candidates(dilation_spec))
                total *= sum(1 if op == "O" else dilations for op in candidates(op_spec))
    return total


def continuous_parameters(space: dict) -> list[str]:
    """Names (key paths) of the uniform (continuous) dimensions of `space`."""
    found = []
    _resolve(space, lambda name, dimension: found.append(name) if isinstance(dimension, Uniform) else None)
    return found
