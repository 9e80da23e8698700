"""Session 8 exercises: comparing experiments fairly.

    rank_configs        a results table: mean ± standard deviation of each config over its seeds, best first
    paired_difference   is B better than A? the mean of per-seed differences and its standard error
"""

from __future__ import annotations

import math
import statistics

from segkit.course.exercises.checker import Exercise, register

# ---------------------------------------------------------------------------------------- results table


def rank_configs(results: list[dict]) -> list[tuple[str, float, float, int]]:
    """Group runs by config and rank the configs by their mean score, best first.

    results: one dict per run, {"config": name, "seed": int, "miou": float}, in any order.
    Returns [(config, mean, std, runs), ...] sorted by mean (highest first; equal means by config name).
    std is the *sample* standard deviation over the config's runs (divided by n - 1, what one reports as
    the spread between seeds), NaN for a config with a single run (one run says nothing about the spread).
    """
    scores: dict[str, list[float]] = {}
    for run in results:
        scores.setdefault(run["config"], []).append(run["miou"])
    rows = []
    for config, values in scores.items():
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        rows.append((config, statistics.fmean(values), std, len(values)))
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def _runs(rng, configs: dict[str, float], seeds: int, noise: float = 0.02) -> list[dict]:
    runs = [{"config": name, "seed": seed, "miou": float(centre + rng.normal(0, noise))}
            for name, centre in configs.items() for seed in range(seeds)]
    order = rng.permutation(len(runs))
    return [runs[i] for i in order]


def _rank_cases(rng) -> list[tuple[str, tuple]]:
    # means of exactly 0.625 in binary floating point, however they are summed: a true tie
    tie = [{"config": "unet_dice", "seed": 0, "miou": 0.5}, {"config": "unet_dice", "seed": 1, "miou": 0.75},
           {"config": "unet_ce", "seed": 0, "miou": 0.625}, {"config": "unet_ce", "seed": 1, "miou": 0.625}]
    return [
        ("2 configs x 3 seeds, runs in random order", (_runs(rng, {"unet_ce": 0.60, "unet_dice": 0.55}, 3),)),
        ("4 configs x 2 seeds", (_runs(rng, {"a": 0.3, "b": 0.5, "c": 0.4, "d": 0.45}, 2),)),
        ("one config, one run (std undefined: NaN)", ([{"config": "only", "seed": 0, "miou": 0.42}],)),
        ("two configs with equal means (ties: by name)", (tie,)),
        ("5 seeds of one config", (_runs(rng, {"deeplab": 0.7}, 5, noise=0.05),)),
    ]


register(Exercise(
    name="rank_configs",
    description="results table: (config, mean, sample std, runs) per config, highest mean first",
    reference=rank_configs,
    make_cases=_rank_cases,
    hint="group the mIoUs by config (a dict of lists), mean and *sample* std (statistics.stdev, n - 1; "
         "NaN for one run), then sort by -mean and then by name",
))


# ----------------------------------------------------------------------------------- paired difference


def paired_difference(scores_a: list[float], scores_b: list[float]) -> tuple[float, float]:
    """Mean and standard error of the per-seed differences d_i = b_i - a_i.

    scores_a, scores_b: the score of configs A and B for the same seeds, in the same order (seed i of A and
    seed i of B share the data order and the initial weights). With n >= 2 seeds:

        mean = (1/n) sum_i d_i          SE = stdev(d) / sqrt(n)      (stdev with n - 1)

    Pairing removes the part of the noise the two runs of a seed share, so SE is often much smaller than
    what comparing two independent means would give. Roughly, B is better when mean > 2 SE.
    """
    if len(scores_a) != len(scores_b) or len(scores_a) < 2:
        raise ValueError("need the same seeds (at least 2) for both configs")
    differences = [b - a for a, b in zip(scores_a, scores_b, strict=True)]
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences))


def _paired_cases(rng) -> list[tuple[str, tuple]]:
    seed_effect = rng.normal(0.6, 0.05, 5)  # what the seed does to both configs: shared noise
    a = [float(s + rng.normal(0, 0.005)) for s in seed_effect]
    b = [float(s + 0.01 + rng.normal(0, 0.005)) for s in seed_effect]
    return [
        ("5 seeds, strongly correlated runs", (a, b)),
        ("2 seeds", ([0.50, 0.60], [0.55, 0.62])),
        ("B is A plus a constant (SE 0)", ([0.3, 0.5, 0.4], [0.35, 0.55, 0.45])),
        ("independent runs, 4 seeds", ([float(v) for v in rng.normal(0.5, 0.03, 4)],
                                       [float(v) for v in rng.normal(0.5, 0.03, 4)])),
    ]


register(Exercise(
    name="paired_difference",
    description="mean of the per-seed differences b - a and its standard error stdev(d) / sqrt(n)",
    reference=paired_difference,
    make_cases=_paired_cases,
    hint="subtract seed by seed first (d_i = b_i - a_i), then mean(d) and statistics.stdev(d) / sqrt(n); "
         "do not combine the spreads of a and b separately",
))
