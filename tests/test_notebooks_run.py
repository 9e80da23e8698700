"""Every course notebook runs top to bottom in quick mode, in its own kernel, and leaves nothing behind in its
temporary folder. The executed copies (outputs and figures included) are kept in build/notebooks/, where
the course site (docs/build_site.py, tests/test_site.py) takes them instead of running the notebooks again.

One notebook:  .venv/bin/pytest tests/test_notebooks_run.py -k 04_losses
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from segkit.course.execute import execute_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _site_module():
    spec = importlib.util.spec_from_file_location("docs_build_site", REPO / "docs" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _traceback(notebook, index: int) -> str:
    for output in notebook.cells[index].get("outputs", []):
        if output.get("output_type") == "error":
            return ANSI.sub("", "\n".join(output.get("traceback", [])))[-3000:]
    return ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_quick_mode_and_cleans_up(path):
    run = execute_notebook(path, size="quick", timeout=900)
    if not run.ok:
        first = run.errors[0]
        pytest.fail(f"{path.name}, {first}\n{_traceback(run.notebook, first.index)}", pytrace=False)
    assert run.leftover_bytes == 0 and not run.leftover_files, (
        f"{path.name} left {run.leftover_bytes} bytes in its temporary folder: {run.leftover_files}"
    )
    _site_module().save_executed(run.notebook, path)
