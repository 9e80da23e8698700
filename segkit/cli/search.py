"""`segkit search`: architecture search over an EncDec space with successive halving (segkit.search.asha).

    segkit search CONFIG [--trials N] [--workers K] [--storage URL] [--study NAME] [--set key=value ...]
        -> one line per trial, the results table, runs/<study>/best.yaml (a config for `segkit train`)

optuna and torch are imported inside the handler, so `segkit --help` stays quick.
"""

from __future__ import annotations

import argparse

SEARCH_EXAMPLES = """\
examples:
  segkit search search_encdec_shapes                              # the shipped search config
  segkit search search_encdec_shapes --trials 24 --workers 2      # two local processes, one study
  segkit search my_space.yaml --study run2 --set search.sampler=random data.batch_size=4
  segkit search my_space.yaml --storage journal:////home/me/studies/big.journal --study big
  segkit search my_space.yaml --storage postgresql://user:pw@host/db --study big   # on every machine
                                                  # (needs the postgres extra: uv sync --extra postgres)

A search config is a training config whose model.options is an EncDec search space (a list = choose one,
{range: [start, stop]} = an integer, {uniform: [low, high]} = a float) plus a `search` section:
trials, workers, sampler (tpe | random), seed, grace_epochs, reduction_factor, max_epochs, max_parameters,
hyperparameters ({config.key: choices}), storage, study, heartbeat, retries. See
segkit/configs/search_encdec_shapes.yaml.
--trials is the study's budget, shared by every process working on it (here or on other machines): running
the same command again continues the study up to it (its file in runs/<study>/ is reused) and never trains
an architecture the study already holds; raise --trials to run more. A trial whose process died is failed
after two heartbeats of silence and run again by another process.
"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _run_search(args: argparse.Namespace) -> int:
    from segkit.search.asha import load_search, run_search

    search = load_search(args.config, args.overrides)
    run_search(search, trials=args.trials, workers=args.workers, storage=args.storage, study_name=args.study)
    return 0


def add_search_commands(subparsers) -> None:
    """Register `segkit search`."""
    search = subparsers.add_parser(
        "search", help="architecture search (EncDec space, successive halving with Optuna)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SEARCH_EXAMPLES,
        description="Sample EncDec architectures from a search space, train each with the segkit Trainer, "
                    "stop weak ones early (asynchronous successive halving) and write the best one as a "
                    "plain training config.",
    )
    search.add_argument("config", help="a search config (YAML file) or the name of a shipped one")
    search.add_argument("--trials", type=positive_int,
                        help="the study's budget of trials, over all its processes (default: search.trials)")
    search.add_argument("--workers", type=positive_int,
                        help="local worker processes sharing the study (default: search.workers)")
    search.add_argument("--storage", help="Optuna storage URL: sqlite:///FILE.db, journal:///FILE.journal, "
                                          "postgresql://... (default: a file in runs/<study>/)")
    search.add_argument("--study", help="study name, also the folder runs/<study>/ (default: search.study, "
                                        "run.name or the config's file name)")
    search.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE",
                        help="override config keys, search.* included, e.g. --set search.max_epochs=3")
    search.set_defaults(func=_run_search)
