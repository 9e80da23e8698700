"""`segkit deep-prior`: score random-weight architectures, export their embeddings, run a MetaQNN search.

    segkit deep-prior score ARCH [ARCH ...] [--seed S] [--epochs E] [--store-embeddings DIR]
    segkit deep-prior search --nets N --log FILE [--first F --every M] [--replay K] [--early-stop E T]

torch is imported inside the handlers, so `segkit --help` stays quick.
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  segkit data shapes --size 64 --n-train 32 --n-val 16 --out data/shapes64
  segkit deep-prior score "[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]" "[C(16,3,1,1,0)]" --data data/shapes64
  segkit deep-prior score "[C(16,3,1,1,0), P(2,2)]" --data data/shapes64 --store-embeddings exports/dp1
  segkit deep-prior search --nets 30 --log runs/dp_search/search.csv --data data/shapes64
  segkit deep-prior search --nets 60 --log runs/dp_search/search.csv --data data/shapes64   # continues

Architecture strings: C(features,kernel,stride,pad,skip) convolution + ReLU (skip=1: residual), P(size,stride)
max pooling, e.g. "[C(16,3,1,1,0), P(2,2)]" (see segkit/models/deep_prior/archstring.py). Embeddings are
cached in --cache-dir (default runs/deep_prior_cache) and reused by every later command.
"""


def _probe_data(args):
    from segkit.data import default_shapes_dir
    from segkit.search.deep_prior.embeddings import ProbeData

    root = args.data if args.data is not None else default_shapes_dir()
    return ProbeData(root=root, image_size=args.image_size, cache_dir=args.cache_dir, device=args.device)


def _run_score(args: argparse.Namespace) -> int:
    from segkit.search.deep_prior.embeddings import store_embeddings
    from segkit.search.deep_prior.experiments import compare_architectures, results_table

    if args.store_embeddings and len(args.archs) != 1:
        raise ValueError("--store-embeddings exports one architecture: give exactly one ARCH")
    data = _probe_data(args)
    results = compare_architectures(data, args.archs, seed=args.seed, epochs=args.epochs, lr=args.lr,
                                    batch_size=args.batch_size)
    print(results_table(results))
    if args.store_embeddings:
        result = results[0]
        if result.status == "infeasible":
            raise ValueError(f"{result.arch} is infeasible, nothing to export: {result.reason}")
        splits = {split: data.embeddings(result.arch, args.seed, split) for split in ("train", "val")}
        out = store_embeddings(args.store_embeddings, splits)
        print(f"embeddings of {result.arch} (seed {args.seed}) written to {out}: "
              "{train,val}_features.npy, {train,val}_masks.npy, {train,val}_ids.txt, embeddings.json")
    return 0


def _run_search(args: argparse.Namespace) -> int:
    from segkit.search.deep_prior import metaqnn

    space = metaqnn.SearchSpace(max_layers=args.max_layers)
    schedule = metaqnn.epsilon_schedule(args.first, args.every)
    learner = metaqnn.QLearner(space, seed=args.seed, schedule=schedule, replay_size=args.replay,
                               initial_q=args.initial_q)
    early_stop = (int(args.early_stop[0]), float(args.early_stop[1])) if args.early_stop else None
    evaluate = metaqnn.probe_evaluator(_probe_data(args), seed=args.weight_seed, epochs=args.epochs,
                                       lr=args.lr, batch_size=args.batch_size, early_stop=early_stop,
                                       max_embedding_size=args.max_embedding_size)
    rows = metaqnn.run_search(learner, evaluate, args.nets, args.log, verbose=True)
    best = max(rows, key=lambda row: row["reward"])
    print(f"{len(rows)} nets in {args.log}; best reward {best['reward']:.3f}: {best['arch']} "
          f"(net {best['index']})")
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a VOC-layout root (default: the shapes set, data/shapes)")
    parser.add_argument("--image-size", type=int, default=64, help="square image size (default 64)")
    parser.add_argument("--cache-dir", help="embedding cache (default: <runs>/deep_prior_cache)")
    parser.add_argument("--epochs", type=int, default=10, help="head training epochs (default 10)")
    parser.add_argument("--lr", type=float, default=0.05, help="head's Adam learning rate (default 0.05)")
    parser.add_argument("--batch-size", type=int, default=4, help="head training batch size (default 4)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")


def add_deep_prior_commands(subparsers) -> None:
    """Register `segkit deep-prior score` and `segkit deep-prior search`."""
    deep_prior = subparsers.add_parser(
        "deep-prior", help="deep priors (DP-NAS): score random-weight encoders, export embeddings, search",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Random-weight encoders written as architecture strings, scored by a linear head trained "
                    "on their cached embeddings (val mIoU), and a MetaQNN Q-learning search over them.",
    )
    commands = deep_prior.add_subparsers(dest="deep_prior_command", metavar="{score,search}")
    commands.required = True

    score = commands.add_parser("score", help="score architectures (head-only training on cached embeddings)",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    score.add_argument("archs", nargs="+", metavar="ARCH", help='architecture string, e.g. "[C(16,3,1,1,0)]"')
    score.add_argument("--seed", type=int, default=0, help="seed of the random encoder weights (default 0)")
    score.add_argument("--store-embeddings", metavar="DIR",
                       help="also export the train/val embeddings of the (single) ARCH to DIR")
    _add_common(score)
    score.set_defaults(func=_run_score)

    search = commands.add_parser("search", help="MetaQNN search (epsilon-greedy Q-learning); continues a log",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    search.add_argument("--nets", type=int, required=True, help="total nets in the log when done")
    search.add_argument("--log", required=True, help="the search log (CSV); an existing one is continued")
    search.add_argument("--seed", type=int, default=0, help="seed of the walks and replays (default 0)")
    search.add_argument("--weight-seed", type=int, default=0, help="encoder weight seed (default 0)")
    search.add_argument("--first", type=int, default=10, help="nets at epsilon 1.0 (default 10; DP-NAS 1500)")
    search.add_argument("--every", type=int, default=5, help="nets per lower epsilon (default 5; DP-NAS 100)")
    search.add_argument("--replay", type=int, default=50, help="nets replayed per update (default 50)")
    search.add_argument("--initial-q", type=float, default=0.0, help="initial Q value (default 0)")
    search.add_argument("--max-layers", type=int, default=4, help="most layers of an arch (default 4)")
    search.add_argument("--early-stop", nargs=2, metavar=("EPOCH", "THRESHOLD"),
                        help="stop a net whose val mIoU after EPOCH epochs is below THRESHOLD")
    search.add_argument("--max-embedding-size", type=int, default=None,
                        help="archs whose embedding has more values per image are infeasible (reward 0)")
    _add_common(search)
    search.set_defaults(func=_run_search)
