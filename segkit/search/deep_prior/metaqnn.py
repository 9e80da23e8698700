"""A small MetaQNN search over deep priors: tabular Q-learning with an epsilon-greedy walk (as in DP-NAS).

    space = SearchSpace(conv_features=(8, 16), conv_kernels=(1, 3), pools=((2, 2),), max_layers=3)
    learner = QLearner(space, seed=0, schedule=epsilon_schedule(first=10, every=5), replay_size=50)
    evaluate = probe_evaluator(ProbeData(root="data/shapes", image_size=64), epochs=10,
                               early_stop=(3, 0.2))
    rows = run_search(learner, evaluate, nets=30, log_path="runs/dp_search/search.csv")

Baker et al. 2017 ("Designing Neural Network Architectures using Reinforcement Learning", MetaQNN) and DP-NAS:

- State: (depth, last layer), the start state is (0, "start"). Actions: append one of the space's layers
  (C(f,k,1,(k-1)/2,skip) for every feature count f, odd kernel k and skip in conv_skips; P(size,stride)
  for every pool; no pooling right after pooling; at most max_layers layers) or "END" (at least
  min_layers layers). A walk from the start to END is an architecture string.
- Epsilon-greedy walk: with probability epsilon a uniformly random action, otherwise one with the largest Q
  (ties broken at random). Epsilon follows a schedule: a list of (epsilon, number of nets) pairs, e.g.
  DP-NAS's 1.0 for 1500 nets then 0.9, 0.8, ..., 0.1 for 100 nets each (DP_NAS_SCHEDULE); past its end the
  last epsilon stays. Q values start at `initial_q` (DP-NAS: the early-stopping threshold).
- Reward only at the end: r = the net's val mIoU (0 for an infeasible net). Update, last transition first,

      Q(s, a) <- Q(s, a) + lr * (r_t + discount * max_a' Q(s', a') - Q(s, a)),   lr = 0.1, discount = 1,

  with r_t = r and max Q(s', .) = 0 for the transition to END, r_t = 0 for the others.
- Replay: after net i the update runs on net i, then on replay_size - 1 nets drawn uniformly (with
  replacement) from all nets so far (DP-NAS: 50 in all). A net sampled again is not trained again: its
  logged reward is reused (status "repeat").

Randomness: the walk of net i draws from numpy.random.default_rng([seed, i, 0]) and its replay from
default_rng([seed, i, 1]); nothing else is random. So the CSV log (one row per net: index, epsilon, arch,
reward, status, ...) determines everything: `run_search` on an existing log replays it (walks and updates,
no training), checks every logged arch against the replayed walk (a different seed, space or schedule is
refused), and continues: N nets, stop, continue to 2N = 2N nets in one go, the same archs and Q table.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.models.deep_prior.archstring import Conv, Pool, check_layer, parse_arch

from .embeddings import ProbeData, atomic_write
from .probe import score_architecture

START, END = "start", "END"
LOG_COLUMNS = ("index", "epsilon", "arch", "reward", "status", "val_miou", "seconds", "reason")


def epsilon_schedule(first: int, every: int, step: float = 0.1, start: float = 1.0,
                     final: float = 0.1) -> list[tuple[float, int]]:
    """[(start, first), (start - step, every), ..., (final, every)]: epsilon for the first nets, then lower
    by `step` every `every` nets down to `final`, which stays after the schedule ends."""
    if first < 0 or every < 1 or not 0 < step <= 1 or not 0 <= final <= start <= 1:
        raise ValueError(f"bad epsilon schedule: first={first}, every={every}, step={step}, start={start}, "
                         f"final={final} (need first >= 0, every >= 1, 0 < step <= 1, "
                         "0 <= final <= start <= 1)")
    schedule = [(start, first)] if first else []
    epsilon = start
    while round(epsilon - step, 10) >= final - 1e-12:
        epsilon = round(epsilon - step, 10)
        schedule.append((epsilon, every))
    return schedule


DP_NAS_SCHEDULE = epsilon_schedule(first=1500, every=100)


def epsilon_for(schedule: list[tuple[float, int]], index: int) -> float:
    """The epsilon of net `index` (0-based) under `schedule`; past its end, the last epsilon."""
    for epsilon, count in schedule:
        if index < count:
            return epsilon
        index -= count
    return schedule[-1][0]


@dataclass(frozen=True)
class SearchSpace:
    """The layers a walk may append (see the module docstring). Kernels must be odd ("same" padding)."""

    conv_features: tuple[int, ...] = (8, 16, 32)
    conv_kernels: tuple[int, ...] = (1, 3, 5)
    conv_skips: tuple[int, ...] = (0, 1)
    pools: tuple[tuple[int, int], ...] = ((2, 2), (4, 4))
    min_layers: int = 1
    max_layers: int = 4

    def __post_init__(self):
        if not 1 <= self.min_layers <= self.max_layers:
            raise ValueError(f"SearchSpace: need 1 <= min_layers <= max_layers, got {self.min_layers}, "
                             f"{self.max_layers}")
        if not self.conv_features or not self.conv_kernels or not self.conv_skips:
            raise ValueError("SearchSpace: conv_features, conv_kernels and conv_skips must not be empty")
        for kernel in self.conv_kernels:
            if kernel < 1 or kernel % 2 == 0:
                raise ValueError(f"SearchSpace: conv_kernels must be odd and >= 1 (pad = (k-1)/2), "
                                 f"got {kernel}")
        for layer in self.layers():
            check_layer(layer)

    def layers(self) -> list[Conv | Pool]:
        convs = [Conv(f, k, 1, (k - 1) // 2, s) for f in self.conv_features for k in self.conv_kernels
                 for s in self.conv_skips]
        return convs + [Pool(size, stride) for size, stride in self.pools]

    def actions(self, state: tuple[int, str]) -> list[str]:
        """Allowed actions (layer strings, "END") from state (depth, last layer string or "start")."""
        depth, last = state
        actions = []
        if depth < self.max_layers:
            after_pool = last.startswith("P(")
            actions = [str(layer) for layer in self.layers() if not (after_pool and isinstance(layer, Pool))]
        if depth >= self.min_layers:
            actions.append(END)
        return actions


def transitions(arch: str) -> list[tuple[tuple[int, str], str, tuple[int, str] | None]]:
    """The (state, action, next state) steps of a walk that produced `arch`; next state None after END."""
    tokens = [str(layer) for layer in parse_arch(arch)]
    steps, state = [], (0, START)
    for depth, token in enumerate(tokens, start=1):
        steps.append((state, token, (depth, token)))
        state = (depth, token)
    steps.append((state, END, None))
    return steps


class QLearner:
    """The Q table, the replay buffer and the epsilon-greedy walk (see the module docstring).

    q: {state (depth, last): {action: value}}, filled with initial_q when a state is first met.
    buffer: [(arch, reward)] of every net so far, in order.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, schedule: list[tuple[float, int]] | None = None,
                 replay_size: int = 50, learning_rate: float = 0.1, discount: float = 1.0,
                 initial_q: float = 0.0):
        if replay_size < 1:
            raise ValueError(f"replay_size must be >= 1 (the last net is always replayed), got {replay_size}")
        self.space = space
        self.seed = seed
        self.schedule = schedule if schedule is not None else epsilon_schedule(first=10, every=5)
        self.replay_size = replay_size
        self.learning_rate = learning_rate
        self.discount = discount
        self.initial_q = initial_q
        self.q: dict[tuple[int, str], dict[str, float]] = {}
        self.buffer: list[tuple[str, float]] = []

    def values(self, state: tuple[int, str]) -> dict[str, float]:
        """Q values of the actions of `state` (created at initial_q on first use)."""
        if state not in self.q:
            self.q[state] = {action: self.initial_q for action in self.space.actions(state)}
        return self.q[state]

    def epsilon(self, index: int) -> float:
        return epsilon_for(self.schedule, index)

    def sample(self, index: int) -> str:
        """The architecture string of net `index`: an epsilon-greedy walk from the start state."""
        rng = np.random.default_rng([self.seed, index, 0])
        epsilon = self.epsilon(index)
        state, tokens = (0, START), []
        while True:
            values = self.values(state)
            actions = list(values)
            if rng.random() < epsilon:
                action = actions[rng.integers(len(actions))]
            else:
                best = max(values.values())
                ties = [a for a in actions if values[a] == best]
                action = ties[rng.integers(len(ties))]
            if action == END:
                return "[" + ", ".join(tokens) + "]"  # layer strings are canonical: a canonical arch
            tokens.append(action)
            state = (len(tokens), action)

    def update_net(self, arch: str, reward: float) -> None:
        """One pass of Q updates over the walk of `arch`, last transition first (reward only at the end)."""
        for state, action, next_state in reversed(transitions(arch)):
            values = self.values(state)
            if action not in values:
                raise ValueError(f"{arch}: action {action} is not allowed from state {state} in this space")
            if next_state is None:
                target = reward
            else:
                target = self.discount * max(self.values(next_state).values())
            values[action] += self.learning_rate * (target - values[action])

    def record(self, index: int, arch: str, reward: float) -> None:
        """Add net `index` to the buffer, then replay: net `index` and replay_size - 1 random stored nets."""
        if index != len(self.buffer):
            raise ValueError(f"net {index} recorded after {len(self.buffer)} nets: record nets in order")
        self.buffer.append((arch, float(reward)))
        self.update_net(arch, reward)
        rng = np.random.default_rng([self.seed, index, 1])
        for _ in range(self.replay_size - 1):
            self.update_net(*self.buffer[int(rng.integers(len(self.buffer)))])


