"""Where segkit looks for data and writes runs, caches and pretrained weights.

The rule everywhere in the course: an explicit argument wins over an environment variable, which wins over
the default folder under the repository (or the current directory when segkit is installed elsewhere).

    SEGKIT_DATA        datasets (VOC-2012, the generated 'shapes' set)     default: <repo>/data
    SEGKIT_CACHE       decoded datasets (segkit.data.CachedDataset)         default: <repo>/data/cache
    SEGKIT_RUNS        training runs: checkpoints, metrics.csv, configs     default: <repo>/runs
    SEGKIT_PRETRAINED  downloaded pretrained weights: torchvision's files in <it>/torch/checkpoints,
                       smp's (Hugging Face) in <it>/huggingface             default: the libraries' own
                       caches ($TORCH_HOME/hub/checkpoints, $HF_HOME/hub), shared with other projects
    SEGKIT_SIZE        the notebooks' sizes: quick (tiny, shapes dataset; how the tests run them), class
                       (fits a lesson on a laptop CPU) or full (the default)
    SEGKIT_QUICK       "1" is SEGKIT_SIZE=quick (the demo and the tests set it)

data/ and runs/ are git-ignored, and so is the cache (it lives inside data/).
`segkit paths` prints each folder, where its value came from and whether it exists.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


def repo_root() -> Path:
    """The checkout that holds this package, or the current directory for an installed copy."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


@dataclass
class Location:
    """One configurable folder: its `path`, and `source`, where the path came from."""

    name: str  # "data", "cache", "runs", "pretrained"
    env_var: str
    path: Path | None  # None: not set (pretrained: the libraries' own caches)
    source: str  # "argument", "environment ($SEGKIT_...)" or "default"

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.is_dir()


# name -> (environment variable, default relative to the repository; None = no default folder)
LOCATIONS: dict[str, tuple[str, str | None]] = {
    "data": ("SEGKIT_DATA", "data"),
    "cache": ("SEGKIT_CACHE", "data/cache"),
    "runs": ("SEGKIT_RUNS", "runs"),
    "pretrained": ("SEGKIT_PRETRAINED", None),
}


def locate(name: str, explicit: str | os.PathLike | None = None) -> Location:
    """Resolve folder `name` (a key of LOCATIONS): `explicit` > environment variable > default."""
    env_var, default = LOCATIONS[name]
    if explicit is not None:
        return Location(name, env_var, Path(explicit).expanduser(), "argument")
    from_env = os.environ.get(env_var)
    if from_env:
        return Location(name, env_var, Path(from_env).expanduser(), f"environment (${env_var})")
    return Location(name, env_var, None if default is None else repo_root() / default, "default")


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder: `explicit` > $SEGKIT_DATA > <repo>/data."""
    return locate("data", explicit).path


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The cache folder: `explicit` > $SEGKIT_CACHE > <repo>/data/cache."""
    return locate("cache", explicit).path


def runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder that holds run folders: `explicit` > $SEGKIT_RUNS > <repo>/runs."""
    return locate("runs", explicit).path


def pretrained_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The folder for pretrained weights: `explicit` > $SEGKIT_PRETRAINED > None.

    None means: use torchvision's and Hugging Face's own caches, so weights that any other project already
    downloaded are found (see torch_weights_dir / hf_weights_dir).
    """
    return locate("pretrained", explicit).path


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(), computed without importing torch: $TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub. Once torch is loaded, torch's own answer is used
    (it also knows a folder set with torch.hub.set_dir)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir())
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.environ.get("TORCH_HOME", os.path.join(cache, "torch"))).expanduser() / "hub"


def torch_weights_dir(root: str | os.PathLike | None = None) -> Path:
    """Where torchvision's weight files are looked for and downloaded to.

    root: default pretrained_root() ($SEGKIT_PRETRAINED). Set: <root>/torch/checkpoints; not set: torch's
    own cache, torch.hub.get_dir()/checkpoints ($TORCH_HOME/hub/checkpoints).
    """
    root = pretrained_root(root)
    return root / "torch" / "checkpoints" if root is not None else torch_hub_dir() / "checkpoints"


def hf_weights_dir(root: str | os.PathLike | None = None) -> Path:
    """The Hugging Face hub cache used for smp's (and timm's) weights.

    root: default pretrained_root() ($SEGKIT_PRETRAINED). Set: <root>/huggingface; not set:
    huggingface_hub's own cache ($HF_HOME/hub).
    """
    from huggingface_hub import constants

    root = pretrained_root(root)
    return root / "huggingface" if root is not None else Path(constants.HF_HUB_CACHE)


NOTEBOOK_SIZES = ("quick", "class", "full")
"""The sizes a course notebook runs at, smallest first (segkit.course.notebook says what each means)."""


def notebook_size(explicit: str | None = None) -> str:
    """The notebooks' size: `explicit` > $SEGKIT_SIZE > "quick" when $SEGKIT_QUICK is true > "full".

    ValueError for a size that is not one of NOTEBOOK_SIZES, naming where it came from.
    """
    if explicit is not None:
        size, source = explicit, "size"
    elif os.environ.get("SEGKIT_SIZE", "").strip():
        size, source = os.environ["SEGKIT_SIZE"].strip().lower(), "$SEGKIT_SIZE"
    else:
        quick = os.environ.get("SEGKIT_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}
        return "quick" if quick else "full"
    if size not in NOTEBOOK_SIZES:
        raise ValueError(f"{source} = {size!r}: expected one of {', '.join(NOTEBOOK_SIZES)}")
    return size


def describe_paths(data=None, cache=None, runs=None, pretrained=None) -> str:
    """A table of segkit's folders: path, where it came from (argument / environment / default), exists.

    The arguments play the part of explicit arguments (as `segkit paths --data ...` passes them). The
    pretrained row is followed by the two folders where weights are really looked for.
    """
    explicit = {"data": data, "cache": cache, "runs": runs, "pretrained": pretrained}
    rows = []
    for name in LOCATIONS:
        location = locate(name, explicit[name])
        shown = str(location.path) if location.path is not None else "(not set: the libraries' own caches)"
        exists = "" if location.path is None else ("yes" if location.exists else "no")
        rows.append((f"{name} (${location.env_var})", shown, location.source, exists))
    root = pretrained_root(pretrained)
    weights = [("torchvision weights", torch_weights_dir(root), "torch's cache ($TORCH_HOME)"),
               ("smp weights", hf_weights_dir(root), "Hugging Face's cache ($HF_HOME)")]  # fmt: skip
    for what, folder, own_cache in weights:
        source = "inside pretrained" if root is not None else own_cache
        rows.append((f"  {what}", str(folder), source, "yes" if folder.is_dir() else "no"))
    header = ("folder", "path", "source", "exists")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in [header, *rows]]
    lines.append("precedence: argument > environment variable > default")
    return "\n".join(line.rstrip() for line in lines)
