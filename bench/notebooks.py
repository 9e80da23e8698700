"""Benchmark: how long each course notebook takes, top to bottom, at each size (quick, class, full).

Each notebook runs in a fresh Jupyter kernel (segkit.course.execute, the same runner as the tests and the
site) with SEGKIT_SIZE set; the wall time from the kernel's start to the last cell is recorded with the
dataset the notebook used (its first output), the slowest cells, and what it left in its temporary folder.
The results are merged into bench/notebook_times.json (a size measured again replaces the old entry), the
source of the times quoted in lectures/syllabus.md and at the top of every notebook:

    .venv/bin/python bench/notebooks.py --sizes quick              # every notebook, quick size
    .venv/bin/python bench/notebooks.py --only 05 08 --sizes class full
    .venv/bin/python bench/notebooks.py --update-docs              # rewrite the time tables, measure nothing

A notebook that fails or runs past --timeout is recorded as such (and the command exits 1). Run it on a
machine that is otherwise idle: the times are wall-clock times of one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from segkit.paths import NOTEBOOK_SIZES  # noqa: E402

NOTEBOOK_TIMES = REPO / "bench" / "notebook_times.json"

DATASET_LINE = re.compile(r"^dataset: (\w+)", re.MULTILINE)
SIZE_FIELDS = ("crop_size", "batch_size", "epochs", "max_steps")  # CourseSetup's sizes, in the tables' order


def class_differs_from_full(path: Path) -> bool:
    """True when a code cell reads course.size, or a size whose class and full values differ on the shapes
    dataset (segkit.course.notebook.SHAPES_SIZES: today only epochs). Otherwise the class run executes
    exactly the full run (same code, same values) and is not measured twice."""
    import nbformat

    from segkit.course.notebook import SHAPES_SIZES

    pairs = zip(SIZE_FIELDS, SHAPES_SIZES["class"], SHAPES_SIZES["full"], strict=True)
    differing = [name for name, in_class, in_full in pairs if in_class != in_full]
    reads = re.compile(rf"\bcourse\.({'|'.join(['size', *differing])})\b")
    cells = nbformat.read(path, as_version=4).cells
    return any(cell.cell_type == "code" and reads.search(cell.source) for cell in cells)


# ------------------------------------------------------------------------------------ the time tables

SYLLABUS = REPO / "lectures" / "syllabus.md"
TABLE_BEGIN = "<!-- notebook-times: begin (bench/notebooks.py --update-docs writes this table) -->"
TABLE_END = "<!-- notebook-times: end -->"
HEADER_BEGIN = "<!-- sizes: begin (bench/notebooks.py --update-docs writes this paragraph) -->"
HEADER_END = "<!-- sizes: end -->"
LESSON_SECONDS = 15 * 60
"""What 'fits a lesson' means here: a notebook run of at most about 15 minutes."""


def duration(seconds: float) -> str:
    """'40 s', '6 min', '1 h 05 min' (minutes rounded)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def size_cell(entry: dict | None) -> str:
    if entry is None:
        return "not measured"
    if not entry["ok"]:
        return f"failed after {duration(entry['seconds'])}"
    return duration(entry["seconds"]) + (" (= full)" if entry.get("same_as") == "full" else "")


def session_name(stem: str) -> str:
    number = stem.split("_", 1)[0]
    return f"{number.lstrip('0') or '0'}"