def probe_evaluator(data: ProbeData, seed: int = 0, **probe) -> Callable[[str], dict]:
    """evaluate(arch) -> {"reward", "status", "val_miou", "reason"}: the deep-prior score of the arch with
    weight seed `seed` (probe.score_architecture with **probe: epochs, early_stop, max_embedding_size...)."""

    def evaluate(arch: str) -> dict:
        result = score_architecture(data, arch, seed, **probe)
        return {"reward": result.reward, "status": result.status, "val_miou": result.val_miou,
                "reason": result.reason}

    return evaluate


def read_log(path: str | Path) -> list[dict]:
    """The rows of a search log; index and reward as numbers, val_miou as a list of floats."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != LOG_COLUMNS:
            raise ValueError(f"{path}: not a deep-prior search log (columns {reader.fieldnames}, expected "
                             f"{list(LOG_COLUMNS)})")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                row["index"], row["epsilon"] = int(row["index"]), float(row["epsilon"])
                row["reward"], row["seconds"] = float(row["reward"]), float(row["seconds"])
                row["val_miou"] = [float(v) for v in row["val_miou"].split(";") if v]
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}, line {line}: {error}") from None
            if row["index"] != len(rows):
                raise ValueError(f"{path}, line {line}: index {row['index']}, expected {len(rows)}")
            rows.append(row)
    return rows


def write_log(path: str | Path, rows: list[dict]) -> None:
    """Write the whole log atomically (floats in full precision, so a continued search replays exactly)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "epsilon": repr(row["epsilon"]), "reward": repr(float(row["reward"])),
                         "val_miou": ";".join(repr(float(v)) for v in row["val_miou"])})
    atomic_write(path, lambda f: f.write(text.getvalue()), binary=False)


