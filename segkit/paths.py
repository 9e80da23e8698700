"""Where segkit looks for data and writes runs.

The rule everywhere in the course: an explicit argument wins over an environment variable, which wins over
the default folder under the repository (or the current directory when segkit is installed elsewhere).

    SEGKIT_DATA   datasets (VOC-2012, the generated 'shapes' set)     default: <repo>/data
    SEGKIT_RUNS   training runs: checkpoints, metrics.csv, configs     default: <repo>/runs
    SEGKIT_QUICK  "1" makes notebooks and the demo use tiny sizes and the shapes dataset
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout that holds this package, or the current directory for an installed copy."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def _resolve(explicit: str | os.PathLike | None, env_var: str, default_name: str) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    from_env = os.environ.get(env_var)
    if from_env:
        return Path(from_env).expanduser()
    return repo_root() / default_name


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder: `explicit` > $SEGKIT_DATA > <repo>/data."""
    return _resolve(explicit, "SEGKIT_DATA", "data")


def runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder that holds run folders: `explicit` > $SEGKIT_RUNS > <repo>/runs."""
    return _resolve(explicit, "SEGKIT_RUNS", "runs")


def is_quick() -> bool:
    """True when SEGKIT_QUICK is set to a true value ("1", "true", "yes")."""
    return os.environ.get("SEGKIT_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}
