"""Make the figures of the lectures: lectures/figures/<name>.png, drawn by code from segkit, never by hand.

    python lectures/make_figures.py              # every figure
    python lectures/make_figures.py --only s04   # the figures of session 4 (module figures_s04.py)
    python lectures/make_figures.py --list       # what would be made

Each session has its own module next to this script, lectures/figures_sNN.py, holding a plain dict

    FIGURES = {"poly_schedule": plot_poly_schedule, ...}      # file stem -> function returning a Figure

and listed in FIGURE_MODULES below. The functions must be deterministic (seeded) and quick, and build
their figures with segkit.viz from real segkit computations. A lecture shows a figure with
`![what it shows](figures/poly_schedule.png)`; tests/test_lectures.py checks that every such file exists.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # no window: figures are only saved

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

LECTURES_DIR = Path(__file__).resolve().parent
FIGURES_DIR = LECTURES_DIR / "figures"
DPI = 100

# One module per session (lectures/figures_sNN.py), one line each; add yours once it imports cleanly.
FIGURE_MODULES: list[str] = [
    "figures_s01",
    "figures_s02",
    "figures_s03",
    "figures_s04",
    "figures_s05",
    "figures_s06",
    "figures_s07",
    "figures_s08",
    "figures_s08b",
    "figures_s09",
]


def load_figure_functions(module_name: str) -> dict:
    """The FIGURES dict of lectures/<module_name>.py (file stem -> function returning a Figure)."""
    if str(LECTURES_DIR) not in sys.path:
        sys.path.insert(0, str(LECTURES_DIR))
    module = importlib.import_module(module_name)
    figures = getattr(module, "FIGURES", None)
    if not isinstance(figures, dict):
        raise TypeError(f"lectures/{module_name}.py must define FIGURES = {{'file_stem': make_fn, ...}}")
    return figures


def save_figure(figure: Figure, path: Path) -> None:
    """Save as a small PNG without a creation date or version in its metadata (same figure, same bytes)."""
    figure.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def make_figures(only: str | None = None, out_dir: Path = FIGURES_DIR) -> list[Path]:
    """Make the figures of every module in FIGURE_MODULES (or of the modules whose name contains `only`)
    and return the paths written."""
    modules = [name for name in FIGURE_MODULES if only is None or only in name]
    if only is not None and not modules:
        raise ValueError(f"no figure module matches {only!r}; FIGURE_MODULES = {FIGURE_MODULES}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for module_name in modules:
        for stem, make in load_figure_functions(module_name).items():
            figure = make()
            if not isinstance(figure, Figure):
                raise TypeError(
                    f"lectures/{module_name}.py: FIGURES[{stem!r}] returned {type(figure).__name__}, "
                    "expected a matplotlib Figure"
                )
            path = out_dir / f"{stem}.png"
            save_figure(figure, path)
            written.append(path)
            print(f"wrote {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the lecture figures (lectures/figures/*.png).")
    parser.add_argument("--only", default=None, help="only the modules whose name contains this, e.g. s04")
    parser.add_argument("--list", action="store_true", help="list the figure modules and figures, make none")
    args = parser.parse_args(argv)
    if args.list:
        for module_name in FIGURE_MODULES:
            if args.only is None or args.only in module_name:
                print(f"{module_name}: {', '.join(load_figure_functions(module_name))}")
        return 0
    make_figures(args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