def run_search(learner: QLearner, evaluate: Callable[[str], dict], nets: int, log_path: str | Path,
               verbose: bool = False) -> list[dict]:
    """Sample and evaluate nets until the log holds `nets` rows; continues an existing log at log_path.

    evaluate(arch) -> {"reward": float, "status": str, "val_miou": [float, ...], "reason": str}.
    The learner must be fresh (empty buffer); its Q table is rebuilt from the log first. Returns all rows.
    """
    if learner.buffer:
        raise ValueError("run_search needs a fresh QLearner (its Q table is rebuilt from the log)")
    log_path = Path(log_path)
    rows = read_log(log_path) if log_path.is_file() else []
    for row in rows:  # replay the log: the same walks and updates, no training
        index = row["index"]
        arch = learner.sample(index)
        if arch != row["arch"] or not math.isclose(learner.epsilon(index), row["epsilon"]):
            raise ValueError(
                f"{log_path}: net {index} is {row['arch']} at epsilon {row['epsilon']}, but these search "
                f"settings sample {arch} at epsilon {learner.epsilon(index)}: the log was written with "
                "another seed, search space or epsilon schedule"
            )
        learner.record(index, arch, row["reward"])
    rewards: dict[str, dict] = {}  # arch -> the row of its first evaluation
    for row in rows:
        rewards.setdefault(row["arch"], row)
    for index in range(len(rows), nets):
        start = time.perf_counter()
        arch = learner.sample(index)
        if arch in rewards:
            earlier = rewards[arch]
            result = {"reward": earlier["reward"], "status": "repeat", "val_miou": earlier["val_miou"],
                      "reason": f"same as net {earlier['index']}"}
        else:
            result = evaluate(arch)
        row = {"index": index, "epsilon": learner.epsilon(index), "arch": arch,
               "reward": float(result["reward"]), "status": result["status"],
               "val_miou": list(result.get("val_miou", [])), "seconds": round(time.perf_counter() - start, 3),
               "reason": result.get("reason", "")}
        learner.record(index, arch, row["reward"])
        rows.append(row)
        rewards.setdefault(arch, row)
        write_log(log_path, rows)
        if verbose:
            print(f"net {index:4d}  eps {row['epsilon']:.1f}  reward {row['reward']:.3f}  "
                  f"{row['status']:13s} {arch}")
    return rows


def q_table_rows(learner: QLearner) -> list[dict]:
    """The Q table as rows {depth, last, action, q}, sorted, e.g. for a pandas DataFrame or a CSV."""
    return [{"depth": depth, "last": last, "action": action, "q": value}
            for (depth, last), values in sorted(learner.q.items())
            for action, value in sorted(values.items())]