def times_table(times: dict) -> str:
    """The syllabus table: one row per notebook, its time at each size and the dataset of full/class."""
    lines = ["| Session | Notebook | quick | class | full | dataset (class, full) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for stem, sizes in sorted(times["notebooks"].items()):
        full = sizes.get("full") or sizes.get("class") or {}
        lines.append(f"| {session_name(stem)} | [{stem}](../notebooks/{stem}.ipynb) | "
                     f"{size_cell(sizes.get('quick'))} | {size_cell(sizes.get('class'))} | "
                     f"{size_cell(sizes.get('full'))} | {full.get('dataset') or '-'} |")  # fmt: skip
    machine = times.get("machine", {})
    cpus, threads = machine.get("cpus", "?"), machine.get("torch_threads", "?")
    lines += ["", f"Measured by `bench/notebooks.py` on a shared {cpus}-core CPU without a GPU (torch "
              f"{machine.get('torch', '?')}, {threads} threads), one run each, the whole notebook from the "
              "kernel's start to its last cell; dates and commits are in `bench/notebook_times.json`. "
              "\"(= full)\": the notebook reads no size that differs between class and full (epochs, "
              "batches per epoch), so its class run is its full run."]
    return "\n".join(lines)


def header_text(stem: str, sizes: dict) -> str:
    """The paragraph at the top of a notebook: the sizes, what each cost, which fits a lesson."""
    parts = [f"`{size}` {size_cell(sizes.get(size))}" for size in NOTEBOOK_SIZES]
    if sizes.get("class", {}).get("same_as") == "full":
        parts[1] = f"`class` {duration(sizes['class']['seconds'])} (the same run as `full` here)"
    full = sizes.get("full")
    lesson = ("all three fit a lesson" if full and full["ok"] and full["seconds"] <= LESSON_SECONDS
              else "use `class` in a lesson: `full` takes longer than a lesson allows")  # fmt: skip
    return (
        "**Sizes.** This notebook runs at three sizes, timed top to bottom on a shared 2-core CPU without "
        f"a GPU (shapes dataset): {' · '.join(parts)}; {lesson}. Choose one in the first code cell, "
        '`setup_notebook("class")`, or with `SEGKIT_SIZE=class` before starting JupyterLab; the default is '
        "`full`, and `quick` is what the tests run. A GPU is picked up by itself (`course.device`)."
    )


def replace_between(text: str, begin: str, end: str, body: str, where: str) -> str:
    if begin in text:
        start, stop = text.index(begin), text.index(end) + len(end)
        return text[:start] + f"{begin}\n{body}\n{end}" + text[stop:]
    raise SystemExit(f"{where}: no '{begin}' marker")


def update_syllabus(times: dict) -> Path:
    text = SYLLABUS.read_text(encoding="utf-8")
    SYLLABUS.write_text(replace_between(text, TABLE_BEGIN, TABLE_END, times_table(times), str(SYLLABUS)),
                        encoding="utf-8")  # fmt: skip
    return SYLLABUS


def update_notebook_headers(times: dict) -> list[Path]:
    """Write the sizes paragraph at the end of each measured notebook's first (markdown) cell."""
    import nbformat

    written = []
    for stem, sizes in sorted(times["notebooks"].items()):
        path = REPO / "notebooks" / f"{stem}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        first = notebook.cells[0]
        block = f"{HEADER_BEGIN}\n{header_text(stem, sizes)}\n{HEADER_END}"
        if HEADER_BEGIN in first.source:
            first.source = replace_between(first.source, HEADER_BEGIN, HEADER_END, header_text(stem, sizes),
                                           str(path))  # fmt: skip
        else:
            first.source = first.source.rstrip() + "\n\n" + block
        nbformat.write(notebook, path)
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------- measuring


def notebook_paths(only: list[str] | None) -> list[Path]:
    paths = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
    if only:
        paths = [path for path in paths if any(path.stem.startswith(prefix) for prefix in only)]
        if not paths:
            raise SystemExit(f"no notebook matches {only}")
    return paths


def dataset_used(notebook) -> str | None:
    """The dataset named in the first 'dataset: ...' line a cell printed (setup_notebook's output)."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            match = DATASET_LINE.search(output.get("text", ""))
            if match:
                return match.group(1)
    return None


def machine() -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit.stdout.strip() or None,
    }


def measure(path: Path, size: str, timeout: float) -> dict:
    from segkit.course.execute import execute_notebook

    run = execute_notebook(path, size=size, timeout=timeout)
    slowest = sorted(run.cell_seconds.items(), key=lambda item: -item[1])[:3]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "seconds": round(run.seconds, 1),
        "ok": run.ok,
        "errors": [str(error) for error in run.errors],
        "dataset": dataset_used(run.notebook),
        "slowest_cells": [[index, round(seconds, 1)] for index, seconds in slowest],
        "leftover_bytes": run.leftover_bytes,
        "load_after": None if load is None else round(load, 2),
        "date": datetime.date.today().isoformat(),
        **{key: value for key, value in machine().items() if key in ("commit", "gpu", "cpus")},
    }


def main(argv=None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--sizes", nargs="+", default=["quick"], choices=NOTEBOOK_SIZES)
    parser.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 05 08b")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per notebook run (default 3600)")
    parser.add_argument("--out", type=Path, default=NOTEBOOK_TIMES)
    parser.add_argument("--update-docs", action="store_true",
                        help="only rewrite the times in lectures/syllabus.md and the notebooks' headers")
    args = parser.parse_args(argv)
    if args.update_docs:
        times = json.loads(args.out.read_text())
        for path in [update_syllabus(times), *update_notebook_headers(times)]:
            print(f"updated {path.relative_to(REPO)}")
        return 0
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"notebooks": {}}
    results["machine"] = {k: v for k, v in machine().items() if k not in ("commit",)}
    failed = False
    sizes = sorted(set(args.sizes), key=["quick", "full", "class"].index)  # class may reuse the full run
    for path in notebook_paths(args.only):
        for size in sizes:
            full = results["notebooks"].get(path.stem, {}).get("full")
            if size == "class" and full is not None and not class_differs_from_full(path):
                results["notebooks"][path.stem]["class"] = {**full, "same_as": "full"}
                args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
                print(f"{path.stem} [class]: the same run as full (it reads no size that differs)")
                continue
            print(f"{path.stem} [{size}] ...", flush=True)
            result = measure(path, size, args.timeout)
            failed |= not result["ok"]
            state = "ok" if result["ok"] else "FAILED: " + "; ".join(result["errors"])
            print(f"{path.stem} [{size}]: {result['seconds']:.0f} s on {result['dataset']}, {state}; "
                  f"slowest cells {result['slowest_cells']}, left {result['leftover_bytes']} bytes in TMPDIR",
                  flush=True)  # fmt: skip
            results["notebooks"].setdefault(path.stem, {})[size] = result
            if size == "full" and not class_differs_from_full(path):  # its class entry is this same run
                results["notebooks"][path.stem]["class"] = {**result, "same_as": "full"}
            args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
