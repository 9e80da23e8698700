"""The three DP-NAS hypotheses as small experiments (notebook 08b), each a function returning plain results.

    data = ProbeData(root="data/shapes", image_size=64)
    results = compare_architectures(data, ["[]", "[C(16,3,1,1,0)]", "[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]"])
    print(results_table(results))                         # (1) some random architectures segment far better
    spread = compare_seeds(data, "[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]", seeds=range(4))
    print(spread)                                         # (2) re-drawing the weights changes little
    whole = train_whole_network(data, best_arch(results), epochs=10)
    print(whole)                                          # (3) training everything helps only modestly

Hypotheses, after Mundt et al. 2021 (DP-NAS), with val mIoU in place of classification accuracy:
1. Random-weight architectures differ: with the same head training, some encoders give far better features.
2. A deep prior's score hardly depends on the drawn weights: several seeds of one architecture score close
   together (no "initialisation lottery"); the spread is reported as the sample standard deviation
   sqrt(sum (x - mean)^2 / (n - 1)).
3. Training the whole network (freeze_encoder=False, from the same random start, the same epochs, data order
   and optimizer) does better than its deep prior, but for the best deep priors not by much.

Every score uses probe.score_architecture: the head trained on cached embeddings (embeddings.py), so
repeating an experiment reads the features from disk instead of running the encoder again.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from segkit.models.deep_prior.archstring import canonical_arch
from segkit.models.deep_prior.network import DeepPriorModel, RandomEncoder

from .embeddings import ProbeData
from .probe import ProbeResult, fit, score_architecture


def compare_architectures(data: ProbeData, archs, seed: int = 0, **probe) -> list[ProbeResult]:
    """Hypothesis 1: the deep-prior score of every arch with weight seed `seed`, in the given order.
    probe: options of score_architecture (epochs, batch_size, lr, early_stop, max_embedding_size)."""
    return [score_architecture(data, arch, seed, **probe) for arch in archs]


def best_arch(results: list[ProbeResult]) -> str:
    """The arch with the highest reward."""
    if not results:
        raise ValueError("best_arch: no results")
    return max(results, key=lambda r: r.reward).arch


def results_table(results: list[ProbeResult]) -> str:
    """A plain-text table, best first: reward (val mIoU), status, feature shape, seconds, arch."""
    lines = [f"{'val mIoU':>8}  {'status':13s} {'features':>12}  {'seconds':>7}  arch"]
    for r in sorted(results, key=lambda r: r.reward, reverse=True):
        shape = "x".join(map(str, r.feature_shape)) if r.feature_shape else "-"
        lines.append(f"{r.reward:8.3f}  {r.status:13s} {shape:>12}  {r.seconds:7.2f}  {r.arch}"
                     + (f"  ({r.reason})" if r.reason else ""))
    return "\n".join(lines)


@dataclass
class SeedSpread:
    """Hypothesis 2: scores of one arch over several weight seeds, their mean and sample std."""

    arch: str
    seeds: list[int]
    scores: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0

    def __str__(self) -> str:
        values = ", ".join(f"{s:.3f}" for s in self.scores)
        return (f"{self.arch}: val mIoU {self.mean:.3f} +- {self.std:.3f} (sample std) over seeds "
                f"{self.seeds}: [{values}], range {min(self.scores):.3f}..{max(self.scores):.3f}")


def compare_seeds(data: ProbeData, arch: str, seeds=range(5), **probe) -> SeedSpread:
    """Hypothesis 2: the deep-prior score of `arch` for each weight seed (same head training for all)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("compare_seeds needs at least one seed")
    scores = [score_architecture(data, arch, s, **probe).reward for s in seeds]
    return SeedSpread(canonical_arch(arch), seeds, scores)


@dataclass
class WholeNetworkResult:
    """Hypothesis 3: the deep prior (head only) against the whole network trained from the same start."""

    arch: str
    seed: int
    deep_prior: ProbeResult
    trained_miou: list[float]
    seconds: float

    @property
    def trained(self) -> float:
        return self.trained_miou[-1]

    def __str__(self) -> str:
        gain = self.trained - self.deep_prior.reward
        return (f"{self.arch} (seed {self.seed}): deep prior {self.deep_prior.reward:.3f}, whole network "
                f"trained {self.trained:.3f} ({gain:+.3f}), training took {self.seconds:.1f} s")


def train_whole_network(data: ProbeData, arch: str, seed: int = 0, *, epochs: int = 10, batch_size: int = 4,
                        lr: float = 0.003, head_lr: float = 0.05, weight_decay: float = 0.0,
                        head_seed: int = 0) -> WholeNetworkResult:
    """Hypothesis 3: DeepPriorModel(RandomEncoder(arch, seed), freeze_encoder=False) trained on the images
    for `epochs` epochs (the data order of head_seed) with Adam, the encoder at `lr` and the head at
    `head_lr`, against the deep-prior score of the same (arch, seed): the head alone, Adam(head_lr), the same
    epochs and order. Val mIoU after every epoch."""
    deep_prior = score_architecture(data, arch, seed, epochs=epochs, batch_size=batch_size, lr=head_lr,
                                    weight_decay=weight_decay, head_seed=head_seed)
    if deep_prior.status == "infeasible":
        raise ValueError(f"{arch} is infeasible for this data: {deep_prior.reason}")
    start = time.perf_counter()
    model = DeepPriorModel(RandomEncoder(arch, seed), data.num_classes, freeze_encoder=False)
    optimizer = torch.optim.Adam([{"params": model.encoder.parameters(), "lr": lr},
                                  {"params": model.head.parameters(), "lr": head_lr}],
                                 weight_decay=weight_decay)
    fitted = fit(model, data.tensors("train"), data.tensors("val"), num_classes=data.num_classes,
                 epochs=epochs, batch_size=batch_size, seed=head_seed, device=data.device,
                 optimizer=optimizer)
    return WholeNetworkResult(deep_prior.arch, seed, deep_prior, fitted.val_miou, time.perf_counter() - start)
