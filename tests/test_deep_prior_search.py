"""The MetaQNN search over deep priors (segkit.search.deep_prior.metaqnn): Q updates against hand
computations, the replay draws against numpy, the epsilon schedule against DP-NAS's list, the greedy walk,
stopping and continuing from the CSV log against an uninterrupted search; the hypothesis experiments
against score_architecture and numpy statistics; and `segkit deep-prior`."""

from __future__ import annotations

import csv
import statistics

import numpy as np
import pytest

from segkit.cli import main
from segkit.data import make_shapes
from segkit.models.deep_prior.archstring import parse_arch
from segkit.search.deep_prior.embeddings import ProbeData
from segkit.search.deep_prior.experiments import (
    best_arch,
    compare_architectures,
    compare_seeds,
    results_table,
    train_whole_network,
)
from segkit.search.deep_prior.metaqnn import (
    DP_NAS_SCHEDULE,
    END,
    START,
    QLearner,
    SearchSpace,
    epsilon_for,
    epsilon_schedule,
    probe_evaluator,
    q_table_rows,
    read_log,
    run_search,
    transitions,
)
from segkit.search.deep_prior.probe import score_architecture

TINY = SearchSpace(conv_features=(4, 8), conv_kernels=(1, 3), conv_skips=(0, 1), pools=((2, 2), (8, 8)),
                   max_layers=3)
SMALL = SearchSpace(conv_features=(4,), conv_kernels=(1, 3), conv_skips=(0,), pools=((2, 2), (8, 8)),
                    max_layers=2)  # 4 + 4 * 3 + 2 * 2 = 20 archs: repeats are certain



@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", size=32, n_train=8, n_val=4, n_test=0)


def fake_evaluate(calls):
    """A cheap deterministic reward per arch (0 and 'infeasible' when it ends with a pool)."""

    def evaluate(arch):
        calls.append(arch)
        if arch.endswith("P(8,8)]"):
            return {"reward": 0.0, "status": "infeasible", "val_miou": [], "reason": "test"}
        reward = (sum(map(ord, arch)) % 97) / 100
        return {"reward": reward, "status": "trained", "val_miou": [reward / 2, reward], "reason": ""}

    return evaluate


# -------------------------------------------------------------------------------------------- Q-learning


def test_q_update_on_a_two_step_chain_by_hand():
    learner = QLearner(TINY, learning_rate=0.1, discount=1.0, initial_q=0.5)
    arch = "[C(8,3,1,1,0)]"  # start --C(8,3,1,1,0)--> (1, C) --END--> terminal
    s0, s1, layer = (0, START), (1, "C(8,3,1,1,0)"), "C(8,3,1,1,0)"
    learner.update_net(arch, 0.9)
    # Last transition first: Q(s1, END) = 0.5 + 0.1 * (0.9 - 0.5) = 0.54.
    assert learner.q[s1][END] == pytest.approx(0.54)
    # Then Q(s0, C) = 0.5 + 0.1 * (0 + max(Q(s1, .)) - 0.5) with max(Q(s1, .)) = max(0.54, 0.5, ...) = 0.54.
    assert learner.q[s0][layer] == pytest.approx(0.504)
    assert all(v == 0.5 for a, v in learner.q[s1].items() if a != END)
    learner.update_net(arch, 0.9)
    assert learner.q[s1][END] == pytest.approx(0.54 + 0.1 * (0.9 - 0.54))  # 0.576
    assert learner.q[s0][layer] == pytest.approx(0.504 + 0.1 * (0.576 - 0.504))  # 0.5112
    # A reward below the initial value: the max over s1's other (untried) actions keeps Q(s0, C) at 0.5.
    low = QLearner(TINY, initial_q=0.5)
    low.update_net(arch, 0.1)
    assert low.q[s1][END] == pytest.approx(0.46) and low.q[s0][layer] == pytest.approx(0.5)
    # Discount 0.5: the target of the first transition is 0.5 * max Q(s1, .).
    half = QLearner(TINY, discount=0.5, initial_q=0.5)
    half.update_net(arch, 0.9)
    assert half.q[s0][layer] == pytest.approx(0.5 + 0.1 * (0.5 * 0.54 - 0.5))


def test_transitions_and_the_actions_of_the_space():
    assert transitions("[C(4,1,1,0,0), P(2,2)]") == [
        ((0, START), "C(4,1,1,0,0)", (1, "C(4,1,1,0,0)")),
        ((1, "C(4,1,1,0,0)"), "P(2,2)", (2, "P(2,2)")),
        ((2, "P(2,2)"), END, None),
    ]
    convs = [f"C({f},{k},1,{(k - 1) // 2},{s})" for f in (4, 8) for k in (1, 3) for s in (0, 1)]
    assert TINY.actions((0, START)) == convs + ["P(2,2)", "P(8,8)"]  # min_layers = 1: no END yet
    assert TINY.actions((1, "P(2,2)")) == convs + [END]  # no pooling right after pooling
    assert TINY.actions((3, "C(4,1,1,0,0)")) == [END]  # max_layers reached
    with pytest.raises(ValueError, match="conv_kernels must be odd"):
        SearchSpace(conv_kernels=(2,))


