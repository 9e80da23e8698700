"""Run a notebook top to bottom in its own Jupyter kernel, with time limits: for the tests, the course site,
the timing benchmark (bench/notebooks.py) and grading (segkit/course/grading.py).

    run = execute_notebook("notebooks/06_imbalance_and_metrics.ipynb", size="quick")
    run.ok, run.seconds, run.errors         # the executed copy is run.notebook (outputs included)

The kernel is a separate process (nbclient starts it with this Python, so it sees this environment's segkit)
and gets its own environment: SEGKIT_SIZE=<size>, and by default a fresh temporary folder as TMPDIR, so that
what the notebook leaves in temporary folders can be measured (`leftover_bytes`) and is always removed.
Cells run one by one; `cell_timeout` limits each cell and `timeout` the whole notebook. A cell that runs past
a limit is interrupted and recorded as an error ("timed out after N s"); with `stop_on_error=False` the next
cells still run (what the grader wants: a broken cell costs only what depends on it).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

TIMEOUT_ERROR = "CellTimeout"


@dataclass
class CellError:
    """A code cell that did not finish: its position in the notebook and what went wrong."""

    index: int  # position among all cells (markdown cells included), from 0
    kind: str  # "error" (it raised), "timeout" or "dead kernel"
    message: str  # e.g. "ValueError: bad value" or "timed out after 60 s"

    def __str__(self) -> str:
        return f"cell {self.index}: {self.message}"


@dataclass
class NotebookRun:
    """What running one notebook gave: the executed copy, the time it took, and the cells that failed."""

    notebook: nbformat.NotebookNode
    seconds: float
    errors: list[CellError] = field(default_factory=list)
    cell_seconds: dict[int, float] = field(default_factory=dict)  # cell index -> seconds, code cells run
    leftover_bytes: int = 0  # what the notebook left in its temporary folder (removed afterwards)
    leftover_files: list[str] = field(default_factory=list)  # the first few of them, relative to TMPDIR

    @property
    def ok(self) -> bool:
        return not self.errors


def _error_message(error: CellExecutionError) -> str:
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        return f"{ename}: {evalue}".strip()
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__


def _folder_contents(folder: Path) -> tuple[int, list[str]]:
    files = [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()]
    return sum(path.stat().st_size for path in files), sorted(str(p.relative_to(folder)) for p in files)[:5]


def kernel_environment(size: str, tmpdir: Path | None, env: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: this process's, with SEGKIT_SIZE=size (SEGKIT_QUICK removed, so that the
    size alone decides), TMPDIR=tmpdir when given, a non-interactive matplotlib backend left to the kernel
    (inline figures, as in JupyterLab), and `env` on top."""
    dropped = {"SEGKIT_QUICK", "MPLBACKEND"}
    kernel_env = {key: value for key, value in os.environ.items() if key not in dropped}
    kernel_env["SEGKIT_SIZE"] = size
    kernel_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep (small machines)
    kernel_env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # no debugger warning on the kernel's stderr
    if tmpdir is not None:
        kernel_env.update(TMPDIR=str(tmpdir), TEMP=str(tmpdir), TMP=str(tmpdir))
    kernel_env.update(env or {})
    return kernel_env


def execute_notebook(
    notebook: str | os.PathLike | nbformat.NotebookNode,
    *,
    size: str = "quick",
    timeout: float | None = None,
    cell_timeout: float | None = None,
    stop_on_error: bool = True,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    own_tmpdir: bool = True,
    extra_cells: tuple[str, ...] | list[str] = (),
    extra_cell_timeout: float = 120,
) -> NotebookRun:
    """Execute `notebook` (a path or a NotebookNode; it is not changed) and return a NotebookRun.

    size: SEGKIT_SIZE for the kernel ("quick", "class" or "full").
    timeout: seconds for all the notebook's own cells together (None: no limit); cell_timeout: per cell.
    stop_on_error: stop at the first failing cell (True), or record it and run the next ones (False).
    cwd: the kernel's working directory (default: the notebook's folder, as in JupyterLab).
    own_tmpdir: give the kernel a fresh TMPDIR, measure what is left in it, then remove it.
    extra_cells: code appended after the notebook's cells and run even when the notebook stopped early
        (the grader's checks), each with its own limit `extra_cell_timeout`; their outputs are in the
        executed copy, after the notebook's cells.
    """
    if isinstance(notebook, nbformat.NotebookNode):
        nb, folder = nbformat.from_dict(notebook), Path.cwd()
    else:
        path = Path(notebook)
        nb, folder = nbformat.read(path, as_version=4), path.resolve().parent
    first_extra = len(nb.cells)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in extra_cells]
    tmpdir = Path(tempfile.mkdtemp(prefix="segkit-notebook-")) if own_tmpdir else None
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or folder)}},
        allow_errors=False,
        interrupt_on_timeout=True,  # a cell past its limit is interrupted and fails with TIMEOUT_ERROR
        record_timing=False,
    )
    run = NotebookRun(notebook=nb, seconds=0.0)
    start = time.perf_counter()
    try:
        with client.setup_kernel(env=kernel_environment(size, tmpdir, env)):
            cells_start = time.perf_counter()  # the limits count from the first cell, not the kernel start
            _run_cells(client, nb, run, range(first_extra), cells_start, timeout, cell_timeout, stop_on_error)
            extra_start = time.perf_counter()
            for index in range(first_extra, len(nb.cells)):
                if not _kernel_alive(client):
                    run.errors.append(CellError(index, "dead kernel", "the kernel died before this cell"))
                    continue
                _run_cells(client, nb, run, [index], extra_start, None, extra_cell_timeout, False)
    finally:
        run.seconds = time.perf_counter() - start
        if tmpdir is not None:
            run.leftover_bytes, run.leftover_files = _folder_contents(tmpdir)
            shutil.rmtree(tmpdir, ignore_errors=True)
    return run


def _kernel_alive(client: NotebookClient) -> bool:
    try:
        return bool(client.km is not None and run_sync(client.km.is_alive)())
    except Exception:  # a kernel manager that cannot even answer is as good as dead
        return False


def _run_cells(client, nb, run: NotebookRun, indices, start: float, timeout, cell_timeout, stop_on_error):
    """Execute the code cells at `indices` in order, recording times and errors in `run`."""
    for index in indices:
        cell = nb.cells[index]
        if cell.cell_type != "code":
            continue
        remaining = None if timeout is None else timeout - (time.perf_counter() - start)
        if remaining is not None and remaining < 1:
            run.errors.append(CellError(index, "timeout", f"not run: the notebook's {timeout:.0f} s were up"))
            return
        limits = [limit for limit in (remaining, cell_timeout) if limit is not None]
        client.timeout = max(1, math.ceil(min(limits))) if limits else None
        client.error_on_timeout = {"ename": TIMEOUT_ERROR, "evalue": f"timed out after {client.timeout} s"}
        cell_start = time.perf_counter()
        failed = True
        try:
            client.execute_cell(cell, index)
            failed = False
        except DeadKernelError:
            run.errors.append(CellError(index, "dead kernel", "the kernel died (out of memory, or exit())"))
            return
        except CellExecutionError as error:
            if getattr(error, "ename", None) == TIMEOUT_ERROR:
                run.errors.append(CellError(index, "timeout", f"{error.evalue} (interrupted)"))
            else:
                run.errors.append(CellError(index, "error", _error_message(error)))
        finally:
            run.cell_seconds[index] = time.perf_counter() - cell_start
        if failed and stop_on_error:
            return