def test_epsilon_schedule_is_dp_nas_by_default_shape():
    expected = [(1.0, 1500)] + [(round(e / 10, 1), 100) for e in range(9, 0, -1)]
    assert DP_NAS_SCHEDULE == expected
    assert [epsilon_for(DP_NAS_SCHEDULE, i) for i in (0, 1499, 1500, 1599, 1600, 2399, 2400, 10**6)] == [
        1.0, 1.0, 0.9, 0.9, 0.8, 0.1, 0.1, 0.1]
    assert epsilon_schedule(first=3, every=2, step=0.25, final=0.5) == [(1.0, 3), (0.75, 2), (0.5, 2)]
    with pytest.raises(ValueError, match="bad epsilon schedule"):
        epsilon_schedule(first=3, every=0)


def test_greedy_walk_follows_the_largest_q_and_random_walks_stay_in_the_space():
    greedy = QLearner(TINY, schedule=[(0.0, 1)])
    greedy.values((0, START))["C(8,1,1,0,1)"] = 1.0
    greedy.values((1, "C(8,1,1,0,1)"))["P(2,2)"] = 1.0
    greedy.values((2, "P(2,2)"))[END] = 1.0
    assert all(greedy.sample(i) == "[C(8,1,1,0,1), P(2,2)]" for i in range(5))
    explorer = QLearner(TINY, seed=1, schedule=[(1.0, 1)])
    archs = {explorer.sample(i) for i in range(200)}
    assert len(archs) > 100
    for arch in archs:
        layers = parse_arch(arch)
        assert 1 <= len(layers) <= 3
        pairs = zip(layers, layers[1:], strict=False)
        assert not any(str(a).startswith("P") and str(b).startswith("P") for a, b in pairs)


def test_replay_updates_the_last_net_and_draws_the_others_with_numpy(monkeypatch):
    learner = QLearner(TINY, seed=4, replay_size=5)
    updated = []
    real_update = learner.update_net
    monkeypatch.setattr(learner, "update_net", lambda arch, reward: (updated.append(arch),
                                                                    real_update(arch, reward)))
    archs = ["[C(4,1,1,0,0)]", "[C(8,3,1,1,1), P(2,2)]", "[P(2,2), C(4,3,1,1,0)]"]
    for index, arch in enumerate(archs):
        updated.clear()
        learner.record(index, arch, 0.1 * index)
        rng = np.random.default_rng([4, index, 1])
        assert updated == [arch] + [archs[int(rng.integers(index + 1))] for _ in range(4)]
    with pytest.raises(ValueError, match="record nets in order"):
        learner.record(7, archs[0], 0.0)


def test_continued_search_equals_an_uninterrupted_one(tmp_path):
    settings = dict(seed=3, schedule=epsilon_schedule(first=4, every=2), replay_size=6, initial_q=0.2)
    calls = []
    whole = QLearner(SMALL, **settings)
    rows = run_search(whole, fake_evaluate(calls), 20, tmp_path / "whole.csv")
    assert len(calls) == len({row["arch"] for row in rows})  # a repeated arch is not evaluated again
    repeats = [row for row in rows if row["status"] == "repeat"]
    assert repeats and all(r["reward"] == rows[int(r["reason"].split()[-1])]["reward"] for r in repeats)
    assert any(row["status"] == "infeasible" and row["reward"] == 0.0 for row in rows)

    first = run_search(QLearner(SMALL, **settings), fake_evaluate([]), 10, tmp_path / "split.csv")
    calls_after = []
    resumed = QLearner(SMALL, **settings)
    second = run_search(resumed, fake_evaluate(calls_after), 20, tmp_path / "split.csv")
    assert second[:10] == first and [r["arch"] for r in second] == [r["arch"] for r in rows]
    assert resumed.q == whole.q and resumed.buffer == whole.buffer
    assert set(calls_after).isdisjoint(r["arch"] for r in first)  # the logged nets were not trained again
    assert [r["epsilon"] for r in rows[:8]] == [1.0] * 4 + [0.9] * 2 + [0.8] * 2
    def without_time(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert without_time(read_log(tmp_path / "split.csv")) == without_time(read_log(tmp_path / "whole.csv"))
    assert sum(1 for _ in q_table_rows(whole)) == sum(len(v) for v in whole.q.values())

    with pytest.raises(ValueError, match="another seed, search space or epsilon schedule"):
        run_search(QLearner(SMALL, **{**settings, "seed": 4}), fake_evaluate([]), 21, tmp_path / "whole.csv")
    with open(tmp_path / "whole.csv") as f:
        header = next(csv.reader(f))
    assert header == ["index", "epsilon", "arch", "reward", "status", "val_miou", "seconds", "reason"]


def test_search_with_the_probe_continues_the_same_way(shapes_root, tmp_path):
    """The real reward (head trained 1 epoch on cached embeddings): 3 nets, then on to 6, vs 6 at once."""
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache")
    settings = dict(seed=0, schedule=epsilon_schedule(first=2, every=2), replay_size=3)
    evaluate = probe_evaluator(data, epochs=1, batch_size=4, max_embedding_size=2048)
    whole = QLearner(TINY, **settings)
    rows = run_search(whole, evaluate, 6, tmp_path / "whole.csv")
    run_search(QLearner(TINY, **settings), evaluate, 3, tmp_path / "split.csv")
    resumed = QLearner(TINY, **settings)
    continued = run_search(resumed, evaluate, 6, tmp_path / "split.csv")
    assert [r["arch"] for r in continued] == [r["arch"] for r in rows] and resumed.q == whole.q
    assert {"trained", "infeasible"} <= {row["status"] for row in rows}
    for row in rows:
        if row["status"] == "trained":
            assert row["reward"] == score_architecture(data, row["arch"], epochs=1).reward
        else:
            assert row["status"] in ("infeasible", "repeat")


# ------------------------------------------------------------------------------------ hypotheses and CLI


def test_hypothesis_functions(shapes_root, tmp_path):
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache")
    archs = ["[]", "[C(8,3,1,1,0), P(2,2)]", "[C(8,3,1,1,1), P(4,4), C(8,1,1,0,0), P(2,2)]",
             "[P(8,8), P(8,8)]"]
    results = compare_architectures(data, archs, epochs=2)
    for arch, result in zip(archs, results, strict=True):
        assert result.reward == score_architecture(data, arch, epochs=2).reward
    assert results[-1].status == "infeasible" and results[-1].reward == 0.0
    assert best_arch(results) == max(results, key=lambda r: r.reward).arch
    table = results_table(results).splitlines()
    assert len(table) == 5 and table[1].endswith(best_arch(results))

    spread = compare_seeds(data, "[C(8,3,1,1,0),P(2,2)]", seeds=[0, 1, 2], epochs=2)
    scores = [score_architecture(data, "[C(8,3,1,1,0), P(2,2)]", s, epochs=2).reward for s in (0, 1, 2)]
    assert spread.arch == "[C(8,3,1,1,0), P(2,2)]" and spread.scores == scores
    assert spread.mean == pytest.approx(np.mean(scores))
    assert spread.std == pytest.approx(np.std(scores, ddof=1))
    assert spread.std == pytest.approx(statistics.stdev(scores))

    whole = train_whole_network(data, "[C(8,3,1,1,0), P(2,2)]", seed=1, epochs=2)
    assert whole.deep_prior.reward == scores[1] and len(whole.trained_miou) == 2
    assert whole.trained == whole.trained_miou[-1] and "whole network trained" in str(whole)
    with pytest.raises(ValueError, match="infeasible"):
        train_whole_network(data, "[P(8,8), P(8,8)]")


def test_cli_score_store_and_errors(shapes_root, tmp_path, capsys):
    arch = "[C(8,3,1,1,0), P(2,2)]"
    common = ["--data", str(shapes_root), "--image-size", "32", "--cache-dir", str(tmp_path / "cache"),
              "--epochs", "1"]
    assert main(["deep-prior", "score", arch, "--seed", "2", "--store-embeddings", str(tmp_path / "out"),
                 *common]) == 0
    printed = capsys.readouterr().out
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache")
    reward = score_architecture(data, arch, 2, epochs=1).reward
    assert f"{reward:8.3f}  trained" in printed and "written to" in printed
    train = data.embeddings(arch, 2, "train")
    assert np.array_equal(np.load(tmp_path / "out" / "train_features.npy"), train.features.numpy())

    bad = "[C(8,3,1,1,0), Q(2)]"
    assert main(["deep-prior", "score", bad, *common]) == 2
    assert f"at position {bad.index('Q')}: unknown layer 'Q'" in capsys.readouterr().err
    assert main(["deep-prior", "score", arch, "[]", "--store-embeddings", str(tmp_path / "x"), *common]) == 2
    assert "exactly one ARCH" in capsys.readouterr().err

    log = tmp_path / "search.csv"
    assert main(["deep-prior", "search", "--nets", "2", "--log", str(log), "--first", "1", "--every", "1",
                 "--max-layers", "2", "--early-stop", "1", "0.0", *common]) == 0
    assert [row["index"] for row in read_log(log)] == [0, 1] and "best reward" in capsys.readouterr().out
